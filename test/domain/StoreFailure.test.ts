/**
 * Which store failures are retried: timeouts, connection errors, 5xx, 429 and S3
 * throttling codes are; AccessDenied, NoSuchBucket and other 4xx are permanent.
 */
import { assert, describe, it } from "@effect/vitest"
import { type FailureFacts, isRetryableFailure } from "../../src/domain/StoreFailure.js"

const retryable: ReadonlyArray<readonly [string, FailureFacts]> = [
  ["SlowDown 503", { code: "SlowDown", httpStatus: 503 }],
  ["SlowDown without status", { code: "SlowDown" }],
  ["RequestTimeout 400", { code: "RequestTimeout", httpStatus: 400 }],
  ["InternalError 500", { code: "InternalError", httpStatus: 500 }],
  ["ServiceUnavailable 503", { code: "ServiceUnavailable", httpStatus: 503 }],
  ["Throttling 400", { code: "Throttling", httpStatus: 400 }],
  ["ThrottlingException 400", { code: "ThrottlingException", httpStatus: 400 }],
  ["RequestThrottled", { code: "RequestThrottled" }],
  ["TooManyRequestsException", { code: "TooManyRequestsException" }],
  ["ECONNRESET", { systemCode: "ECONNRESET" }],
  ["ECONNREFUSED", { systemCode: "ECONNREFUSED", message: "connect ECONNREFUSED 127.0.0.1:9" }],
  ["EPIPE", { systemCode: "EPIPE" }],
  ["ETIMEDOUT", { systemCode: "ETIMEDOUT" }],
  ["500", { httpStatus: 500 }],
  ["502", { httpStatus: 502 }],
  ["503", { httpStatus: 503 }],
  ["504", { httpStatus: 504 }],
  ["429", { httpStatus: 429 }],
  ["unknown code with 503", { code: "UnknownError", httpStatus: 503 }],
  ["socket hang up", { message: "socket hang up" }],
  ["Socket Hang Up, any case", { message: "Error: Socket Hang Up" }],
  ["read ECONNRESET message", { message: "read ECONNRESET" }],
  ["write EPIPE message", { message: "write EPIPE" }]
]

const permanent: ReadonlyArray<readonly [string, FailureFacts]> = [
  ["400", { httpStatus: 400 }],
  ["403", { httpStatus: 403 }],
  ["404", { httpStatus: 404 }],
  ["409", { httpStatus: 409 }],
  ["AccessDenied 403", { code: "AccessDenied", httpStatus: 403 }],
  ["AccessDenied without status", { code: "AccessDenied" }],
  ["NoSuchBucket 404", { code: "NoSuchBucket", httpStatus: 404 }],
  ["InvalidAccessKeyId 403", { code: "InvalidAccessKeyId", httpStatus: 403 }],
  ["EntityTooLarge 400", { code: "EntityTooLarge", httpStatus: 400 }],
  ["a 403 whose message mentions a socket hang up", { httpStatus: 403, message: "socket hang up" }],
  ["no facts at all", {}],
  ["an unrelated message", { message: "The specified bucket does not exist" }],
  ["an unknown system code", { systemCode: "ENOENT" }]
]

describe("isRetryableFailure", () => {
  for (const [name, facts] of retryable) {
    it(`retries ${name}`, () => {
      assert.isTrue(isRetryableFailure(facts))
    })
  }
  for (const [name, facts] of permanent) {
    it(`does not retry ${name}`, () => {
      assert.isFalse(isRetryableFailure(facts))
    })
  }
})
