// Calls to Tally's JSON API with the dashboard session: the cookie goes by itself, the CSRF
// token (from GET /api/v1/session) goes in X-CSRF-Token on every unsafe method.

let csrfToken = null;
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Called with no arguments whenever the API answers 401 (the session is gone). */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

export async function api(path, { method = "GET", body, signal } = {}) {
  const headers = { accept: "application/json" };
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && csrfToken) headers["x-csrf-token"] = csrfToken;
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      signal,
    });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(0, "network_error", "Tally could not be reached; check the connection.");
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = data && data.error ? data.error : {};
    if (response.status === 401 && !path.startsWith("/api/v1/session")) onUnauthorized();
    throw new ApiError(
      response.status,
      error.code || `http_${response.status}`,
      error.message || `the server answered ${response.status}`,
    );
  }
  return data;
}

/** The logged-in user ({email, csrf_token, expires_at}) or null. */
export async function currentSession() {
  try {
    const session = await api("/api/v1/session");
    csrfToken = session.csrf_token;
    return session;
  } catch (error) {
    if (error.status === 401) return null;
    throw error;
  }
}

export async function logIn(email, password) {
  const session = await api("/api/v1/session", { method: "POST", body: { email, password } });
  csrfToken = session.csrf_token;
  return session;
}

export async function logOut() {
  try {
    await api("/api/v1/session", { method: "DELETE" });
  } finally {
    csrfToken = null;
  }
}

/** The API path of one app, with more path segments (each escaped) after it. */
export function appPath(appId, ...segments) {
  const parts = [appId, ...segments].map((part) => encodeURIComponent(part));
  return `/api/v1/apps/${parts.join("/")}`;
}

/** Runs an analytics query (docs/queries.md) on one app. */
export function runQuery(appId, query, signal) {
  return api(appPath(appId, "query"), { method: "POST", body: query, signal });
}
