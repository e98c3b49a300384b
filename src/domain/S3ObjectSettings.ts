/**
 * What every PUT to S3 may carry besides the body: server-side encryption, a storage class, and
 * object tags. Checked at start, so a typo stops the service instead of failing every upload.
 */

export const SSE_MODES = ["AES256", "aws:kms"] as const
export type SseMode = (typeof SSE_MODES)[number]

/** The `StorageClass` values of the S3 API (as @aws-sdk/client-s3 lists them). */
export const STORAGE_CLASSES = [
  "STANDARD",
  "REDUCED_REDUNDANCY",
  "STANDARD_IA",
  "ONEZONE_IA",
  "INTELLIGENT_TIERING",
  "GLACIER",
  "DEEP_ARCHIVE",
  "OUTPOSTS",
  "GLACIER_IR",
  "SNOW",
  "EXPRESS_ONEZONE",
  "FSX_OPENZFS",
  "FSX_ONTAP",
  "AWS_BACKUP_WARM",
  "AWS_BACKUP_LOW_COST_WARM"
] as const
export type StorageClass = (typeof STORAGE_CLASSES)[number]

const MAX_TAGS = 10
const MAX_KEY = 128
const MAX_VALUE = 256
/** What S3 allows in a tag's key and value: letters, digits, spaces and `+ - = . _ : / @`. */
const TAG_TEXT = /^[\p{L}\p{Z}\p{N}+\-=._:/@]*$/u

/**
 * `k=v&k2=v2` (URL-encoded) as S3's `Tagging` wants it, re-encoded the one way; or why it is not a
 * valid tag set.
 */
export const parseObjectTags = (text: string): { readonly tagging: string } | { readonly error: string } => {
  const tags = new Map<string, string>()
  for (const pair of text.split("&")) {
    const eq = pair.indexOf("=")
    let key: string
    let value: string
    try {
      key = decodeURIComponent((eq < 0 ? pair : pair.slice(0, eq)).replace(/\+/g, " "))
      value = eq < 0 ? "" : decodeURIComponent(pair.slice(eq + 1).replace(/\+/g, " "))
    } catch {
      return { error: `"${pair}" is not URL-encoded` }
    }
    if (key === "") return { error: "a tag has an empty key" }
    if (key.length > MAX_KEY) return { error: `tag key "${key.slice(0, 20)}…" is longer than ${MAX_KEY} characters` }
    if (value.length > MAX_VALUE) return { error: `the value of tag "${key}" is longer than ${MAX_VALUE} characters` }
    if (!TAG_TEXT.test(key) || !TAG_TEXT.test(value)) {
      return { error: `tag "${key}" holds a character S3 does not allow (letters, digits, spaces, + - = . _ : / @)` }
    }
    if (tags.has(key)) return { error: `tag "${key}" is given twice` }
    tags.set(key, value)
  }
  if (tags.size > MAX_TAGS) return { error: `${tags.size} tags; S3 takes at most ${MAX_TAGS}` }
  const tagging = [...tags].map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&")
  return { tagging }
}
