/**
 * What the validator answers: a collection (its `version`, `token` and where each payload lies in
 * the body) or why it is refused.
 */
import type { PayloadSpans } from "./PayloadSpans.js"

/** `i-json` refuses what strict readers refuse (RFC 7493); `json` takes any RFC 8259 text. */
export type JsonProfile = "i-json" | "json"

export type CollectionError =
  | { readonly reason: "invalid_json"; readonly message: string }
  | { readonly reason: "invalid_shape"; readonly message: string }

export interface Collection {
  readonly version: string
  readonly token: string
  readonly payloads: PayloadSpans
  /**
   * Some element is written over several lines. Its raw line breaks can only be whitespace
   * between tokens (a string may not hold one), and an NDJSON line may not contain them.
   */
  readonly multiline: boolean
}

export type ParsedCollection =
  | { readonly _tag: "Collection"; readonly collection: Collection }
  | { readonly _tag: "Invalid"; readonly error: CollectionError }

export const MALFORMED: CollectionError = { reason: "invalid_json", message: "malformed JSON" }
export const DUPLICATE_NAME: CollectionError = {
  reason: "invalid_json",
  message: "a payload gives a member name twice in one object (I-JSON)"
}
export const LONE_SURROGATE: CollectionError = {
  reason: "invalid_json",
  message: "a payload holds an escaped lone surrogate (I-JSON)"
}
export const NUMBER_OVERFLOW: CollectionError = {
  reason: "invalid_json",
  message: "a payload holds a number beyond a double's range (I-JSON)"
}

export const invalid = (error: CollectionError): ParsedCollection => ({ _tag: "Invalid", error })
export const shape = (message: string): CollectionError => ({ reason: "invalid_shape", message })
