// V5 stages list and V6 stage page: ruleset editor (ordered rulesets, rules metric·op·value, action,
// mode), settings, versions and revert, pins (seed 004; Galileo's central stages).
import { html, useState, useApi, useSession, useAction, TextInput, TextArea, Select, ErrorBanner, ConfigBadge, Badge,
         Tabs, ShowApi, Loading, NotFound, fmtTime, mayEdit, errorFor, handoff } from "../ui.js";
import { api, enc } from "../api.js";

const OPS = ["gt", "gte", "lt", "lte", "eq", "neq", "contains", "contains_any", "contains_all", "empty", "not_empty"];
const BUILTINS = ["pii", "length", "tokens", "prompt_injection", "harmful", "toxicity"];
const ACTIONS = ["block", "override", "redact", "passthrough", "handoff", "correct"];

function mayManage(session, s) {
  if (s.source === "config") return false;
  if (s.scope === "central") return session.central;
  return mayEdit(session, s) || (session.central);
}

export function StageList() {
  const session = useSession();
  const { data, error, loading, reload } = useApi("/v1/admin/stages");
  const [run, , err] = useAction();
  if (error) return html`<${NotFound} err=${error} />`;
  if (loading && !data) return html`<${Loading} what="stages" />`;
  const all = data.data;
  const groups = [["Central", all.filter((s) => s.source !== "config" && s.scope === "central")],
                  ["Application", all.filter((s) => s.source !== "config" && s.scope !== "central")],
                  ["Config", all.filter((s) => s.source === "config")]];
  const act = (s, what) => run(async () => {
    if (what === "pause" && !confirm("A paused stage is kept with its history but not enforced.")) return;
    if (what === "delete") { if (!confirm(`Delete stage ${s.id}?`)) return; await api.del("/v1/admin/stages/" + enc(s.id)); }
    else await api.post(`/v1/admin/stages/${enc(s.id)}/${what}`);
    reload();
  });
  return html`<div><h1>Stages</h1>
    <div class="row"><a href="#/stages/new"><button>New stage</button></a></div>
    <${ErrorBanner} err=${err} />
    ${all.length === 0 && html`<div class="banner info">Nothing is enforced yet. Create a stage: for example an input PII redaction or a monitor-mode prompt-injection stage.</div>`}
    ${groups.map(([label, rows]) => rows.length > 0 && html`<h2>${label} stages</h2>
      <table aria-label=${label + " stages"}><thead><tr><th>name</th><th>on</th><th>mode</th><th>rulesets</th><th>applications</th><th>models</th>
        <th>paused</th><th>version</th><th>updated</th><th></th></tr></thead>
      <tbody>${rows.map((s) => html`<tr data-stage=${s.id}>
        <td><a href=${"#/stages/" + enc(s.id)}>${s.id}</a> ${s.source === "config" && html`<${ConfigBadge} />`}
          ${s.id.startsWith("apply-") && html` <span class="badge">created by Apply</span>`}</td>
        <td>${s.on}</td><td>${s.mode || "enforce"}</td><td>${(s.rulesets || []).length}</td>
        <td>${s.scope === "central" ? "all" : (s.applications || []).join(", ")}</td><td>${s.models ? s.models.join(", ") : "all"}</td>
        <td>${s.paused ? html`<${Badge} kind="failed">paused</${Badge}>` : ""}</td><td>${s.version ?? ""}</td>
        <td>${fmtTime(s.updated)} ${s.author || ""}</td>
        <td>${mayManage(session, s) && html`<span class="row">
          ${s.paused ? html`<button class="secondary" onClick=${() => act(s, "resume")}>Resume</button>`
                     : html`<button class="secondary" onClick=${() => act(s, "pause")}>Pause</button>`}
          <button class="danger" onClick=${() => act(s, "delete")} aria-label=${"Delete stage " + s.id}>Delete</button></span>`}</td>
      </tr>`)}</tbody></table>`)}
  </div>`;
}

