// The CSRF token the server set at login (cookie hodei_csrf), echoed in X-CSRF-Token on every
// request that changes something: another site can make the browser send the session cookie,
// but cannot read this one.

export const CSRF_COOKIE = "hodei_csrf";
export const CSRF_HEADER = "X-CSRF-Token";

/** One cookie's value in a `document.cookie` string, or "" when it is not there. */
export function cookieValue(cookies: string, name: string): string {
  for (const part of cookies.split(";")) {
    const eq = part.indexOf("=");
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === name) {
      const value = part.slice(eq + 1).trim();
      try {
        return decodeURIComponent(value);
      } catch {
        return value;
      }
    }
  }
  return "";
}

/** The headers a request with this method needs for CSRF protection. */
export function csrfHeaders(method: string, cookies: string): Record<string, string> {
  if (method === "GET" || method === "HEAD") return {};
  const token = cookieValue(cookies, CSRF_COOKIE);
  return token ? { [CSRF_HEADER]: token } : {};
}
