// fetch wrapper for the admin API: the session is an HttpOnly cookie set by POST /v1/admin/session (G2;
// no token is kept by the page), JSON in and out, and every error turned into an ApiError {status,
// message, param, code} (the API's OpenAI-shaped body). 401 ends the session (the app shows Login
// again); 503 store_unavailable raises the global banner. `opts.key`: an application key sent as a
// bearer (the playground), which the gateway then uses instead of the cookie.

const listeners = new Set();

export class ApiError extends Error {
  constructor(status, message, param, code) {
    super(message);
    this.status = status;
    this.param = param || null;
    this.code = code || null;
  }
}

// app.js subscribes: {type: "unauthorized"} | {type: "store", message} | {type: "store-ok"}
export function onApiEvent(fn) { listeners.add(fn); return () => listeners.delete(fn); }
function emit(ev) { for (const fn of listeners) fn(ev); }

export async function request(method, path, body, opts = {}) {
  const headers = { accept: "application/json" };
  if (opts.key) headers.authorization = "Bearer " + opts.key;
  if (body !== undefined) headers["content-type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
                              credentials: "same-origin", cache: "no-store" });
  } catch (e) {
    throw new ApiError(0, "Gateway unreachable: " + e.message, null, "network");
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
  if (!res.ok) {
    const err = (data && data.error) || {};
    const e = new ApiError(res.status, err.message || (res.status === 413 ? "Body too large (4 MiB)." : `HTTP ${res.status}`),
                           err.param, err.code);
    if (res.status === 401 && !opts.key && !opts.quiet) emit({ type: "unauthorized", message: e.message });
    if (res.status === 503 && err.code === "store_unavailable") emit({ type: "store", message: e.message });
    throw e;
  }
  if (opts.raw) return { data, headers: res.headers, status: res.status };
  return data;
}

export const api = {
  get: (p, o) => request("GET", p, undefined, o),
  post: (p, b, o) => request("POST", p, b === undefined ? {} : b, o),
  patch: (p, b, o) => request("PATCH", p, b, o),
  put: (p, b, o) => request("PUT", p, b, o),
  del: (p, b, o) => request("DELETE", p, b === undefined ? {} : b, o),
};

export const enc = encodeURIComponent;

// The equivalent curl line of a mutating call, for the "Show API call" disclosure (no token in it).
export function curlLine(method, path, body) {
  const url = location.origin + path;
  const data = body === undefined ? "" : ` -H 'content-type: application/json' -d '${JSON.stringify(body).replace(/'/g, "'\\''")}'`;
  return `curl -X ${method} '${url}' -H "authorization: Bearer $ADMIN_TOKEN"${data}`;
}
