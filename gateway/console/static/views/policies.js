// V2 policy registry, V3 New Policy wizard, V4 policy page (definition, training data, training and
// versions, threshold, applied to, feedback). Seed 000's policy workflow.
import { html, useState, useEffect, useApi, useSession, useAction, Field, TextInput, TextArea, Select, ErrorBanner,
         ConfigBadge, Badge, Tabs, ShowApi, Loading, NotFound, fmtTime, ownerOf, mayEdit, errorFor } from "../ui.js";
import { api, enc } from "../api.js";

const TYPES = [
  { value: "regex", label: "regex: patterns (RE2) that must not appear", group: "Pattern" },
  { value: "contains", label: "contains: keywords that must not appear", group: "Pattern" },
  { value: "pii", label: "pii: personal data entities (Presidio names)", group: "Pattern" },
  { value: "classifier", label: "classifier: trained from PASS/FAIL examples", group: "Model" },
  { value: "similar", label: "similar: nearest examples decide", group: "Model" },
  { value: "detector", label: "detector: a shipped detector (prompt_injection, harmful, toxicity)", group: "Model" },
  { value: "rubric", label: "rubric: an LLM judge scores against a rubric", group: "Model" },
  { value: "code", label: "code: config file only", disabled: true },
  { value: "onnx_classifier", label: "onnx_classifier: config file only", disabled: true },
];
const PII = ["EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS", "PERSON"];

// Whether a policy trains comes from the API, never from a list kept here: a stored policy's view says
// `trainable` (its type's, from the server's policy-type registry); config policies never train.
export function policyState(p) {
  if (!p.trainable || p.source === "config") return null;
  const t = p.training;
  if (!t) return "Needs training";
  if (t.status === "training_queued") return "Training queued";
  if (t.status === "training") return "Training";
  if (t.status === "failed") return "Failed";
  if (t.status === "ready") return p.needs_training ? `Needs training (edited since v${t.version})` : `Ready (trained v${t.version})`;
  return t.status;
}

const lines = (s) => (s || "").split("\n").map((x) => x.trim()).filter(Boolean);

export function PolicyList({ query }) {
  const session = useSession();
  const { data, error, loading, reload } = useApi("/v1/admin/policies");
  const [text, setText] = useState("");
  const [type, setType] = useState("");
  const [run, , err] = useAction();
  if (error) return html`<${NotFound} err=${error} />`;
  if (loading && !data) return html`<${Loading} what="policies" />`;
  const rows = data.data.filter((p) => (!type || p.type === type) &&
    (!text || (p.id + " " + (p.rule || "")).toLowerCase().includes(text.toLowerCase())));
  const remove = (p) => run(async () => {
    const typed = prompt(`Delete policy ${p.id}? Type its id to confirm.`);
    if (typed !== p.id) return;
    await api.del("/v1/admin/policies/" + enc(p.id));
    reload();
  });
  return html`<div><h1>Policies</h1>
    <p class="muted">The policy registry: every policy you can use in a stage rule or apply to models.</p>
    <div class="row"><a href="#/policies/new"><button>New Policy</button></a>
      <label>Search <input type="text" name="search" value=${text} onInput=${(e) => setText(e.target.value)} /></label>
      <label>Type <select name="type-filter" value=${type} onChange=${(e) => setType(e.target.value)}>
        <option value="">all</option>${[...new Set(data.data.map((p) => p.type))].map((t) => html`<option value=${t}>${t}</option>`)}</select></label>
    </div>
    <${ErrorBanner} err=${err} />
    ${data.data.filter((p) => p.source !== "config").length === 0 && html`<div class="banner info">No policies yet.
      Start from an example: <a href="#/policies/new?type=regex">a regex policy</a> or <a href="#/policies/new?type=classifier">a classifier policy</a>.</div>`}
    <table aria-label="policies"><thead><tr><th>id</th><th>type</th><th>rule</th><th>threshold</th><th>owner</th>
      <th>version</th><th>state</th><th>applied</th><th></th></tr></thead>
    <tbody>${rows.map((p) => html`<tr data-policy=${p.id}>
      <td><a href=${"#/policies/" + enc(p.id)}>${p.id}</a></td><td>${p.type}</td>
      <td class="text-cell">${(p.rule || "").split("\n")[0]}</td>
      <td>${p.threshold === 0 ? "calibrated" : p.threshold ?? "0.5 (default)"}</td>
      <td>${p.source === "config" ? html`<${ConfigBadge} />` : ownerOf(p)}</td>
      <td>${p.version ?? ""}</td>
      <td>${policyState(p) && html`<${Badge} kind=${(policyState(p) || "").startsWith("Ready") ? "ready" : policyState(p) === "Failed" ? "failed" : ""}>${policyState(p)}</${Badge}>`}</td>
      <td>${p.applied ? `Applied (${p.applied})` : "Not applied"}</td>
      <td>${mayEdit(session, p) && html`<button class="danger" onClick=${() => remove(p)} aria-label=${"Delete " + p.id}>Delete</button>`}</td>
    </tr>`)}</tbody></table></div>`;
}

// G15: GET /v1/admin/policy-types: the type picker (grouped by family, config-only types disabled), the
// PII entities and detectors offered, and a form for the types without a hand-made one (from their params).
const FAMILIES = ["pattern", "measure", "model", "judge", "code"];
function typeOptions(cat) {
  if (!cat) return TYPES.map((t) => ({ value: t.value, label: (t.group ? t.group + " · " : "") + t.label, disabled: t.disabled }));
  return [...cat].sort((a, b) => FAMILIES.indexOf(a.family) - FAMILIES.indexOf(b.family) || a.type.localeCompare(b.type))
    .map((t) => ({ value: t.type, disabled: !t.writable, label: `${t.family} · ${t.type}: ${t.description}` +
      (t.trainable ? " (trainable)" : "") + (t.score === "compliance" ? " (higher = compliant)" : "") + (t.writable ? "" : " (config file only)") }));
}
const paramsOf = (cat, type) => ((cat && cat.find((t) => t.type === type)) || { params: [] }).params.filter((p) => !p.config_only);
const enumOf = (cat, type, name, fallback) => {
  const p = paramsOf(cat, type).find((x) => x.name === name);
  const s = p && (p.schema.enum || (p.schema.items && p.schema.items.enum));
  return s || fallback;
};
const HAND_MADE = ["regex", "contains", "pii", "detector", "rubric"];
// true or false as the catalogue says; null while it loads or if it failed (no training fields then).
const trainableIn = (cat, type) => (cat ? !!(cat.find((t) => t.type === type) || {}).trainable : null);

