/** `--help`: the commands, every setting with its flag and default, and the exit codes. */
import { variableToFlag } from "../domain/Cli.js"
import { settingDocs } from "./AppConfig.js"

export const helpText = (): string => {
  const rows = settingDocs.map((doc) => [`${doc.variable} / ${variableToFlag(doc.variable)}`, doc.default, doc.help])
  const widths = [0, 1].map((column) => Math.max(...rows.map((row) => row[column]!.length)))
  const table = rows.map((row) => `  ${row[0]!.padEnd(widths[0]!)}  ${row[1]!.padEnd(widths[1]!)}  ${row[2]}`)
  return [
    "s3-ingest: HTTP JSON ingest that batches payloads into NDJSON objects on S3",
    "",
    "Usage:",
    "  node dist/main.js service [--setting value ...]   run the ingest service",
    "  node dist/main.js replay  [--setting value ...]   re-upload dead-lettered batches under their original keys",
    "  node dist/main.js --help                          this text",
    "  node dist/main.js --version                       the version",
    "",
    "Settings (environment variable / flag, default, meaning); a flag overrides the variable:",
    ...table,
    "",
    "Exit codes: 0 clean; 1 a refused start (bad setting, unusable DATA_DIR or journal, address in",
    "use), payloads dead-lettered or left in the journal, or files replay could not store; 2 payloads lost."
  ].join("\n")
}