function parseValue(text) {
  const t = (text ?? "").trim();
  if (t === "") return undefined;
  try { return JSON.parse(t); } catch (e) { /* a bare label */ }
  if (t.includes(",")) return t.split(",").map((x) => x.trim()).filter(Boolean);
  return t;
}
const showValue = (v) => v === undefined || v === null ? "" : typeof v === "string" ? v : JSON.stringify(v);

function toDraft(s) {
  return {
    orig: s, name: s.name || s.id || "", on: s.on || "input", scope: s.scope || "application", mode: s.mode || "enforce",
    on_error: s.on_error || "block", timeout_ms: s.timeout_ms ?? 250, applications: (s.applications || []).join(", "),
    models: s.models ? s.models.join(", ") : "",
    rulesets: (s.rulesets || []).map((rs) => ({
      name: rs.name || "", mode: rs.mode || "", action: { ...(rs.action || { type: "block" }) }, orig: rs,
      rules: (rs.rules || []).map((r) => ({ metric: r.metric || "", op: r.op || "", value: showValue(r.value), orig: r })),
    })),
  };
}

function fromDraft(d) {
  const spec = { name: d.name, on: d.on, scope: d.scope };
  const had = (k) => d.orig && d.orig.source !== undefined ? d.orig[k] !== undefined && d.orig[k] !== null : false;
  // defaults are sent only when changed or already stated, so a save does not restate them
  if (d.mode !== "enforce" || had("mode")) spec.mode = d.mode;
  if (d.on_error !== "block" || had("on_error")) spec.on_error = d.on_error;
  if (Number(d.timeout_ms) !== 250 || had("timeout_ms")) spec.timeout_ms = Number(d.timeout_ms);
  const models = d.models.split(",").map((x) => x.trim()).filter(Boolean);
  if (models.length) spec.models = models;
  spec.rulesets = d.rulesets.map((rs) => {
    // Fields the form does not show are kept as they were (an edit never drops them: LiteLLM #19084).
    const { name: _n, rules: _r, action: _a, mode: _m, ...keep } = rs.orig || {};
    const out = { ...keep, name: rs.name, rules: rs.rules.map((r) => {
      const { metric: _x, op: _o, value: _v, ...keepRule } = r.orig || {};
      const rule = { ...keepRule, metric: r.metric };
      if (r.op) rule.op = r.op;
      const v = parseValue(r.value); if (v !== undefined) rule.value = v;
      return rule;
    }), action: cleanAction(rs.action, (rs.orig || {}).action) };
    if (rs.mode) out.mode = rs.mode;
    return out;
  });
  if (d.scope !== "central") spec.applications = d.applications.split(",").map((x) => x.trim()).filter(Boolean);
  return spec;
}

function cleanAction(a, before) {
  // the action's other fields (placeholder, model, instructions...) stay while its type stays
  const out = before && before.type === a.type ? { ...before, type: a.type } : { type: a.type };
  delete out.message;
  if (a.message) out.message = a.message;
  if (a.type === "override") out.responses = (a.responsesText ?? (a.responses || []).join("\n")).split("\n").map((x) => x.trim()).filter(Boolean);
  return out;
}

// The names of the fields this page renders: an error naming one shows beside it, any other in a banner.
function fieldNames(d, withSettings) {
  const out = withSettings ? ["name", "on", "scope", "applications", "models", "mode", "on_error", "timeout_ms"] : [];
  d.rulesets.forEach((rs, i) => {
    out.push(`rulesets[${i}].name`, `rulesets[${i}].action.type`, `rulesets[${i}].action.message`, `rulesets[${i}].action.responses`, `rulesets[${i}].mode`);
    rs.rules.forEach((_, k) => out.push(`rulesets[${i}].rules[${k}].metric`, `rulesets[${i}].rules[${k}].op`, `rulesets[${i}].rules[${k}].value`));
  });
  return out;
}