function genericParams(d, set, err, cat) {
  return paramsOf(cat, d.type).map((p) => {
    const value = (d.params || {})[p.name] ?? "";
    const put = (v) => set({ params: { ...(d.params || {}), [p.name]: v } });
    const label = p.name + (p.required ? "" : " (optional)");
    const hint = p.description + (p.default !== undefined ? ` Default: ${JSON.stringify(p.default)}.` : "");
    if (p.schema.enum || p.schema.type === "boolean")
      return html`<${Select} label=${label} name=${p.name} value=${value} onChange=${put} err=${err} hint=${hint}
        options=${[{ value: "", label: "(default)" }, ...(p.schema.enum || ["true", "false"]).map(String)]} />`;
    if (p.schema.type === "array") return html`<${TextArea} label=${label + " (one per line)"} name=${p.name} value=${value} onInput=${put} err=${err} hint=${hint} />`;
    return html`<${TextInput} type=${["integer", "number"].includes(p.schema.type) ? "number" : "text"} label=${label} name=${p.name} value=${value} onInput=${put} err=${err} hint=${hint} />`;
  });
}

function genericBody(d, cat) {
  const out = {};
  for (const p of paramsOf(cat, d.type)) {
    const v = (d.params || {})[p.name];
    if (v === undefined || v === "") continue;
    if (p.schema.type === "boolean") out[p.name] = v === "true";
    else if (p.schema.type === "array") out[p.name] = lines(v);
    else if (["integer", "number"].includes(p.schema.type)) out[p.name] = Number(v);
    else out[p.name] = v;
  }
  return out;
}

// The behaviours and PASS/FAIL examples a trainable type trains on (the catalogue's `trainable`).
const trainingFields = (d, set, err) => html`
      <${TextArea} label="Disallowed behaviours (one per line)" name="disallowed_behaviors" value=${d.disallowed} onInput=${(v) => set({ disallowed: v })} err=${err} />
      <${TextArea} label="Allowed behaviours (one per line)" name="allowed_behaviors" value=${d.allowed} onInput=${(v) => set({ allowed: v })} err=${err} />
      <${TextArea} label="FAIL examples (one per line)" name="examples" value=${d.fail} onInput=${(v) => set({ fail: v })} err=${err} />
      <${TextArea} label="PASS examples (one per line)" name="pass_examples" value=${d.pass} onInput=${(v) => set({ pass: v })} err=${err} />`;

function typeParams(d, set, err, cat) {
  const training = trainableIn(cat, d.type) ? trainingFields(d, set, err) : null;
  if (cat && !HAND_MADE.includes(d.type)) return html`${genericParams(d, set, err, cat)}${training}`;
  switch (d.type) {
    case "regex": return html`<${TextArea} label="Patterns (one per line)" name="patterns" value=${d.patterns} onInput=${(v) => set({ patterns: v })} err=${err} />`;
    case "contains": return html`<${TextArea} label="Keywords (one per line)" name="keywords" value=${d.keywords} onInput=${(v) => set({ keywords: v })} err=${err} />`;
    case "pii": return html`<${Field} label="Entities" name="entities" err=${err}><div class="row">${enumOf(cat, "pii", "entities", PII).map((e) => html`<label><input type="checkbox"
        checked=${(d.entities || []).includes(e)} onChange=${(ev) => set({ entities: ev.target.checked ? [...(d.entities || []), e] : (d.entities || []).filter((x) => x !== e) })} /> ${e}</label>`)}</div></${Field}>`;
    case "detector": return html`<${Select} label="Detector" name="detector" value=${d.detector || "prompt_injection"} onChange=${(v) => set({ detector: v })} options=${enumOf(cat, "detector", "detector", ["prompt_injection", "harmful", "toxicity"])} err=${err} />`;
    case "rubric": return html`<${TextArea} label="Rubric" name="rubric" value=${d.rubric} onInput=${(v) => set({ rubric: v })} err=${err} />
      <${TextInput} label="Judge model" name="judge_model" value=${d.judge_model} onInput=${(v) => set({ judge_model: v })} err=${err} />`;
    default: return training;
  }
}

function wizardBody(d, cat) {
  const body = { id: d.id, type: d.type, rule: d.rule || "", threshold: Number(d.threshold) };
  if (cat && !HAND_MADE.includes(d.type)) Object.assign(body, genericBody(d, cat));
  if (d.type === "regex") body.patterns = lines(d.patterns);
  if (d.type === "contains") body.keywords = lines(d.keywords);
  if (d.type === "pii") body.entities = d.entities || [];
  if (d.type === "detector") body.detector = d.detector || "prompt_injection";
  if (d.type === "rubric") { body.rubric = d.rubric || ""; if (d.judge_model) body.judge_model = d.judge_model; }
  if (trainableIn(cat, d.type)) {
    body.disallowed_behaviors = lines(d.disallowed);
    body.allowed_behaviors = lines(d.allowed);
    body.examples = [...lines(d.fail).map((t) => ({ type: "FAIL", input_example: t })),
                     ...lines(d.pass).map((t) => ({ type: "PASS", input_example: t }))];
  }
  return body;
}

