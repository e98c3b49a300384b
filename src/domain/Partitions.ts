/**
 * `KEY_PARTITIONS`: the part of an object's key between the prefix and its file name, filled in
 * per batch: `{yyyy}`, `{mm}`, `{dd}`, `{hh}` from the batch's creation (UTC), and `{version}` from
 * the collection's `version` when it is safe in a key (else `_invalid`). Readers such as DuckDB,
 * Athena and Spark prune on these directories (`version={version}/dt={yyyy}-{mm}-{dd}` is Hive
 * style), and `version` is the first filter of almost any query over the objects.
 */

export const DEFAULT_TEMPLATE = "{yyyy}/{mm}/{dd}/{hh}"

const PLACEHOLDERS = ["yyyy", "mm", "dd", "hh", "version"] as const
type Placeholder = (typeof PLACEHOLDERS)[number]

/** The longest value of each placeholder: a version is at most 64 characters (SAFE_VERSION). */
const WIDTH: Record<Placeholder, number> = { yyyy: 4, mm: 2, dd: 2, hh: 2, version: 64 }
/** A directory name every file system takes, and a template that leaves S3's 1,024-byte keys room. */
const MAX_SEGMENT = 255
const MAX_PATH = 512

type Part = { readonly literal: string } | { readonly placeholder: Placeholder }

export interface PartitionTemplate {
  readonly text: string
  readonly parts: ReadonlyArray<Part>
  /** Batches are split by `version`: one open batch per value. */
  readonly byVersion: boolean
}

/** The only client input that may reach a key, and only as a whole `{version}` segment value. */
const SAFE_VERSION = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
const LITERAL = /^[A-Za-z0-9=._-]*$/

/** The partition value of a collection's `version`. */
export const versionValue = (version: string): string => SAFE_VERSION.test(version) ? version : INVALID

/** A version that is not safe in a key. */
export const INVALID = "_invalid"
/** A new version once `MAX_PARTITIONS` are already batching. */
export const OVERFLOW = "_overflow"

/** Parses a template, or says what is wrong with it. */
export const parseTemplate = (text: string): PartitionTemplate | { readonly error: string } => {
  if (text === "") return { error: "is empty" }
  if (text.startsWith("/")) return { error: "must not start with /" }
  const parts: Array<Part> = []
  const segments = text.split("/")
  for (const [index, segment] of segments.entries()) {
    if (segment === "") return { error: "has an empty segment" }
    if (segment === "." || segment === "..") return { error: `has a "${segment}" segment` }
    const pieces = segment.split(/(\{[^{}]*\})/).filter((piece) => piece !== "")
    let width = 0
    for (const piece of pieces) {
      if (/^\{[^{}]*\}$/.test(piece)) {
        const name = piece.slice(1, -1)
        if (!(PLACEHOLDERS as ReadonlyArray<string>).includes(name)) {
          return { error: `has an unknown placeholder ${piece} (${PLACEHOLDERS.map((p) => `{${p}}`).join(" ")})` }
        }
        parts.push({ placeholder: name as Placeholder })
        width += WIDTH[name as Placeholder]
      } else if (!LITERAL.test(piece)) {
        return { error: `"${piece}" holds a character other than A-Z a-z 0-9 = . _ -` }
      } else {
        parts.push({ literal: piece })
        width += piece.length
      }
    }
    if (width > MAX_SEGMENT) return { error: `has a segment that can reach ${width} characters (at most ${MAX_SEGMENT})` }
    if (index < segments.length - 1) parts.push({ literal: "/" })
  }
  const longest = parts.reduce((n, part) => n + ("literal" in part ? part.literal.length : WIDTH[part.placeholder]), 0)
  if (longest > MAX_PATH) return { error: `can reach ${longest} characters (at most ${MAX_PATH})` }
  return { text, parts, byVersion: parts.some((part) => "placeholder" in part && part.placeholder === "version") }
}

/** `{yyyy}/{mm}/{dd}/{hh}`: hourly directories, as keys had before partitions could be chosen. */
export const DEFAULT_PARTITIONS: PartitionTemplate = {
  text: DEFAULT_TEMPLATE,
  parts: [
    { placeholder: "yyyy" },
    { literal: "/" },
    { placeholder: "mm" },
    { literal: "/" },
    { placeholder: "dd" },
    { literal: "/" },
    { placeholder: "hh" }
  ],
  byVersion: false
}

const pad = (n: number, width: number): string => String(n).padStart(width, "0")

/** The partitions of a batch created at `createdAtMillis` holding `version` (a `versionValue`). */
export const partitionPath = (template: PartitionTemplate, createdAtMillis: number, version: string): string => {
  const d = new Date(createdAtMillis)
  let path = ""
  for (const part of template.parts) {
    if ("literal" in part) {
      path += part.literal
      continue
    }
    switch (part.placeholder) {
      case "yyyy":
        path += pad(d.getUTCFullYear(), 4)
        break
      case "mm":
        path += pad(d.getUTCMonth() + 1, 2)
        break
      case "dd":
        path += pad(d.getUTCDate(), 2)
        break
      case "hh":
        path += pad(d.getUTCHours(), 2)
        break
      case "version":
        path += version
    }
  }
  return path
}