// G15: the metric catalogue (GET /v1/admin/metrics) gives each metric's value kind, the operators the plan
// accepts on it and its labels; without it (still loading) every operator is offered.
function ruleOptions(r, catalogue) {
  const m = catalogue && catalogue.find((x) => x.name === r.metric);
  const ops = m ? [...m.ops] : [...OPS];
  if (r.op && !ops.includes(r.op)) ops.push(r.op); // a stored rule keeps its operator on screen
  const threshold = !m || m.source === "policy" ? [{ value: "", label: m && m.default ? `(policy threshold: ${m.default.op} ${m.default.value})` : "(policy threshold)" }] : [];
  const labels = m && m.labels ? "labels: " + m.labels.join(", ") : m ? `a ${m.kind}` : "number, label, or labels separated by commas";
  return { ops: [...threshold, ...ops], labels };
}

function RulesetEditor({ d, setD, err, readOnly, metrics, catalogue }) {
  const upd = (i, f) => setD({ ...d, rulesets: d.rulesets.map((rs, j) => j === i ? f(rs) : rs) });
  const move = (i, k) => { const a = d.rulesets.slice(); [a[i], a[i + k]] = [a[i + k], a[i]]; setD({ ...d, rulesets: a }); };
  return html`<div>
    <p class="muted">Rulesets in priority order: the first triggered ruleset's action applies. Rules inside a ruleset are AND-ed.</p>
    ${d.rulesets.map((rs, i) => html`<fieldset class="ruleset" data-ruleset=${i} disabled=${readOnly}><legend>Ruleset ${i + 1}</legend>
      <${TextInput} label="Ruleset name" name=${`rulesets[${i}].name`} value=${rs.name} onInput=${(v) => upd(i, (x) => ({ ...x, name: v }))} err=${err} />
      ${rs.rules.map((r, k) => { const o = ruleOptions(r, catalogue); return html`<div class="row" data-rule=${k}>
        <${Select} label="Metric" name=${`rulesets[${i}].rules[${k}].metric`} value=${r.metric} err=${err}
          options=${[{ value: "", label: "(choose)" }, ...metrics]} onChange=${(v) => upd(i, (x) => ({ ...x, rules: x.rules.map((y, m) => m === k ? { ...y, metric: v } : y) }))} />
        <${Select} label="Op" name=${`rulesets[${i}].rules[${k}].op`} value=${r.op} err=${err}
          options=${o.ops} onChange=${(v) => upd(i, (x) => ({ ...x, rules: x.rules.map((y, m) => m === k ? { ...y, op: v } : y) }))} />
        <${TextInput} label="Value" name=${`rulesets[${i}].rules[${k}].value`} value=${r.value} err=${err} hint=${o.labels}
          onInput=${(v) => upd(i, (x) => ({ ...x, rules: x.rules.map((y, m) => m === k ? { ...y, value: v } : y) }))} />
        ${!readOnly && html`<button class="secondary" onClick=${() => upd(i, (x) => ({ ...x, rules: x.rules.filter((_, m) => m !== k) }))}>Remove rule</button>`}
      </div>`; })}
      ${!readOnly && html`<button class="secondary" onClick=${() => upd(i, (x) => ({ ...x, rules: [...x.rules, { metric: "", op: "", value: "" }] }))}>Add rule</button>`}
      <${Select} label="Action" name=${`rulesets[${i}].action.type`} value=${rs.action.type} options=${ACTIONS} err=${err}
        onChange=${(v) => upd(i, (x) => ({ ...x, action: { ...x.action, type: v } }))} />
      ${["block", "handoff"].includes(rs.action.type) && html`<${TextInput} label="Message" name=${`rulesets[${i}].action.message`} value=${rs.action.message}
        err=${err} onInput=${(v) => upd(i, (x) => ({ ...x, action: { ...x.action, message: v } }))} />`}
      ${rs.action.type === "override" && html`<${TextArea} label="Responses (one per line)" name=${`rulesets[${i}].action.responses`} err=${err}
        value=${rs.action.responsesText ?? (rs.action.responses || []).join("\n")} onInput=${(v) => upd(i, (x) => ({ ...x, action: { ...x.action, responsesText: v } }))} />`}
      <${Select} label="Ruleset mode" name=${`rulesets[${i}].mode`} value=${rs.mode} options=${[{ value: "", label: "inherit" }, "enforce", "monitor"]} err=${err}
        onChange=${(v) => upd(i, (x) => ({ ...x, mode: v }))} />
      ${!readOnly && html`<div class="row">
        <button class="secondary" disabled=${i === 0} onClick=${() => move(i, -1)} aria-label=${"Move ruleset " + (i + 1) + " up"}>Up</button>
        <button class="secondary" disabled=${i === d.rulesets.length - 1} onClick=${() => move(i, 1)} aria-label=${"Move ruleset " + (i + 1) + " down"}>Down</button>
        <button class="danger" onClick=${() => setD({ ...d, rulesets: d.rulesets.filter((_, j) => j !== i) })}>Remove ruleset</button></div>`}
    </fieldset>`)}
    ${!readOnly && html`<button class="secondary" onClick=${() => setD({ ...d, rulesets: [...d.rulesets, { name: "ruleset-" + (d.rulesets.length + 1), mode: "",
        action: { type: "block" }, rules: [{ metric: "", op: "", value: "" }] }] })}>Add ruleset</button>`}
  </div>`;
}

