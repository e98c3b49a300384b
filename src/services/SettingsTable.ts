/**
 * The building blocks of the settings table: each setting is read by a Config and described
 * (variable, default, meaning) in one call, so parsing, defaults and `--help` cannot drift apart;
 * and the refusal a bad setting turns into, naming the variable.
 */
import * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as ConfigErrors from "effect/ConfigError"
import * as Data from "effect/Data"
import * as Either from "effect/Either"
import * as Option from "effect/Option"

export interface SettingDoc {
  readonly variable: string
  readonly default: string
  readonly help: string
  /** A yes/no setting: a bare `--flag` means true. */
  readonly boolean: boolean
}

/** Every setting described so far, in the order of the table. */
export const docs: Array<SettingDoc> = []

export const describe = <A>(
  variable: string,
  defaultText: string,
  help: string,
  config: Config.Config<A>,
  boolean = false
) => {
  docs.push({ variable, default: defaultText, help, boolean })
  return config
}

/**
 * A setting parsed from its text. A variable set to "" is refused rather than read as 0 or as
 * unset: `MAX_WORKERS=` is a mistake more often than a wish for the default.
 */
export const parsed = <A>(variable: string, parse: (text: string) => Either.Either<A, string>) =>
  Config.string(variable).pipe(
    Config.mapOrFail((text) =>
      Either.mapLeft(
        text.trim() === "" ? Either.left("is empty (unset it for the default)") : parse(text.trim()),
        (message) => ConfigErrors.InvalidData([], message)
      )
    )
  )

export const integerIn = (min: number, max: number) => (text: string): Either.Either<number, string> => {
  const n = Number(text)
  const range = max === Number.MAX_SAFE_INTEGER ? `an integer ≥ ${min}` : `an integer from ${min} to ${max}`
  return /^[+-]?\d+$/.test(text) && n >= min && n <= max
    ? Either.right(n)
    : Either.left(`must be ${range}, got "${text}"`)
}

export const int = (variable: string, fallback: number, min: 0 | 1, help: string) =>
  describe(
    variable,
    String(fallback),
    help,
    parsed(variable, integerIn(min, Number.MAX_SAFE_INTEGER)).pipe(Config.withDefault(fallback))
  )

export const text = (variable: string, fallback: string, help: string) =>
  describe(variable, fallback === "" ? '""' : fallback, help, Config.string(variable).pipe(Config.withDefault(fallback)))

/** Unset, or set to "", means no value. */
export const optionalText = (variable: string, help: string) =>
  describe(
    variable,
    "unset",
    help,
    Config.string(variable).pipe(
      Config.option,
      Config.map((value) => Option.getOrUndefined(Option.filter(value, (v) => v !== "")))
    )
  )

export const oneOf = <const L extends ReadonlyArray<string>>(
  variable: string,
  fallback: L[number],
  help: string,
  ...values: L
) =>
  describe(
    variable,
    fallback,
    `${help} (${values.join(" | ")})`,
    Config.literal(...values)(variable).pipe(Config.withDefault(fallback))
  )

/** Unset (or set to ""), or one of `values`. */
export const optionalOneOf = <const L extends ReadonlyArray<string>>(variable: string, help: string, ...values: L) =>
  describe(
    variable,
    "unset",
    `${help} (${values.join(" | ")})`,
    Config.string(variable).pipe(
      Config.mapOrFail((text): Either.Either<L[number] | undefined, ConfigErrors.ConfigError> =>
        text === ""
          ? Either.right(undefined)
          : values.includes(text)
          ? Either.right(text as L[number])
          : Either.left(ConfigErrors.InvalidData([], `expected one of (${values.join(", ")}), got "${text}"`))
      ),
      Config.withDefault(undefined)
    )
  )

/** Start-up refused: names the setting at fault. */
export class ConfigInvalid extends Data.TaggedError("ConfigInvalid")<{
  readonly variable: string
  readonly message: string
}> {}

/** The leaves of a ConfigError, invalid values before missing ones (flags fall back to env). */
const leaves = (error: ConfigError.ConfigError): Array<ConfigError.ConfigError> =>
  error._op === "And" || error._op === "Or" ? [...leaves(error.left), ...leaves(error.right)] : [error]

/** Turns a ConfigError into one line naming the variable at fault. */
export const firstProblem = (error: ConfigError.ConfigError): ConfigInvalid => {
  const all = leaves(error)
  const leaf = all.find((e) => e._op === "InvalidData") ?? all[0] ?? error
  const variable = leaf._op === "And" || leaf._op === "Or" ? "configuration" : leaf.path.join("_")
  const message = leaf.message.replace(/^Expected (.*) but received (.*)$/, "expected $1, got $2")
  return new ConfigInvalid({ variable, message })
}
