/**
 * What the edge reads of a request before its body: content type, content encoding, a bearer
 * token, and the `ack` level of the query.
 */

export const JSON_TYPE = "application/json"

/** `application/json`, optionally with `charset=utf-8`; nothing else. */
export const isJsonContentType = (header: string | undefined): boolean => {
  if (header === undefined) return false
  if (header === JSON_TYPE) return true
  const [type, ...params] = header.split(";")
  if (type === undefined || type.trim().toLowerCase() !== JSON_TYPE) return false
  return params.every((param) => {
    const [name, value] = param.split("=")
    if (name === undefined || name.trim().toLowerCase() !== "charset") return param.trim() === ""
    return value !== undefined && value.trim().replace(/^"|"$/g, "").toLowerCase() === "utf-8"
  })
}

export type Encoding = "identity" | "gzip"

/** The body's encoding, or undefined for one the edge does not take. */
export const contentEncoding = (header: string | undefined): Encoding | undefined => {
  if (header === undefined) return "identity"
  const value = header.trim().toLowerCase()
  return value === "" || value === "identity" ? "identity" : value === "gzip" ? "gzip" : undefined
}

/** The token of an `Authorization: Bearer <token>` header. */
export const bearerToken = (header: string): string | undefined => {
  const match = /^Bearer +(\S+) *$/i.exec(header)
  return match === null ? undefined : match[1]
}

export type AckLevel = "accepted" | "stored"

/**
 * The `ack` parameter of a query string (after the "?"): `accepted` when absent, or undefined for
 * a value the edge does not take (anything but `accepted` or `stored`, or `ack` given twice).
 */
export const ackLevel = (query: string | undefined): AckLevel | undefined => {
  if (query === undefined || query === "") return "accepted"
  const values = new URLSearchParams(query).getAll("ack")
  if (values.length === 0) return "accepted"
  const [value] = values
  return values.length === 1 && (value === "accepted" || value === "stored") ? value : undefined
}