function Settings({ d, setD, err, readOnly, session, isNew }) {
  const set = (k) => (v) => setD({ ...d, [k]: v });
  return html`<fieldset disabled=${readOnly}>
    <${TextInput} label="Stage name" name="name" value=${d.name} onInput=${isNew ? set("name") : () => {}} err=${err} />
    <${Select} label="On" name="on" value=${d.on} onChange=${set("on")} options=${["input", "output"]} err=${err} />
    <${Select} label="Scope" name="scope" value=${d.scope} onChange=${set("scope")} err=${err}
      options=${session.central ? ["application", "central"] : ["application"]} />
    ${d.scope !== "central" && html`<${TextInput} label="Applications (comma separated)" name="applications" value=${d.applications} onInput=${set("applications")} err=${err} />`}
    <${TextInput} label="Models (comma separated; empty = all)" name="models" value=${d.models} onInput=${set("models")} err=${err} />
    <${Select} label="Mode" name="mode" value=${d.mode} onChange=${set("mode")} options=${["enforce", "monitor"]} err=${err} />
    <${Select} label="On error" name="on_error" value=${d.on_error} onChange=${set("on_error")} options=${["block", "allow"]} err=${err} />
    <${TextInput} type="number" label="Timeout (ms)" name="timeout_ms" value=${d.timeout_ms} onInput=${set("timeout_ms")} err=${err} hint="model-scored stages want more than 250 ms" />
  </fieldset>`;
}