const STEP_OF = (param) => !param ? null : param === "type" ? 0 : param === "threshold" ? 2 : 1;

export function PolicyNew({ query }) {
  const [step, setStep] = useState(0);
  const [d, setD] = useState({ type: query.get("type") || "regex", threshold: "0.5" });
  const [run, busy, err] = useAction();
  const [created, setCreated] = useState(null);
  const [checked, setChecked] = useState(null);
  const set = (x) => { setChecked(null); setD((o) => ({ ...o, ...x })); };
  const types = useApi("/v1/admin/policy-types");
  const cat = types.data && types.data.data;
  const body = wizardBody(d, cat);
  const create = () => run(async () => {
    try {
      const p = await api.post("/v1/admin/policies", body);
      setCreated(p);
    } catch (e) { const s = STEP_OF(e.param); if (s !== null) setStep(s); throw e; }
  });
  const check = () => run(async () => {  // G16: validated as Create would, nothing stored
    setChecked(null);
    try {
      await api.post("/v1/admin/policies?dry_run=true", body);
      setChecked("Valid: Create would store it as version 1.");
    } catch (e) { const s = STEP_OF(e.param); if (s !== null) setStep(s); throw e; }
  });
  if (created) return html`<div><h1>Policy ${created.id} created</h1>
    <div class="banner info">Version ${created.version}.${created.trainable ? " Add training data and train it next." : ""}</div>
    <a href=${"#/policies/" + enc(created.id) + (created.trainable ? "/data" : "")}>Open ${created.id}</a></div>`;
  const steps = ["Type", "Definition", "Threshold", "Review"];
  return html`<div><h1>New Policy</h1>
    <ol class="row" aria-label="steps">${steps.map((s, i) => html`<li class=${i === step ? "badge ready" : "badge"}>${i + 1}. ${s}</li>`)}</ol>
    ${step === 0 && html`<${Select} label="Policy type" name="type" value=${d.type} onChange=${(v) => set({ type: v })} err=${err}
        options=${typeOptions(cat)} />`}
    ${step === 1 && html`<div>
      <${TextInput} label="Policy id" name="id" value=${d.id} onInput=${(v) => set({ id: v })} err=${err} hint="a slug; usable as a metric name in stage rules" />
      <${TextArea} label="Rule (what the policy forbids)" name="rule" value=${d.rule} onInput=${(v) => set({ rule: v })} err=${err} />
      ${typeParams(d, set, err, cat)}
      ${!cat && (types.error ? html`<div class="banner warn" role="status" data-testid="types-unavailable">Policy types did not load
          (${types.error.message}): a trainable type's training fields are not shown.
          <button class="secondary" onClick=${types.reload}>Retry</button></div>` : html`<${Loading} what="policy types" />`)}</div>`}
    ${step === 2 && html`<${TextInput} type="number" label="Threshold" name="threshold" value=${d.threshold} onInput=${(v) => set({ threshold: v })} err=${err}
        hint="0 to 1; violated above it. 0 = the calibrated threshold (model types)." />`}
    ${step === 3 && html`<div><h2>Review</h2><pre data-testid="review-json">${JSON.stringify(body, null, 2)}</pre>
      <${ShowApi} method="POST" path="/v1/admin/policies" body=${body} /></div>`}
    <${ErrorBanner} err=${err} fields=${["id", "type", "rule", "threshold", "patterns", "keywords", "entities", "detector", "rubric", "judge_model",
      ...(trainableIn(cat, d.type) ? ["examples", "allowed_behaviors", "disallowed_behaviors"] : []), ...paramsOf(cat, d.type).map((p) => p.name)]} />
    <div class="row">
      <a href="#/policies"><button class="secondary" type="button">Cancel</button></a>
      ${step > 0 && html`<button class="secondary" onClick=${() => setStep(step - 1)}>Back</button>`}
      ${step < 3 && html`<button onClick=${() => setStep(step + 1)}>Next</button>`}
      ${step === 3 && html`<button class="secondary" onClick=${check} disabled=${busy}>Check without saving</button>`}
      ${step === 3 && html`<button onClick=${create} disabled=${busy}>Create</button>`}
    </div>
    ${checked && html`<div class="banner info" role="status" data-testid="dry-run-ok">${checked}</div>`}</div>`;
}

export function PolicyPage({ id, tab }) {
  const session = useSession();
  const { data: p, error, loading, reload } = useApi("/v1/admin/policies/" + enc(id));
  if (error) return html`<${NotFound} err=${error} back="#/policies" label="the policy registry" />`;
  if (loading && !p) return html`<${Loading} what=${id} />`;
  const config = p.source === "config";
  const trainable = !config && !!p.trainable;
  const editable = mayEdit(session, p);
  const tabs = config ? [["definition", "Definition"], ["applied", "Applied to"]]
    : [["definition", "Definition"], ...(trainable ? [["data", "Training data"], ["training", "Training and versions"]] : [["training", "Versions"]]),
       ["threshold", "Threshold"], ["applied", "Applied to"], ["feedback", "Feedback"]];
  const base = "#/policies/" + enc(id);
  const props = { p, reload, editable, trainable, session };
  return html`<div>
    <h1>${p.id} <span class="badge">${p.type}</span> ${config ? html`<${ConfigBadge} />` : html`<span class="badge">owner ${p.owner}</span> <span class="badge" data-testid="version">v${p.version}</span>`}</h1>
    ${p.rule && html`<p>${p.rule}</p>`}
    <${Tabs} tabs=${tabs} active=${tab} base=${base} />
    ${tab === "definition" && html`<${Definition} ...${props} />`}
    ${tab === "data" && trainable && html`<${TrainingData} ...${props} />`}
    ${tab === "training" && !config && html`<${Training} ...${props} />`}
    ${tab === "threshold" && !config && html`<${Threshold} ...${props} />`}
    ${tab === "applied" && html`<${AppliedTo} ...${props} />`}
    ${tab === "feedback" && !config && html`<${Feedback} ...${props} />`}
  </div>`;
}

