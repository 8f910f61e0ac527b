// Shared pieces: html (htm bound to Preact), the useApi hook, fields that show the API error naming them,
// banners, badges, tabs, the "Show API call" disclosure. Text is always rendered as text nodes.
import { h, createContext } from "./vendor/preact.module.js";
import { useState, useEffect, useCallback, useContext, useRef } from "./vendor/hooks.module.js";
import htm from "./vendor/htm.module.js";
import { api, curlLine } from "./api.js";

export const html = htm.bind(h);
export { useState, useEffect, useCallback, useContext, useRef };

// What one view hands to the next in page memory only (the stage editor's unsaved draft for the playground).
export const handoff = { draft: null };

// {role: "central"|"application", application, central: bool}
export const Session = createContext(null);
export const useSession = () => useContext(Session);

export function useApi(path, deps = []) {
  const [state, setState] = useState({ loading: true, data: null, error: null });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    let live = true;
    if (!path) { setState({ loading: false, data: null, error: null }); return; }
    setState((s) => ({ ...s, loading: true }));
    api.get(path).then((data) => live && setState({ loading: false, data, error: null }),
                       (error) => live && setState({ loading: false, data: null, error }));
    return () => { live = false; };
  }, [path, tick, ...deps]);
  return { ...state, reload: () => setTick((t) => t + 1) };
}

// An error for a field: the API's `param` equals it, or names something inside it (data[3].example).
export function errorFor(err, name) {
  if (!err || !err.param || !name) return null;
  return err.param === name || err.param.startsWith(name + ".") || err.param.startsWith(name + "[") ? err : null;
}

export function Field({ label, name, err, hint, children }) {
  const e = errorFor(err, name);
  return html`<div class=${"field" + (e ? " invalid" : "")} data-param=${name}>
    <label>${label}${children}</label>
    ${hint && html`<span class="hint">${hint}</span>`}
    ${e && html`<span class="error" role="alert" data-error-for=${name}>${e.message}</span>`}
  </div>`;
}

export function TextInput({ label, name, value, onInput, err, hint, type = "text", placeholder }) {
  return html`<${Field} label=${label} name=${name} err=${err} hint=${hint}>
    <br/><input type=${type} name=${name} value=${value ?? ""} placeholder=${placeholder || ""}
      aria-invalid=${errorFor(err, name) ? "true" : "false"} onInput=${(ev) => onInput(ev.target.value)} />
  </${Field}>`;
}

export function TextArea({ label, name, value, onInput, err, hint, rows = 3 }) {
  return html`<${Field} label=${label} name=${name} err=${err} hint=${hint}>
    <br/><textarea name=${name} rows=${rows} aria-invalid=${errorFor(err, name) ? "true" : "false"}
      onInput=${(ev) => onInput(ev.target.value)} value=${value ?? ""}></textarea>
  </${Field}>`;
}

export function Select({ label, name, value, onChange, options, err, hint }) {
  return html`<${Field} label=${label} name=${name} err=${err} hint=${hint}>
    <br/><select name=${name} value=${value} onChange=${(ev) => onChange(ev.target.value)}>
      ${options.map((o) => typeof o === "string" ? html`<option value=${o}>${o}</option>`
                                                  : html`<option value=${o.value} disabled=${o.disabled}>${o.label}</option>`)}
    </select>
  </${Field}>`;
}

// An error no field claimed: shown as a banner where the action was (403, 404, 409 without field, 502...).
// A 409 version_conflict (G19: someone saved the object since this page read it) offers to reload it;
// what was typed in the form stays, so it can be saved again over the new version.
export function ErrorBanner({ err, fields = [], onReload }) {
  if (!err) return null;
  if (err.code === "version_conflict") {
    return html`<div class="banner warn" role="alert" data-testid="version-conflict">${err.message}
      ${onReload && html` <button class="secondary" onClick=${onReload}>Reload (your edits stay in the form)</button>`}</div>`;
  }
  if (fields.some((f) => errorFor(err, f))) return null;
  return html`<div class="banner error" role="alert">${err.status ? `${err.status}: ` : ""}${err.message}</div>`;
}

export function ConfigBadge() {
  return html`<span class="badge config" title="defined in the config file; change it there">config: defined in the config file; change it there</span>`;
}

export function Badge({ kind, children }) {
  return html`<span class=${"badge " + (kind || "")}>${children}</span>`;
}

export function Tabs({ tabs, active, base }) {
  return html`<nav class="tabs" aria-label="tabs">${tabs.map(([id, label]) =>
    html`<a href=${base + "/" + id} class=${id === active ? "active" : ""} aria-current=${id === active ? "page" : null}>${label}</a>`)}</nav>`;
}

export function ShowApi({ method, path, body }) {
  return html`<details class="api-call"><summary>Show API call</summary><pre>${curlLine(method, path, body)}</pre></details>`;
}

export function Loading({ what }) { return html`<p class="muted">Loading ${what || ""}…</p>`; }

export function NotFound({ err, back, label }) {
  return html`<div><div class="banner error" role="alert">${err.status === 404 ? "Not found: " : ""}${err.message}</div>
    ${back && html`<a href=${back}>Back to ${label}</a>`}</div>`;
}

export function fmtTime(t) { return t ? new Date(t * 1000).toLocaleString() : ""; }

export function ownerOf(p) { return p.source === "config" ? "config" : (p.owner || "central"); }

// May this session change an object owned by `owner` (central / app:<id>)?
export function mayEdit(session, obj) {
  if (!obj || obj.source === "config") return false;
  return session.central || obj.owner === "app:" + session.application;
}

// Run an async action with busy/error state; returns [run, busy, err, setErr].
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState(null);
  const run = async (fn) => {
    setBusy(true); setErr(null);
    try { return await fn(); } catch (e) { setErr(e); return undefined; } finally { setBusy(false); }
  };
  return [run, busy, err, setErr];
}