export function StagePage({ name, tab, isNew, query }) {
  const session = useSession();
  const { data: s, error, loading, reload } = useApi(isNew ? null : "/v1/admin/stages/" + enc(name));
  const policies = useApi("/v1/admin/policies");
  const catalogue = useApi("/v1/admin/metrics");
  const [draft, setDraft] = useState(null);
  const [run, busy, err, setErr] = useAction();
  const [saved, setSaved] = useState(null);
  const [checked, setChecked] = useState(null);
  const [note, setNote] = useState("");
  if (error) return html`<${NotFound} err=${error} back="#/stages" label="the stages" />`;
  if (!isNew && loading && !s) return html`<${Loading} what=${name} />`;
  const base = s ? s : { name: "", on: "input", scope: session.central ? "central" : "application",
    applications: session.central ? [] : [session.application], rulesets: [{ name: "ruleset-1", rules: [{ metric: "" }], action: { type: "block" } }] };
  const d = draft || toDraft(base);
  const readOnly = !isNew && !mayManage(session, s);
  const cat = catalogue.data && catalogue.data.data;
  const metrics = cat ? cat.map((m) => ({ value: m.name, label: `${m.name} · ${m.source === "policy" ? m.type + " policy" : "built-in"} (${m.kind})` }))
    : [...BUILTINS, ...((policies.data && policies.data.data) || []).map((p) => p.id)];
  const spec = fromDraft(d);
  // G19: a change names the version it was based on (a 409 offers to reload, keeping the draft); G11: note
  const patchBody = () => ({ ...spec, name: s.id, ...(note ? { note } : {}), expected_version: s.version });
  const save = () => run(async () => {
    setChecked(null);
    if (isNew) {
      const r = await api.post("/v1/admin/stages", note ? { ...spec, note } : spec);
      location.hash = "#/stages/" + enc(r.id);
    } else {
      const r = await api.patch("/v1/admin/stages/" + enc(s.id), patchBody());
      setSaved(r.version); setDraft(null); setNote(""); reload();
    }
  });
  const check = () => run(async () => {  // G16: compile and validate, nothing saved
    setChecked(null); setSaved(null);
    const r = isNew ? await api.post("/v1/admin/stages?dry_run=true", spec)
      : await api.patch("/v1/admin/stages/" + enc(s.id) + "?dry_run=true", patchBody());
    setChecked(`Valid: saving would make version ${r.version}. Nothing was saved.`);
  });
  const testIt = () => { handoff.draft = spec; location.hash = "#/playground?draft=1"; };
  const current = isNew ? "rulesets" : tab;
  const tabs = isNew ? [["rulesets", "Rulesets"]] : [["rulesets", "Rulesets"], ["settings", "Settings"], ...(s.source === "config" ? [] : [["versions", "Versions"]]),
    ...(s.scope === "central" && s.source !== "config" ? [["pins", "Pins"]] : [])];
  return html`<div>
    <h1>${isNew ? "New stage" : s.id} ${s && s.source === "config" && html`<${ConfigBadge} />`} ${s && s.paused && html`<${Badge} kind="failed">paused</${Badge}>`}
      ${s && s.version && html` <span class="badge" data-testid="version">v${s.version}</span>`}</h1>
    ${!isNew && html`<${Tabs} tabs=${tabs} active=${current} base=${"#/stages/" + enc(s.id)} />`}
    ${readOnly && html`<p class="muted">Read-only${s.source === "config" ? ": defined in the config file; change it there." : ": " + (s.scope === "central" ? "only central tokens manage central stages." : "owned by " + s.owner + ".")}</p>`}
    ${(current === "rulesets" || current === "settings") && html`<div>
      ${(isNew || current === "settings") && html`<${Settings} d=${d} setD=${setDraft} err=${err} readOnly=${readOnly} session=${session} isNew=${isNew} />`}
      ${current === "rulesets" && html`<${RulesetEditor} d=${d} setD=${setDraft} err=${err} readOnly=${readOnly} metrics=${metrics} catalogue=${cat} />`}
      ${!readOnly && html`<${TextInput} label="Version note" name="note" value=${note} onInput=${setNote} err=${err} hint="optional: why (shown in Versions)" />`}
      <div class="row">${!readOnly && html`<button onClick=${save} disabled=${busy}>${isNew ? "Create stage" : "Save stage"}</button>
        <button class="secondary" onClick=${check} disabled=${busy}>Check without saving</button>`}
        <button class="secondary" onClick=${testIt} title="dry-run this stage as edited (unsaved) in the Playground">Test in Playground</button></div>
      ${saved && html`<div class="banner info" role="status">Saved as version ${saved}.</div>`}
      ${checked && html`<div class="banner info" role="status" data-testid="dry-run-ok">${checked}</div>`}
      <${ErrorBanner} err=${err} fields=${[...fieldNames(d, isNew || current === "settings"), "note"]} onReload=${() => { setErr(null); reload(); }} />
      ${!readOnly && html`<${ShowApi} method=${isNew ? "POST" : "PATCH"} path=${isNew ? "/v1/admin/stages" : "/v1/admin/stages/" + enc(s.id)} body=${spec} />`}
      <details><summary>Raw JSON</summary><pre data-testid="stage-json">${JSON.stringify(spec, null, 2)}</pre></details>
    </div>`}
    ${current === "versions" && html`<${StageVersions} s=${s} reload=${reload} readOnly=${readOnly} />`}
    ${current === "pins" && html`<${Pins} s=${s} session=${session} />`}
  </div>`;
}