const HIDDEN = ["id", "object", "source", "version", "updated", "author", "owner", "head", "trained", "training_examples", "training", "needs_training", "trainable", "applied"];

function Definition({ p, reload, editable, trainable }) {
  const [text, setText] = useState(null);
  const [run, busy, err, setErr] = useAction();
  const [changed, setChanged] = useState(false);
  const [note, setNote] = useState("");
  const [checked, setChecked] = useState(null);
  const editBody = Object.fromEntries(Object.entries(p).filter(([k]) => !HIDDEN.includes(k)));
  const [rule, setRule] = useState(p.rule || "");
  const [allowed, setAllowed] = useState((p.allowed_behaviors || []).join("\n"));
  const [disallowed, setDisallowed] = useState((p.disallowed_behaviors || []).join("\n"));
  // G19: every save names the version it was based on; G11: with the note; G16: Check validates only
  const withMeta = (body) => ({ ...body, ...(note ? { note } : {}), expected_version: p.version });
  const save = (body) => run(async () => {
    setChecked(null);
    await api.patch("/v1/admin/policies/" + enc(p.id), withMeta(body));
    setChanged(true); setText(null); setNote(""); reload();
  });
  const check = (body) => run(async () => {
    setChecked(null);
    const r = await api.patch("/v1/admin/policies/" + enc(p.id) + "?dry_run=true", withMeta(body));
    setChecked(`Valid: saving would make version ${r.version}. Nothing was saved.`);
  });
  const onReload = () => { setErr(null); reload(); };
  const formBody = { ...editBody, rule, allowed_behaviors: lines(allowed), disallowed_behaviors: lines(disallowed) };
  return html`<div>
    ${changed && trainable && html`<div class="banner warn" role="status">Definition changed: regenerate training data and retrain.
      <a href=${"#/policies/" + enc(p.id) + "/data"}>Training data</a> · <a href=${"#/policies/" + enc(p.id) + "/training"}>Train</a></div>`}
    ${changed && !trainable && html`<div class="banner info" role="status">Saved as version ${p.version}.</div>`}
    ${editable ? html`<div>
      <${TextArea} label="Rule" name="rule" value=${rule} onInput=${setRule} err=${err} />
      <${TextArea} label="Disallowed behaviours (one per line)" name="disallowed_behaviors" value=${disallowed} onInput=${setDisallowed} err=${err} />
      <${TextArea} label="Allowed behaviours (one per line)" name="allowed_behaviors" value=${allowed} onInput=${setAllowed} err=${err} />
      <${TextInput} label="Version note" name="note" value=${note} onInput=${setNote} err=${err} hint="optional: why (shown in the versions list)" />
      <div class="row"><button onClick=${() => save(formBody)} disabled=${busy}>Save definition</button>
        <button class="secondary" onClick=${() => check(formBody)} disabled=${busy}>Check without saving</button></div>
      ${checked && html`<div class="banner info" role="status" data-testid="dry-run-ok">${checked}</div>`}
      <${ErrorBanner} err=${err} fields=${["rule", "allowed_behaviors", "disallowed_behaviors", "note"]} onReload=${onReload} />
      <${ShowApi} method="PATCH" path=${"/v1/admin/policies/" + enc(p.id)} body=${withMeta(formBody)} />
      <h2>Raw JSON</h2>
      <${Field} label="Policy JSON (without id, owner and trained weights)" name="raw" err=${null}>
        <br/><textarea name="raw-json" rows="12" value=${text ?? JSON.stringify(editBody, null, 2)} onInput=${(e) => setText(e.target.value)}></textarea></${Field}>
      <div class="row"><button class="secondary" disabled=${busy} onClick=${() => {
        let body; try { body = JSON.parse(text ?? JSON.stringify(editBody)); } catch (e) { alert("Not valid JSON: " + e.message); return; }
        save(body);
      }}>Save JSON</button></div>
    </div>` : html`<div><p class="muted">${p.source === "config" ? "Read-only: defined in the config file; change it there." : "Read-only: owned by " + p.owner + "."}</p>
      <pre data-testid="policy-json">${JSON.stringify(editBody, null, 2)}</pre></div>`}
  </div>`;
}

function parseUpload(name, text) {
  const rows = [];
  const all = text.split(/\r?\n/);
  all.forEach((line, i) => {
    if (!line.trim()) return;
    if (name.toLowerCase().endsWith(".csv")) {
      const cut = line.lastIndexOf(",");
      rows.push({ example: line.slice(0, cut).replace(/^"|"$/g, ""), compliance: line.slice(cut + 1).trim(), line: i + 1 });
    } else {
      let o; try { o = JSON.parse(line); } catch (e) { throw new Error(`line ${i + 1}: not JSON (${e.message})`); }
      rows.push({ example: o.example, compliance: o.compliance, line: i + 1 });
    }
  });
  return rows;
}

const PAGE = 100;
const SOURCES = ["manual", "synthetic", "feedback"];

