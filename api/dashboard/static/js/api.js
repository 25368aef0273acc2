// The one way the page talks to the API: the credential goes in a header (never in a URL), every error becomes an
// ApiError carrying the API's own body ({detail, status_code, type, errors?}), and a 401 signs the page out.

const TOKEN_KEY = "voxarena.credential";
const TENANT_KEY = "voxarena.tenant";

let credential = readCredential();
const listeners = new Set();

function readCredential() {
  try {
    const raw = sessionStorage.getItem(TOKEN_KEY);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

export class ApiError extends Error {
  constructor(status, body) {
    const detail = (body && body.detail) || `HTTP ${status}`;
    super(detail);
    this.status = status;
    this.type = (body && body.type) || "error";
    this.detail = detail;
    this.errors = (body && body.errors) || [];
    this.retryAfter = null;
  }
}

/** {kind: "password"|"apikey"|"clerk", token, label} or null. Kept in sessionStorage: it ends with the tab. */
export function getCredential() {
  return credential;
}

export function setCredential(next) {
  credential = next;
  if (next) sessionStorage.setItem(TOKEN_KEY, JSON.stringify(next));
  else sessionStorage.removeItem(TOKEN_KEY);
  for (const fn of listeners) fn(next);
}

export function onCredentialChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

export function getTenant() {
  return sessionStorage.getItem(TENANT_KEY) || "";
}

export function setTenant(id) {
  if (id) sessionStorage.setItem(TENANT_KEY, id);
  else sessionStorage.removeItem(TENANT_KEY);
}

function headers(cred, extra = {}) {
  const out = { Accept: "application/json", ...extra };
  if (cred) out.Authorization = `Bearer ${cred.token}`;
  const tenant = getTenant();
  if (tenant && cred && cred.kind !== "apikey") out["X-Tenant-ID"] = tenant;
  return out;
}

export function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== "") params.set(k, String(v));
  }
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

/** fetch JSON from the API; resolves to the body, rejects with ApiError. */
export async function api(method, path, { body, raw, query, signal, auth = true, as } = {}) {
  // `as`: try a candidate credential (sign-in checks it) without keeping it or signing out on its 401.
  // `raw`: {data, type} sent as it is instead of JSON (a CSV file the user picked, as text/csv).
  const cred = !auth ? null : as || credential;
  const type = raw ? raw.type : body !== undefined ? "application/json" : null;
  const init = { method, headers: headers(cred, type ? { "Content-Type": type } : {}), signal };
  if (raw) init.body = raw.data;
  else if (body !== undefined) init.body = JSON.stringify(body);
  let resp;
  try {
    resp = await fetch(withQuery(path, query), init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, { detail: `the server did not answer (${e.message})`, type: "network_error" });
  }
  const text = await resp.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { detail: text.slice(0, 300) };
    }
  }
  if (!resp.ok) {
    const err = new ApiError(resp.status, data);
    err.retryAfter = resp.headers.get("Retry-After");
    if (resp.status === 401 && cred && cred === credential) setCredential(null);
    throw err;
  }
  return data;
}

/** A protected file (a call's recording) fetched with the credential, which an <audio src> cannot carry: resolves
 * to a Blob for an object URL, rejects with ApiError. */
export async function getBlob(path, { signal } = {}) {
  const cred = credential;
  let resp;
  try {
    resp = await fetch(path, { headers: headers(cred, { Accept: "*/*" }), signal });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, { detail: `the server did not answer (${e.message})`, type: "network_error" });
  }
  if (!resp.ok) {
    let data = null;
    try {
      data = await resp.json();
    } catch {
      data = null;
    }
    if (resp.status === 401 && cred && cred === credential) setCredential(null);
    throw new ApiError(resp.status, data);
  }
  return resp.blob();
}

export const get = (path, query, opts = {}) => api("GET", path, { ...opts, query });
export const post = (path, body, opts = {}) => api("POST", path, { ...opts, body: body ?? {} });
export const put = (path, body, opts = {}) => api("PUT", path, { ...opts, body: body ?? {} });
export const patch = (path, body, opts = {}) => api("PATCH", path, { ...opts, body: body ?? {} });
export const del = (path, opts = {}) => api("DELETE", path, opts);
/** POST a file or text as it is (`type`: its Content-Type, e.g. text/csv). */
export const postRaw = (path, data, type, opts = {}) => api("POST", path, { ...opts, raw: { data, type } });

// Which routes this server has, from its OpenAPI document: a page whose route is missing says so instead of
// failing (features other branches add light up by themselves once the server serves them).
let docPromise = null;

export function openapiDoc() {
  if (!docPromise) {
    docPromise = fetch("/openapi.json", { headers: { Accept: "application/json" } })
      .then((r) => (r.ok ? r.json() : { paths: {} }))
      .catch(() => ({ paths: {} }));
  }
  return docPromise;
}

export async function serverRoutes() {
  const doc = await openapiDoc();
  const set = new Set();
  for (const [path, ops] of Object.entries(doc.paths || {})) {
    for (const method of Object.keys(ops)) set.add(`${method.toUpperCase()} ${path}`);
  }
  return set;
}

export async function hasRoute(method, path) {
  return (await serverRoutes()).has(`${method} ${path}`);
}

/** The enum of one property of a schema in the OpenAPI document (provider choices, statuses), or `fallback`. */
export async function schemaEnum(schema, prop, fallback = []) {
  const doc = await openapiDoc();
  const p = doc.components?.schemas?.[schema]?.properties?.[prop];
  const find = (node) => {
    if (!node) return null;
    if (Array.isArray(node.enum)) return node.enum;
    for (const k of ["anyOf", "oneOf", "allOf"]) {
      for (const sub of node[k] || []) {
        const e = find(sub);
        if (e) return e;
      }
    }
    return find(node.items);
  };
  return find(p) || fallback;
}

/** A route is missing when the OpenAPI document lacks it, or the server answers 404/405 with no such route. */
export function isMissingRoute(err) {
  return err instanceof ApiError && (err.status === 405 || (err.status === 404 && /^not found$/i.test(err.detail)));
}

/** The JWT's claims (not verified: only for showing who is signed in). */
export function claimsOf(token) {
  try {
    const part = token.split(".")[1];
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    return JSON.parse(json);
  } catch {
    return null;
  }
}