function StageVersions({ s, reload, readOnly }) {
  const { data, error } = useApi("/v1/admin/stages/" + enc(s.id) + "/versions", [s.version]);
  const [run, , err, setErr] = useAction();
  if (error) return html`<${ErrorBanner} err=${error} />`;
  const revert = (v) => run(async () => {
    if (!confirm(`Make version ${v} current again? This creates a new version.`)) return;
    await api.post("/v1/admin/stages/" + enc(s.id) + "/revert", { version: v, expected_version: s.version }); reload();
  });
  return html`<div><${ErrorBanner} err=${err} onReload=${() => { setErr(null); reload(); }} />
    <table aria-label="versions"><thead><tr><th>version</th><th>time</th><th>author</th><th>note</th><th>rulesets</th><th></th></tr></thead>
    <tbody>${(data ? data.data.slice().reverse() : []).map((v) => html`<tr data-version=${v.version}><td>v${v.version} ${v.current && html`<${Badge} kind="ready">current</${Badge}>`}</td>
      <td>${fmtTime(v.updated)}</td><td>${v.author}</td><td>${v.note}</td><td>${(v.rulesets || []).map((r) => r.name).join(" → ")}${v.paused ? " (paused)" : ""}</td>
      <td>${!readOnly && !v.current && html`<button class="secondary" onClick=${() => revert(v.version)}>Revert to v${v.version}</button>`}</td></tr>`)}</tbody></table></div>`;
}

function Pins({ s, session }) {
  const path = "/v1/admin/stages/" + enc(s.id) + "/pins";
  const { data, error, reload } = useApi(path);
  const [form, setForm] = useState({ application: session.central ? "" : session.application, version: "" });
  const [run, busy, err] = useAction();
  const pin = () => run(async () => { await api.put("/v1/admin/stages/" + enc(s.id) + "/pin", { application: form.application, version: Number(form.version) }); reload(); });
  const unpin = (app) => run(async () => { await api.del("/v1/admin/stages/" + enc(s.id) + "/pin", { application: app }); reload(); });
  if (error) return html`<${ErrorBanner} err=${error} />`;
  const rows = data ? data.data : [];
  return html`<div>
    ${rows.length === 0 ? html`<p>Every application follows the latest version (v${s.version}).</p>`
      : html`<table aria-label="pins"><thead><tr><th>application</th><th>version</th><th></th><th></th></tr></thead><tbody>
        ${rows.map((p) => html`<tr><td>${p.application}</td><td>v${p.version}</td><td>${p.behind ? `${p.behind} versions behind latest` : "latest"}</td>
          <td><button class="secondary" onClick=${() => unpin(p.application)}>Follow latest again</button></td></tr>`)}</tbody></table>`}
    <div class="card"><h2>Pin an application</h2>
      <${TextInput} label="Application" name="application" value=${form.application} onInput=${(v) => setForm({ ...form, application: v })} err=${err} />
      <${TextInput} type="number" label="Version" name="version" value=${form.version} onInput=${(v) => setForm({ ...form, version: v })} err=${err} />
      <button onClick=${pin} disabled=${busy}>Pin</button>
      <${ErrorBanner} err=${err} fields=${["application", "version"]} /></div>
  </div>`;
}