function TrainingData({ p, editable }) {
  const path = "/v1/admin/policies/" + enc(p.id) + "/data";
  // G9: one page of PAGE rows at a time (after = the last id of the previous page), filtered by source and label
  const [filter, setFilter] = useState({ source: "", label: "" });
  const [pages, setPages] = useState([0]);
  const after = pages[pages.length - 1];
  const qs = new URLSearchParams({ limit: String(PAGE) });
  if (after) qs.set("after", String(after));
  if (filter.source) qs.set("source", filter.source);
  if (filter.label) qs.set("label", filter.label);
  const { data, error, reload } = useApi(path + "?" + qs.toString());
  const [editing, setEditing] = useState(null);  // {id, example, compliance} of the row being edited
  const refilter = (f) => { setFilter(f); setPages([0]); };
  const [example, setExample] = useState("");
  const [label, setLabel] = useState("FAIL");
  const [run, busy, err, setErr] = useAction();
  const [note, setNote] = useState(null);
  const [gen, setGen] = useState({ count: "20", model: "" });
  const add = () => run(async () => {
    const r = await api.post(path, { data: [{ example, compliance: label }] });
    setExample(""); setNote(`Added 1 row (${r.total} in all).`); reload();
  });
  const upload = (ev) => {
    const file = ev.target.files[0];
    if (!file) return;
    run(async () => {
      const rows = parseUpload(file.name, await file.text());
      let total = 0;
      for (let i = 0; i < rows.length; i += 500) {
        const batch = rows.slice(i, i + 500);
        try {
          const r = await api.post(path, { data: batch.map(({ example, compliance }) => ({ example, compliance })) });
          total = r.total;
        } catch (e) {
          const m = /^data\[(\d+)\]/.exec(e.param || "");
          if (m) e.message = `${file.name} line ${batch[Number(m[1])].line}: ${e.message}`;
          e.param = "upload";
          throw e;
        }
      }
      setNote(`Uploaded ${rows.length} rows from ${file.name} (${total} in all).`); reload();
      ev.target.value = "";
    });
  };
  const generate = () => run(async () => {
    const body = { count: Number(gen.count) };
    if (gen.model) body.model = gen.model;
    const r = await api.post("/v1/admin/policies/" + enc(p.id) + "/generate", body);
    setNote(`Added ${r.added} synthetic rows.`); reload();
  });
  const saveRow = () => run(async () => {
    const r = await api.patch(path + "/" + editing.id, { example: editing.example, compliance: editing.compliance });
    setEditing(null); setNote(`Row ${r.id} saved.`); reload();
  });
  const deleteRow = (row) => run(async () => {
    await api.del(path + "/" + row.id);
    setNote(`Row ${row.id} deleted.`); reload();
  });
  const deleteSource = (source) => run(async () => {
    if (!confirm(`Delete every ${source} training row of ${p.id}?`)) return;
    const r = await api.del(path + "?source=" + enc(source));
    setNote(`Deleted ${r.deleted} ${source} rows (${r.total} left).`); setPages([0]); reload();
  });
  if (error) return html`<${ErrorBanner} err=${error} />`;
  const rows = data ? data.data : [];
  const c = (data && data.counts) || { rows: 0, FAIL: 0, PASS: 0, manual: 0, synthetic: 0, feedback: 0 };
  const fields = ["example", "compliance", "row", "source"];
  return html`<div>
    <p data-testid="data-counts">${`${c.rows} rows: ${c.FAIL} FAIL, ${c.PASS} PASS; ` + SOURCES.map((s) => `${c[s]} ${s}`).join(", ")}</p>
    ${note && html`<div class="banner info" role="status">${note}</div>`}
    ${editable && html`<div class="card"><h2>Add Data</h2>
      <${TextArea} label="Example" name="data[0].example" value=${example} onInput=${setExample} err=${err} />
      <${Select} label="Compliance" name="data[0].compliance" value=${label} onChange=${setLabel} options=${["FAIL", "PASS"]} err=${err} />
      <div class="row"><button onClick=${add} disabled=${busy}>Add example</button></div>
      <${Field} label="Upload file" name="upload" err=${err} hint="JSONL lines of {example, compliance}, or a two-column CSV">
        <br/><input type="file" name="upload" accept=".jsonl,.json,.csv,.txt" onChange=${upload} /></${Field}>
      <h2>Generate synthetic data</h2>
      <div class="row"><${TextInput} type="number" label="Count" name="count" value=${gen.count} onInput=${(v) => setGen({ ...gen, count: v })} err=${err} />
        <${TextInput} label="Generator model" name="model" value=${gen.model} onInput=${(v) => setGen({ ...gen, model: v })} err=${err} hint="default: guard.generator_model" />
        <button class="secondary" onClick=${generate} disabled=${busy}>${busy ? "Working…" : "Generate"}</button></div>
      <${ErrorBanner} err=${editing ? null : err} fields=${["data", "upload", "count", "model"]} />
    </div>`}
    <div class="row">
      <${Select} label="Source" name="filter-source" value=${filter.source} onChange=${(v) => refilter({ ...filter, source: v })}
        options=${[{ value: "", label: "all" }, ...SOURCES]} />
      <${Select} label="Label" name="filter-label" value=${filter.label} onChange=${(v) => refilter({ ...filter, label: v })}
        options=${[{ value: "", label: "all" }, "FAIL", "PASS"]} />
      ${editable && SOURCES.filter((s) => c[s] > 0).map((s) => html`<button class="danger" onClick=${() => deleteSource(s)} disabled=${busy}>Delete all ${s}</button>`)}
    </div>
    ${editing && html`<${ErrorBanner} err=${err} fields=${fields} />`}
    ${c.rows === 0 ? html`<div class="banner info">Add examples, upload a file, or generate synthetic data from the definition; training needs at least one FAIL example.</div>`
      : html`<table aria-label="training data"><thead><tr><th>id</th><th>example</th><th>compliance</th><th>source</th><th>added</th><th></th></tr></thead>
        <tbody>${rows.map((r) => editing && editing.id === r.id ? html`<tr data-row=${r.id}><td>${r.id}</td>
            <td><${TextArea} label="Edit example" name="example" value=${editing.example} onInput=${(v) => setEditing({ ...editing, example: v })} err=${err} /></td>
            <td><${Select} label="Edit compliance" name="compliance" value=${editing.compliance} onChange=${(v) => setEditing({ ...editing, compliance: v })} options=${["FAIL", "PASS"]} err=${err} /></td>
            <td>${r.source}</td><td></td>
            <td><button onClick=${saveRow} disabled=${busy}>Save row</button> <button class="secondary" onClick=${() => { setEditing(null); setErr(null); }}>Cancel</button></td></tr>`
          : html`<tr data-row=${r.id}><td>${r.id}</td><td>${r.example}</td><td>${r.compliance}</td><td>${r.source}</td>
            <td class="muted">${r.author || ""} ${fmtTime(r.created)}</td>
            <td>${editable && html`<button class="secondary" aria-label=${"Edit row " + r.id} onClick=${() => { setErr(null); setEditing({ id: r.id, example: r.example, compliance: r.compliance }); }}>Edit</button>
              <button class="danger" aria-label=${"Delete row " + r.id} onClick=${() => deleteRow(r)} disabled=${busy}>Delete</button>`}</td></tr>`)}</tbody></table>
        <div class="row">${pages.length > 1 && html`<button class="secondary" onClick=${() => setPages(pages.slice(0, -1))}>Previous page</button>`}
          ${data && data.has_more && html`<button class="secondary" onClick=${() => setPages([...pages, data.last_id])}>Next page</button>`}</div>`}
  </div>`;
}

