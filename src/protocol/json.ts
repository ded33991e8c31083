/** JSON off the wire is `unknown` until checked: the checks the proxy and the client share. */

export type JsonObject = Record<string, unknown>

/** A JSON object (not an array, not null). */
export const isJsonObject = (value: unknown): value is JsonObject =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** `text` parsed, when it is a JSON object; undefined for anything else (malformed input is not an error here). */
export const parseJsonObject = (text: string): JsonObject | undefined => {
  if (text === "") return undefined
  try {
    const parsed: unknown = JSON.parse(text)
    return isJsonObject(parsed) ? parsed : undefined
  } catch {
    return undefined
  }
}
