#!/usr/bin/env node
/**
 * `node dist/main.js service | --help`. Settings come from the environment and flags; the app
 * runs under `NodeRuntime.runMain`, whose `teardown` turns the shutdown summary into the exit
 * code (DESIGN §3): 0 clean, 1 dead-lettered (or failed to start), 2 lost.
 */
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Cause from "effect/Cause"
import * as ConfigProvider from "effect/ConfigProvider"
import * as Console from "effect/Console"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Layer from "effect/Layer"
import { parseArgs } from "./domain/Cli.js"
import { runReplay, ServiceLive } from "./layers/App.js"
import { LoggingLive } from "./layers/Logging.js"
import { helpText, loadSettings, type Settings, settingDocs } from "./services/AppConfig.js"
import { makeLifecycle } from "./services/Lifecycle.js"

const request = parseArgs(process.argv.slice(2), new Set(settingDocs.map((doc) => doc.variable)))

const environment = (): Array<[string, string]> =>
  Object.entries(process.env).flatMap(([name, value]): Array<[string, string]> =>
    value === undefined ? [] : [[name, value]]
  )

const fail = (message: string) => Console.error(`s3-ingest: ${message}`).pipe(Effect.zipRight(Effect.fail(1)))

/**
 * Loads the settings (flags laid over the environment) and runs `run` with JSON logging at
 * LOG_LEVEL; a bad setting ends with one line on stderr and exit code 1.
 */
const withSettings = <E>(
  flags: ReadonlyMap<string, string>,
  run: (settings: Settings) => Effect.Effect<unknown, E>
) =>
  loadSettings.pipe(
    Effect.catchTag("ConfigInvalid", (e) => fail(`invalid configuration: ${e.variable} ${e.message}`)),
    Effect.flatMap((settings) => run(settings).pipe(Effect.provide(LoggingLive(settings.logLevel)))),
    // One map, flags laid over the environment: with `orElse`, a flag whose value fails to
    // parse would silently fall back to the variable.
    Effect.withConfigProvider(ConfigProvider.fromMap(new Map([...environment(), ...flags])))
  )

const service = (flags: ReadonlyMap<string, string>) => {
  const lifecycle = makeLifecycle()
  const program = withSettings(flags, (settings) =>
    Layer.launch(ServiceLive(settings, lifecycle)).pipe(
      Effect.tapErrorCause((cause) => Effect.logFatal("service failed", cause))
    ))
  NodeRuntime.runMain(program, {
    disableErrorReporting: true,
    disablePrettyLogger: true,
    teardown: (exit, onExit) =>
      onExit(Exit.isFailure(exit) && !Cause.isInterruptedOnly(exit.cause) ? 1 : lifecycle.exitCode)
  })
}

/** Re-uploads DATA_DIR/dead-letter; exits 1 when any file could not be stored or the lock is held. */
const replay = (flags: ReadonlyMap<string, string>) => {
  const program = withSettings(flags, (settings) =>
    runReplay(settings).pipe(
      Effect.catchTag("LockHeld", (e) => fail(`replay refused: ${e.message}`)),
      Effect.flatMap((summary) => summary.failed > 0 ? Effect.fail(1) : Effect.void),
      Effect.tapErrorCause((cause) =>
        Cause.isFailType(cause) && cause.error === 1 ? Effect.void : Effect.logFatal("replay failed", cause)
      )
    ))
  NodeRuntime.runMain(program, { disableErrorReporting: true, disablePrettyLogger: true })
}

switch (request._tag) {
  case "Help":
    process.stdout.write(helpText() + "\n")
    break
  case "Invalid":
    process.stderr.write(`s3-ingest: ${request.message}\n`)
    process.exitCode = 1
    break
  case "Run":
    if (request.command === "service") service(request.flags)
    else replay(request.flags)
}