const STATE_LABEL = { training_queued: "Training queued", training: "Training", ready: "Ready", failed: "Failed" };

function Training({ p, reload, editable, trainable }) {
  const base = "/v1/admin/policies/" + enc(p.id);
  const [job, setJob] = useState(null);
  const [polling, setPolling] = useState(false);
  const [run, busy, err] = useAction();
  const versions = useApi(base + "/versions", [p.version]);
  const [pick, setPick] = useState([]);
  const [note, setNote] = useState("");
  useEffect(() => {
    if (!trainable) return;
    api.get(base + "/train").then((j) => { setJob(j); if (j.status === "training" || j.status === "training_queued") setPolling(true); }, () => {});
  }, [p.id]);
  useEffect(() => {
    if (!polling) return;
    let live = true, delay = 1000, timer;
    const tick = async () => {
      if (document.visibilityState === "visible") {
        try {
          const j = await api.get(base + "/train");
          if (!live) return;
          setJob(j);
          if (j.status === "ready" || j.status === "failed") { setPolling(false); reload(); return; }
        } catch (e) { /* keep polling */ }
      }
      delay = Math.min(5000, delay * 1.5);
      timer = setTimeout(tick, delay);
    };
    timer = setTimeout(tick, 500);
    return () => { live = false; clearTimeout(timer); };
  }, [polling]);
  const train = () => run(async () => {
    try { setJob(await api.post(base + "/train", note ? { note } : {})); setNote(""); } catch (e) {
      if (e.code !== "training_in_progress") throw e;  // attach to the running job
    }
    setPolling(true);
  });
  const revert = (v) => run(async () => {
    if (!confirm(`Make version ${v} current again? This creates a new version.`)) return;
    await api.post(base + "/revert", { version: v, expected_version: p.version, ...(note ? { note } : {}) }); setNote(""); reload();
  });
  const m = (job && job.metrics) || {};
  const vs = versions.data ? versions.data.data.slice().reverse() : [];
  const strip = (v) => { const o = { ...v }; for (const k of ["head", "updated", "author", "note", "current", "version"]) delete o[k]; return o; };
  const picked = vs.filter((v) => pick.includes(v.version));
  return html`<div>
    ${trainable && html`<div class="card"><h2>Training</h2>
      <p>State: <strong data-testid="training-state">${job ? STATE_LABEL[job.status] + (job.status === "ready" ? ` (version ${job.version})` : "") : "Not trained yet"}</strong></p>
      ${!job && html`<p class="muted">Not trained yet: the policy currently scores with a head trained at load time from its definition and examples.</p>`}
      ${job && job.status === "failed" && html`<div class="banner error" role="alert">${job.error}</div>`}
      ${job && job.status === "ready" && html`<p data-testid="training-metrics">rows ${m.n ?? m.rows ?? ""} · held-out F1 ${m.cv_f1 ?? "–"} · AUC ${m.cv_auc ?? "–"} · threshold ${m.threshold ?? "–"} · ${m.train_seconds ?? "–"} s</p>`}
      ${editable && html`<button onClick=${train} disabled=${busy || polling}>Train policy</button>`}
      <${ShowApi} method="POST" path=${base + "/train"} body=${note ? { note } : undefined} />
    </div>`}
    ${editable && html`<${TextInput} label="Note for the next version (train or revert)" name="note" value=${note} onInput=${setNote} err=${err} />`}
    <${ErrorBanner} err=${err} fields=${["note"]} onReload=${reload} />
    <h2>Versions</h2>
    <table aria-label="versions"><thead><tr><th>compare</th><th>version</th><th>time</th><th>author</th><th>note</th><th>trained</th><th></th></tr></thead>
    <tbody>${vs.map((v) => html`<tr data-version=${v.version}>
      <td><input type="checkbox" aria-label=${"compare version " + v.version} checked=${pick.includes(v.version)}
        onChange=${(e) => setPick(e.target.checked ? [...pick, v.version].slice(-2) : pick.filter((x) => x !== v.version))} /></td>
      <td>v${v.version} ${v.current && html`<${Badge} kind="ready">current</${Badge}>`}</td><td>${fmtTime(v.updated)}</td><td>${v.author}</td><td>${v.note}</td>
      <td>${v.head ? `F1 ${v.head.meta?.cv_f1 ?? "–"} AUC ${v.head.meta?.cv_auc ?? "–"}` : v.trained ? "examples" : ""}</td>
      <td>${editable && !v.current && html`<button class="secondary" onClick=${() => revert(v.version)}>Revert to v${v.version}</button>`}</td></tr>`)}</tbody></table>
    ${picked.length === 2 && html`<div class="row" data-testid="diff">${picked.map((v) => html`<div style="flex:1"><h2>v${v.version}</h2><pre>${JSON.stringify(strip(v), null, 2)}</pre></div>`)}</div>`}
  </div>`;
}

