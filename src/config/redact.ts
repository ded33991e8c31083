/**
 * Keeping credentials that URLs carry out of logs and error messages (the config's messages, the
 * startup log line, the bus drivers' connection logs).
 */

const MASK = "***"
const SECRET_QUERY = /^(api_key|apikey|password|pass|token|secret|auth_token|access_token)$/i

const redactOne = (url: string): string => {
  let out = url
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(out)
  if (scheme !== null) {
    const rest = out.slice(scheme[0].length)
    // The last "@" wins, as in URL parsers: an unencoded "@" inside a password must not leak the tail.
    const at = rest.lastIndexOf("@")
    if (at >= 0) {
      const userinfo = rest.slice(0, at)
      const colon = userinfo.indexOf(":")
      // A user-only userinfo is a token for NATS (nats://token@host), so it is masked as a whole.
      const masked = colon >= 0 ? `${userinfo.slice(0, colon)}:${MASK}` : MASK
      out = scheme[0] + masked + rest.slice(at)
    }
  }
  const q = out.indexOf("?")
  if (q < 0) return out
  const query = out.slice(q + 1).split("&").map((pair) => {
    const eq = pair.indexOf("=")
    if (eq < 0 || !SECRET_QUERY.test(pair.slice(0, eq))) return pair
    // ARI's api_key is user:password; the user part is useful in a log.
    const value = pair.slice(eq + 1)
    const colon = value.search(/:|%3A/i)
    return `${pair.slice(0, eq)}=${colon >= 0 ? value.slice(0, colon) + ":" + MASK : MASK}`
  })
  return `${out.slice(0, q)}?${query.join("&")}`
}

/**
 * Replaces the password of every URL's userinfo with `***` (a user-only userinfo, a NATS token,
 * becomes `***` as a whole) and masks secret query parameters such as `api_key`. Works on
 * comma-separated NATS server lists and on strings that do not parse as URLs.
 */
export const redactUrl = (url: string): string => url.split(",").map(redactOne).join(",")
