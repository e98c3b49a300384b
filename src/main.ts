#!/usr/bin/env node
/**
 * `node dist/main.js service | replay | --help | --version`. Settings come from the environment
 * and flags; each command runs under `NodeRuntime.runMain`. A start that cannot go ahead (a bad
 * setting, an unusable DATA_DIR or journal, a taken port) ends with one line on stderr and exit
 * code 1. Otherwise the service's exit code comes from its shutdown summary (0 clean,
 * 1 dead-lettered or left in the journal, 2 lost) and replay's from its own summary (0 all stored, 1 anything failed or left).
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Console from "effect/Console"
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as FiberId from "effect/FiberId"
import * as Layer from "effect/Layer"
import * as Option from "effect/Option"
import { parseArgs, variableToFlag } from "./domain/Cli.js"
import { runReplay, ServiceLive } from "./layers/App.js"
import type { DataDirUnusable, LockHeld } from "./domain/DataDirErrors.js"
import type { ListenError } from "./layers/HttpListener.js"
import { LoggingLive } from "./layers/Logging.js"
import { type ConfigInvalid, knownSettings, loadSettings, type Settings } from "./services/AppConfig.js"
import { helpText } from "./services/Help.js"
import type { JournalUnreadable } from "./services/journal/Recovery.js"
import { exitCodeOf, type ShutdownSummary } from "./services/Shutdown.js"
import { version } from "./services/Version.js"

const request = parseArgs(process.argv.slice(2), knownSettings)

const environment = (): Array<[string, string]> =>
  Object.entries(process.env).flatMap(([name, value]): Array<[string, string]> =>
    value === undefined ? [] : [[name, value]]
  )

/** One line on stderr, exit code 1: how every refused start ends. */
const refuse = (message: string) => Console.error(`s3-ingest: ${message}`).pipe(Effect.as(1))

type StartRefused = ConfigInvalid | DataDirUnusable | LockHeld | ListenError | JournalUnreadable

const refusal = (error: StartRefused, flags: ReadonlyMap<string, string>, dataDir: string): string => {
  switch (error._tag) {
    case "ConfigInvalid": {
      const name = flags.has(error.variable) ? `${variableToFlag(error.variable)} (${error.variable})` : error.variable
      return `invalid configuration: ${name} ${error.message}`
    }
    case "DataDirUnusable":
      return `DATA_DIR ${dataDir} cannot be used: ${error.problem}`
    case "LockHeld":
      return `DATA_DIR ${dataDir} is in use: ${
        error.pid === undefined ? "another process" : `process ${error.pid}`
      } holds ${error.lockFile}`
    case "ListenError":
      return `cannot listen on ${error.address}: ${error.cause.message}`
    case "JournalUnreadable":
      return `journal ${error.path} cannot be read: ${error.problem}`
  }
}

/**
 * Loads the settings (flags laid over the environment) and runs `run` with JSON logging at
 * LOG_LEVEL; its value is the exit code. A refused start is one line on stderr; anything else
 * that ends the program (a defect) is a `fatal` log line, where the operator's log pipeline sees it.
 */
const withSettings = (
  flags: ReadonlyMap<string, string>,
  run: (settings: Settings) => Effect.Effect<number, StartRefused>
): Effect.Effect<number> =>
  loadSettings.pipe(
    Effect.flatMap((settings) =>
      run(settings).pipe(
        Effect.catchAll((error: StartRefused) => refuse(refusal(error, flags, settings.dataDir))),
        Effect.tapErrorCause((cause) =>
          Cause.isInterruptedOnly(cause) ? Effect.void : Effect.logFatal("s3-ingest failed", cause)
        ),
        Effect.provide(LoggingLive(settings.logLevel))
      )
    ),
    Effect.catchTag("ConfigInvalid", (error) => refuse(refusal(error, flags, ""))),
    // One map, flags laid over the environment: with `orElse`, a flag whose value fails to
    // parse would silently fall back to the variable.
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map([...environment(), ...flags])))
  )

/** runMain's teardown is generic in the program's value: the code is read back as a number. */
const codeOf = (value: unknown): number => typeof value === "number" ? value : 1

/**
 * The code the shutdown summary decided. None was written when the signal came before the queue
 * was built: nothing had been accepted, so nothing can have been lost.
 */
const summaryCode = (summary: Deferred.Deferred<ShutdownSummary>): number =>
  Option.match(Effect.runSync(Deferred.poll(summary)), {
    onNone: () => 0,
    onSome: (done) => Effect.runSync(Effect.match(done, { onFailure: () => 1, onSuccess: exitCodeOf }))
  })

const service = (flags: ReadonlyMap<string, string>) => {
  const summary = Deferred.unsafeMake<ShutdownSummary>(FiberId.none)
  const program = withSettings(flags, (settings) => Layer.launch(ServiceLive(settings, summary)))
  NodeRuntime.runMain(program, {
    disableErrorReporting: true,
    disablePrettyLogger: true,
    // A signal interrupts the program: every finalizer has run, and the summary decides the code.
    teardown: (exit, onExit) =>
      onExit(Exit.isSuccess(exit) ? codeOf(exit.value) : Cause.isInterruptedOnly(exit.cause) ? summaryCode(summary) : 1)
  })
}

const replay = (flags: ReadonlyMap<string, string>) => {
  const program = withSettings(flags, (settings) =>
    Effect.flatMap(runReplay(settings), (summary) =>
      Effect.map(
        Effect.promise(() => import("./services/Replay.js")),
        (module) => module.replayExitCode(summary)
      )))
  NodeRuntime.runMain(program, {
    disableErrorReporting: true,
    disablePrettyLogger: true,
    // Interrupted by a signal: files were left, and the summary said so.
    teardown: (exit, onExit) => onExit(Exit.isSuccess(exit) ? codeOf(exit.value) : 1)
  })
}

switch (request._tag) {
  case "Help":
    process.stdout.write(helpText() + "\n")
    break
  case "Version":
    process.stdout.write(`s3-ingest ${version}\n`)
    break
  case "Invalid":
    process.stderr.write(`s3-ingest: ${request.message}\n`)
    process.exitCode = 1
    break
  case "Run":
    if (request.command === "service") service(request.flags)
    else replay(request.flags)
}