// G8: the held-out curve stored at training (precision, recall, false-positive rate at ~50 thresholds),
// drawn as SVG elements (no HTML strings), with the figures at the threshold being set.
function Curve({ curve, value, cal }) {
  const W = 360, H = 160, X = (t) => 30 + t * (W - 40), Y = (v) => H - 20 - v * (H - 30);
  const line = (key) => curve.map((c) => `${X(c.threshold).toFixed(1)},${Y(c[key]).toFixed(1)}`).join(" ");
  const t = Number(value) || Number(cal) || 0.5;
  const at = curve.reduce((best, c) => Math.abs(c.threshold - t) < Math.abs(best.threshold - t) ? c : best, curve[0]);
  const series = [["precision", "#1f6feb"], ["recall", "#2da44e"], ["fpr", "#cf222e"]];
  return html`<figure data-testid="threshold-curve">
    <svg viewBox=${`0 0 ${W} ${H}`} width=${W} height=${H} role="img" aria-label="held-out precision, recall and false-positive rate by threshold">
      <line x1=${X(0)} y1=${Y(0)} x2=${X(1)} y2=${Y(0)} stroke="#888" />
      <line x1=${X(0)} y1=${Y(0)} x2=${X(0)} y2=${Y(1)} stroke="#888" />
      <text x=${X(0)} y=${H - 4} font-size="10">0</text><text x=${X(1) - 6} y=${H - 4} font-size="10">1</text>
      <text x="2" y=${Y(1) + 4} font-size="10">1</text>
      ${series.map(([k, color]) => html`<polyline data-series=${k} fill="none" stroke=${color} stroke-width="2" points=${line(k)} />`)}
      ${cal !== undefined && cal !== null && html`<line x1=${X(cal)} y1=${Y(0)} x2=${X(cal)} y2=${Y(1)} stroke="#999" stroke-dasharray="3 3" />`}
      <line data-testid="curve-cursor" x1=${X(t)} y1=${Y(0)} x2=${X(t)} y2=${Y(1)} stroke="#000" />
    </svg>
    <figcaption>${series.map(([k, color]) => html`<span class="badge" style=${{ color }}>${k}</span> `)}
      <span data-testid="curve-at">At ${at.threshold.toFixed(2)}: precision ${at.precision}, recall ${at.recall}, false-positive rate ${at.fpr}, F1 ${at.f1} (held-out)</span></figcaption>
  </figure>`;
}

function Threshold({ p, reload, editable }) {
  const [value, setValue] = useState(String(p.threshold ?? 0.5));
  const [note, setNote] = useState("");
  const [run, busy, err, setErr] = useAction();
  const [saved, setSaved] = useState(null);
  const path = "/v1/moderation/policy/" + enc(p.id) + "/update-threshold";
  const flipped = ["relevance", "consistency", "factual"].includes(p.type);
  const cal = p.head && p.head.threshold;
  const meta = (p.head && p.head.meta) || {};
  const save = () => run(async () => {
    const r = await api.put(path, { classification_threshold: value === "" ? null : Number(value), expected_version: p.version, ...(note ? { note } : {}) });
    setSaved(r.version); setNote(""); reload();
  });
  const curve = meta.curve;
  return html`<div>
    <p>${flipped ? "Violated when the compliance score is below the threshold." : "Violated when the risk score is above the threshold; lower = stricter."}</p>
    ${cal !== undefined && cal !== null && html`<p data-testid="calibrated">Calibrated threshold ${Number(cal).toFixed(3)} · F1 ${meta.cv_f1 ?? "–"}, AUC ${meta.cv_auc ?? "–"} (5-fold held-out, at the calibrated threshold${meta.n ? ", " + meta.n + " examples" : ""})</p>`}
    ${Array.isArray(curve) && curve.length > 0 ? html`<${Curve} curve=${curve} value=${value} cal=${cal} />`
      : p.type === "classifier" && html`<p class="muted" data-testid="no-curve">No held-out curve: train the policy (with at least 5 FAIL and 5 PASS examples) to see precision and recall by threshold.</p>`}
    ${editable ? html`<div>
      <label>Threshold slider <input type="range" min="0" max="1" step="0.01" value=${value} onInput=${(e) => setValue(e.target.value)} /></label>
      <${TextInput} label="classification_threshold" name="classification_threshold" value=${value} onInput=${setValue} err=${err} hint="0 = use the calibrated threshold" />
      <label><input type="checkbox" checked=${Number(value) === 0} onChange=${(e) => setValue(e.target.checked ? "0" : "0.5")} /> use the calibrated threshold (0)</label>
      <${TextInput} label="Version note" name="note" value=${note} onInput=${setNote} err=${err} />
      <div class="row"><button onClick=${save} disabled=${busy}>Save threshold</button></div>
      ${saved && html`<div class="banner info" role="status">Saved as version ${saved}.</div>`}
      <${ErrorBanner} err=${err} fields=${["classification_threshold", "note"]} onReload=${() => { setErr(null); reload(); }} />
      <${ShowApi} method="PUT" path=${path} body=${{ classification_threshold: Number(value), expected_version: p.version }} />
    </div>` : html`<p>Threshold: ${p.threshold}</p>`}
  </div>`;
}

