/**
 * Command-line parsing: a command, then `--kebab-case` flags that override the environment
 * variable of the same name in CONSTANT_CASE (`--max-workers 8` or `--max-workers=8`). Only a
 * yes/no setting may be given without a value (`--s3-force-path-style`).
 */

export type Command = "service" | "replay"

export type CliRequest =
  | { readonly _tag: "Help" }
  | { readonly _tag: "Version" }
  | { readonly _tag: "Run"; readonly command: Command; readonly flags: ReadonlyMap<string, string> }
  | { readonly _tag: "Invalid"; readonly message: string }

const commands: ReadonlyArray<string> = ["service", "replay"]

export const flagToVariable = (flag: string): string => flag.replace(/-/g, "_").toUpperCase()
export const variableToFlag = (variable: string): string => `--${variable.toLowerCase().replace(/_/g, "-")}`

export interface KnownSettings {
  readonly variables: ReadonlySet<string>
  /** Settings a bare flag sets to "true". */
  readonly booleans: ReadonlySet<string>
}

export const parseArgs = (argv: ReadonlyArray<string>, known: KnownSettings): CliRequest => {
  if (argv.includes("--help") || argv.includes("-h") || argv[0] === "help") return { _tag: "Help" }
  if (argv.includes("--version") || argv[0] === "version") return { _tag: "Version" }
  const [command, ...rest] = argv
  if (command === undefined) return { _tag: "Help" }
  if (!commands.includes(command)) return { _tag: "Invalid", message: `unknown command "${command}" (try --help)` }
  const flags = new Map<string, string>()
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!
    if (!arg.startsWith("--")) return { _tag: "Invalid", message: `unexpected argument "${arg}" (try --help)` }
    const eq = arg.indexOf("=")
    const name = eq < 0 ? arg.slice(2) : arg.slice(2, eq)
    const variable = flagToVariable(name)
    if (!known.variables.has(variable)) return { _tag: "Invalid", message: `unknown option --${name} (try --help)` }
    let value: string
    if (eq >= 0) {
      value = arg.slice(eq + 1)
    } else {
      const next = rest[i + 1]
      if (next !== undefined && !next.startsWith("--")) {
        value = next
        i++
      } else if (known.booleans.has(variable)) {
        value = "true"
      } else {
        return { _tag: "Invalid", message: `--${name} needs a value (--${name} <value> or --${name}=<value>)` }
      }
    }
    flags.set(variable, value)
  }
  return { _tag: "Run", command: command as Command, flags }
}
