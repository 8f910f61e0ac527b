// V8 monitoring log: filters, Older paging, live tail, a row drawer with the per-stage table, and the
// feedback buttons (Should pass / Should fail) for every policy a record measured (seed 000).
import { html, useState, useEffect, useApi, useSession, useAction, ErrorBanner, Badge, TextInput, Select, fmtTime } from "../ui.js";
import { api, enc } from "../api.js";

// The slowest metric of a record (metrics of a stage run in parallel): its latency, in seconds.
function slowest(r) {
  const all = (r.stages || []).flatMap((s) => Object.values(s.seconds || {}));
  return all.length ? Math.max(...all) : null;
}
function fmtMs(s) { return s === null || s === undefined ? "" : s < 0.001 ? "<1 ms" : `${(s * 1000).toFixed(s < 0.1 ? 1 : 0)} ms`; }

const BUILTIN = new Set(["pii", "length", "tokens", "prompt_injection", "harmful", "toxicity"]);

export function Monitoring({ query }) {
  const session = useSession();
  const [filters, setFilters] = useState({ application: query.get("application") || "", model: query.get("model") || "",
    action: query.get("action") || "", on: query.get("on") || "", policy: query.get("policy") || "", stage: query.get("stage") || "",
    ruleset: query.get("ruleset") || "", mode: query.get("mode") || "", errors: query.get("errors") || "", limit: query.get("limit") || "50" });
  const [applied, setApplied] = useState(filters);
  const [before, setBefore] = useState(null);
  const [live, setLive] = useState(false);
  const qs = new URLSearchParams(Object.entries(applied).filter(([k, v]) => v && !(k === "application" && !session.central)));
  if (before) qs.set("before", before);
  const { data, error, reload } = useApi("/v1/monitoring?" + qs.toString());
  const [open, setOpen] = useState(null);
  const policies = useApi("/v1/admin/policies");
  useEffect(() => {
    if (!live) return;
    const t = setInterval(() => { if (document.visibilityState === "visible") reload(); }, 5000);
    return () => clearInterval(t);
  }, [live]);
  const policyIds = new Set(((policies.data && policies.data.data) || []).map((p) => p.id));
  const rows = data ? data.data : [];
  const set = (k) => (v) => setFilters({ ...filters, [k]: v });
  return html`<div><h1>Monitoring</h1>
    ${data && data.source === "memory" && html`<div class="banner warn">Policy store unreachable: this replica's in-process buffer only.</div>`}
    <div class="row">
      ${session.central && html`<${TextInput} label="Application" name="application" value=${filters.application} onInput=${set("application")} err=${error} />`}
      <${TextInput} label="Model" name="model" value=${filters.model} onInput=${set("model")} err=${error} />
      <${Select} label="Action" name="action" value=${filters.action} onChange=${set("action")} err=${error}
        options=${[{ value: "", label: "any" }, "allow", "block", "override", "redact", "passthrough", "correct", "handoff", "guard_unavailable"]} />
      <${Select} label="On" name="on" value=${filters.on} onChange=${set("on")} options=${[{ value: "", label: "any" }, "input", "output"]} err=${error} />
      <${TextInput} label="Policy" name="policy" value=${filters.policy} onInput=${set("policy")} err=${error} />
      <${TextInput} label="Stage" name="stage" value=${filters.stage} onInput=${set("stage")} err=${error} hint="triggered a ruleset" />
      <${TextInput} label="Ruleset" name="ruleset" value=${filters.ruleset} onInput=${set("ruleset")} err=${error} hint="triggered" />
      <${Select} label="Mode" name="mode" value=${filters.mode} onChange=${set("mode")} err=${error}
        options=${[{ value: "", label: "any" }, { value: "monitor", label: "monitor (would have acted)" }, { value: "enforce", label: "enforce" }]} />
      <${Select} label="Errors" name="errors" value=${filters.errors} onChange=${set("errors")} err=${error}
        options=${[{ value: "", label: "any" }, { value: "true", label: "errors only" }, { value: "false", label: "no errors" }]} />
      <${Select} label="Page size" name="limit" value=${filters.limit} onChange=${set("limit")} options=${["50", "100", "500"]} err=${error} />
      <button onClick=${() => { setBefore(null); setApplied(filters); }}>Apply filters</button>
      <label><input type="checkbox" checked=${live} onChange=${(e) => setLive(e.target.checked)} /> Live tail</label>
    </div>
    <${ErrorBanner} err=${error} fields=${["application", "model", "action", "on", "policy", "stage", "ruleset", "mode", "errors", "limit"]} />
    ${rows.length === 0 && html`<div class="banner info">No guarded requests match. <a href="#/monitoring" onClick=${() => { setApplied({ limit: "50" }); setFilters({ limit: "50" }); }}>Clear filters</a></div>`}
    ${rows.length > 0 && html`<table aria-label="monitoring records"><thead><tr><th>time</th><th>application</th><th>model</th><th>on</th><th>action</th><th>stage / ruleset</th><th>slowest metric</th><th>feedback</th><th>text</th><th></th></tr></thead>
      <tbody>${rows.map((r) => html`<tr data-record=${r.id + ":" + r.on}>
        <td>${fmtTime(r.time)}</td><td>${r.application}</td><td>${r.model}</td><td>${r.on}</td>
        <td><${Badge} kind=${r.action === "allow" ? "" : "block"}>${r.action}</${Badge}></td><td>${r.stage || ""}${r.ruleset ? " / " + r.ruleset : ""}</td>
        <td data-testid="latency">${fmtMs(slowest(r))}</td><td data-testid="feedback-state">${(r.feedback || []).map((f) => `${f.policy_id}: ${f.label}`).join(", ")}</td>
        <td class="text-cell">${(r.texts || [])[0] || ""}</td>
        <td><button class="secondary" onClick=${() => setOpen(open === r ? null : r)}>${open === r ? "Close" : "Details"}</button></td></tr>`)}</tbody></table>`}
    ${rows.length > 0 && html`<div class="row">${data.next_before && html`<button class="secondary" onClick=${() => setBefore(String(data.next_before))}>Older</button>`}
      ${before && html`<button class="secondary" onClick=${() => setBefore(null)}>Newest</button>`}</div>`}
    ${open && html`<${Drawer} key=${open.id + open.on} r=${open} policyIds=${policyIds} />`}
  </div>`;
}

function Drawer({ r, policyIds }) {
  // feedback already given on this record (G12), then what this page sends
  const [sent, setSent] = useState(Object.fromEntries((r.feedback || []).map((f) => [f.policy_id, f.label])));
  const [run, busy, err] = useAction();
  const measured = [...new Set((r.stages || []).flatMap((s) => Object.keys(s.values || {})))].filter((m) => !BUILTIN.has(m) && policyIds.has(m));
  const give = (policy, label) => run(async () => {
    await api.post("/v1/admin/feedback", { record_id: r.id, on: r.on, policy_id: policy, label });
    setSent({ ...sent, [policy]: label });
  });
  return html`<section class="card" aria-label="record details" data-testid="drawer">
    <h2>Record ${r.id} (${r.on})</h2>
    <p class="muted">${fmtTime(r.time)} · ${r.application} · ${r.model} · action ${r.action}</p>
    <h3>Texts (PII-redacted)</h3>
    ${(r.texts || []).map((t) => html`<pre>${t}</pre>`)}
    <h3>Stages</h3>
    <table aria-label="stage outcomes"><thead><tr><th>stage</th><th>mode</th><th>scanned</th><th>ruleset</th><th>action</th><th>triggered</th><th>errors</th><th>values</th><th>latency</th></tr></thead>
    <tbody>${(r.stages || []).map((s) => html`<tr><td>${s.stage}</td><td>${s.mode}</td><td>${String(s.scanned)}</td><td>${s.ruleset || ""}</td><td>${s.action}</td>
      <td>${(s.triggered || []).join(", ")}</td><td>${(s.errors || []).join(", ")}</td><td>${Object.entries(s.values || {}).map(([k, v]) => `${k}: ${typeof v === "number" ? v.toFixed(3) : JSON.stringify(v)}`).join("; ")}</td>
      <td>${Object.entries(s.seconds || {}).map(([k, v]) => `${k}: ${fmtMs(v)}`).join("; ")}</td></tr>`)}</tbody></table>
    <h3>Feedback</h3>
    ${measured.length === 0 && html`<p class="muted">No policy measured this record.</p>`}
    ${measured.map((p) => html`<div class="row" data-feedback=${p}><strong>${p}</strong>
      ${sent[p] ? html`<span role="status">feedback given: ${sent[p]}</span>` : html`
        <button class="secondary" disabled=${busy} onClick=${() => give(p, "PASS")}>Should pass</button>
        <button class="secondary" disabled=${busy} onClick=${() => give(p, "FAIL")}>Should fail</button>`}</div>`)}
    <${ErrorBanner} err=${err} />
    <div class="row"><a href=${"#/playground?record=" + enc(r.id) + "&on=" + enc(r.on)}>Open in Playground</a></div>
  </section>`;
}