function AppliedTo({ p, editable, session }) {
  const base = "/v1/admin/policies/" + enc(p.id) + "/apply";
  const { data, reload } = useApi(base);
  const stages = useApi("/v1/admin/stages");
  const apps = useApi(session.central ? "/v1/admin/applications" : null);
  const [form, setForm] = useState({ application: session.central ? "" : session.application, models: "", on: "input", action: "block" });
  const [run, busy, err] = useAction();
  const body = () => {
    const b = { on: form.on, action: { type: form.action } };
    if (form.application) b.application = form.application;
    if (lines(form.models.replace(/,/g, "\n")).length) b.models = lines(form.models.replace(/,/g, "\n"));
    return b;
  };
  const apply = () => run(async () => { await api.post(base, body()); reload(); });
  const remove = (row) => run(async () => {
    const b = { on: row.on }; if (row.application) b.application = row.application; else b.models = row.models;
    await api.del(base, b); reload();
  });
  const rows = data ? data.data : [];
  const others = stages.data ? stages.data.data.filter((s) => !s.id.startsWith("apply-" + p.id + "-") &&
    (s.rulesets || []).some((rs) => (rs.rules || []).some((r) => r.metric === p.id))) : [];
  const mayApply = p.source === "config" ? session.central || true : true;
  return html`<div>
    ${rows.length === 0 && others.length === 0 && html`<div class="banner info">Not applied: this policy evaluates nothing until it is applied or named in a stage rule.</div>`}
    ${rows.length > 0 && html`<table aria-label="applied"><thead><tr><th>stage</th><th>application</th><th>models</th><th>on</th><th>paused</th><th></th></tr></thead>
      <tbody>${rows.map((r) => html`<tr><td><a href=${"#/stages/" + enc(r.stage)}>${r.stage}</a></td><td>${r.application || "every application"}</td>
        <td>${r.models ? r.models.join(", ") : "all models"}</td><td>${r.on}</td><td>${r.paused ? "paused" : ""}</td>
        <td>${(session.central || r.application === session.application) && html`<button class="secondary" onClick=${() => remove(r)}>Remove</button>`}</td></tr>`)}</tbody></table>`}
    ${others.length > 0 && html`<p>Also named in stages: ${others.map((s) => html`<a href=${"#/stages/" + enc(s.id)}>${s.id}</a> `)}</p>`}
    ${mayApply && html`<div class="card"><h2>Apply policy</h2>
      ${p.training === null && ["classifier"].includes(p.type) && html`<div class="banner warn">Never trained: it scores with a head trained at load time.</div>`}
      ${session.central ? html`<${Select} label="Application" name="application" value=${form.application} onChange=${(v) => setForm({ ...form, application: v })} err=${err}
          options=${[{ value: "", label: "every application (needs models)" }, ...((apps.data && apps.data.data) || []).map((a) => a.id)]} />`
        : html`<p>Application: ${session.application}</p>`}
      <${TextInput} label="Models (comma separated; empty = all models)" name="models" value=${form.models} onInput=${(v) => setForm({ ...form, models: v })} err=${err} hint="the request's model string, before routing" />
      <${Select} label="On" name="on" value=${form.on} onChange=${(v) => setForm({ ...form, on: v })} options=${["input", "output"]} err=${err} />
      <${Select} label="Action" name="action" value=${form.action} onChange=${(v) => setForm({ ...form, action: v })} options=${["block", "redact", "passthrough", "handoff"]} err=${err} />
      <div class="row"><button onClick=${apply} disabled=${busy}>Apply</button></div>
      <${ErrorBanner} err=${err} fields=${["application", "models", "on", "action"]} />
      <${ShowApi} method="POST" path=${base} body=${body()} /></div>`}
  </div>`;
}

function Feedback({ p, editable, session }) {
  const base = "/v1/admin/policies/" + enc(p.id);
  const { data, reload } = useApi(base + "/feedback");
  const [run, busy, err] = useAction();
  const [done, setDone] = useState(null);
  const [note, setNote] = useState("");
  const items = data ? data.data : [];
  const unapplied = items.filter((f) => !f.applied).length;
  const applyAll = () => run(async () => { setDone(await api.post(base + "/apply-feedback")); reload(); });
  // G13: the policy's owner deletes any item; anyone the items they gave, until applied
  const me = session.central ? "central" : "app:" + session.application;
  const mayDelete = (f) => editable || (!f.applied && f.author === me);
  const remove = (f) => run(async () => {
    if (!confirm(`Delete feedback ${f.id} (${f.label})?` + (f.applied ? " Its training row is deleted too." : ""))) return;
    const r = await api.del("/v1/admin/feedback/" + f.id);
    setNote(`Feedback ${r.id} deleted` + (r.training_row_deleted ? `, with training row ${r.training_row_deleted}.` : "."));
    reload();
  });
  return html`<div>
    <p data-testid="feedback-counts">${items.length} feedback items, ${unapplied} not applied.</p>
    ${items.length === 0 && html`<div class="banner info">No feedback yet: mark logged decisions as PASS/FAIL in <a href="#/monitoring">Monitoring</a>.</div>`}
    ${editable && unapplied > 0 && html`<button onClick=${applyAll} disabled=${busy}>Apply feedback to training data</button>`}
    ${done && html`<div class="banner info" role="status">Applied ${done.applied} items (${done.total_examples} training rows). Feedback rows count three times in training.
      <a href=${"#/policies/" + enc(p.id) + "/training"}>Retrain now</a></div>`}
    ${note && html`<div class="banner info" role="status">${note}</div>`}
    <${ErrorBanner} err=${err} />
    ${items.length > 0 && html`<table aria-label="feedback"><thead><tr><th>id</th><th>record</th><th>label</th><th>text (redacted)</th><th>applied</th><th>given</th><th></th></tr></thead>
      <tbody>${items.map((f) => html`<tr data-feedback-item=${f.id}><td>${f.id}</td>
        <td>${f.record_id ? `${f.record_id} (${f.on})` : ""}</td><td>${f.label}</td><td>${f.text}</td>
        <td>${f.applied ? `yes (row ${f.training_row || "?"})` : "no"}</td><td class="muted">${f.author || ""} ${fmtTime(f.created)}</td>
        <td>${mayDelete(f) && html`<button class="secondary" aria-label=${"Delete feedback " + f.id} onClick=${() => remove(f)} disabled=${busy}>Delete</button>`}</td></tr>`)}</tbody></table>`}
  </div>`;
}
