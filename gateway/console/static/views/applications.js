// V7 applications and keys (central tokens only): list, create (the first key shown once), new key,
// each key by id (created, limits) revoked alone (G17) or all but the newest n, the effective plan.
import { html, useState, useApi, useAction, TextInput, ErrorBanner, ConfigBadge, ShowApi, Loading, NotFound, fmtTime } from "../ui.js";
import { api, enc } from "../api.js";

function KeyOnce({ k, onClose }) {
  return html`<div class="card" role="dialog" aria-label="new key">
    <h2>New application key</h2>
    <p>Stored only as its SHA-256; it cannot be shown again. Copy it now.</p>
    <pre data-testid="new-key">${k}</pre>
    <div class="row"><button class="secondary" onClick=${() => navigator.clipboard && navigator.clipboard.writeText(k).catch(() => {})}>Copy</button>
      <button onClick=${onClose}>Done</button></div></div>`;
}

export function ApplicationList() {
  const { data, error, loading, reload } = useApi("/v1/admin/applications");
  const [form, setForm] = useState({ id: "", stages: "" });
  const [run, busy, err] = useAction();
  const [key, setKey] = useState(null);
  if (error) return html`<${NotFound} err=${error} />`;
  if (loading && !data) return html`<${Loading} what="applications" />`;
  const body = { id: form.id, stages: form.stages.split(",").map((x) => x.trim()).filter(Boolean) };
  const create = () => run(async () => { const r = await api.post("/v1/admin/applications", body); setKey(r.key); setForm({ id: "", stages: "" }); reload(); });
  return html`<div><h1>Applications</h1>
    ${key && html`<${KeyOnce} k=${key} onClose=${() => setKey(null)} />`}
    ${data.data.every((a) => a.source === "config") && html`<div class="banner info">Applications from the config file are listed read-only; create one to get a key.</div>`}
    <table aria-label="applications"><thead><tr><th>id</th><th>source</th><th>stages</th><th>allow request stages</th><th>keys</th></tr></thead>
    <tbody>${data.data.map((a) => html`<tr data-application=${a.id}><td><a href=${"#/applications/" + enc(a.id)}>${a.id}</a></td>
      <td>${a.source === "config" ? html`<${ConfigBadge} />` : "store"}</td><td>${(a.stages || []).join(", ")}</td>
      <td>${a.allow_request_stages === false ? "no" : "yes"}</td><td>${a.keys}</td></tr>`)}</tbody></table>
    <div class="card"><h2>New application</h2>
      <${TextInput} label="Application id" name="id" value=${form.id} onInput=${(v) => setForm({ ...form, id: v })} err=${err} />
      <${TextInput} label="Stages (comma separated)" name="stages" value=${form.stages} onInput=${(v) => setForm({ ...form, stages: v })} err=${err} />
      <button onClick=${create} disabled=${busy}>Create application</button>
      <${ErrorBanner} err=${err} fields=${["id", "stages", "allow_request_stages"]} />
      <${ShowApi} method="POST" path="/v1/admin/applications" body=${body} /></div>
  </div>`;
}

export function ApplicationPage({ id }) {
  const list = useApi("/v1/admin/applications");
  const [model, setModel] = useState("gpt-4o");
  const [planFor, setPlanFor] = useState(null);
  const plan = useApi(planFor ? `/v1/admin/models/${enc(planFor)}/policies?application=${enc(id)}` : null);
  const [run, busy, err] = useAction();
  const [key, setKey] = useState(null);
  const [keep, setKeep] = useState("1");
  if (list.loading && !list.data) return html`<${Loading} what=${id} />`;
  if (list.error) return html`<${NotFound} err=${list.error} />`;
  const a = list.data.data.find((x) => x.id === id);
  if (!a) return html`<${NotFound} err=${{ status: 404, message: `No application '${id}'.` }} back="#/applications" label="applications" />`;
  const stored = a.source !== "config";
  const newKey = () => run(async () => { const r = await api.post(`/v1/admin/applications/${enc(id)}/keys`); setKey(r.key); list.reload(); });
  const revoke = () => run(async () => {
    if (!confirm(`Revoke every key of ${id} but the newest ${keep}?`)) return;
    await api.del(`/v1/admin/applications/${enc(id)}/keys`, { keep: Number(keep) }); list.reload();
  });
  const revokeOne = (k) => run(async () => {
    if (!confirm(`Revoke key ${k.id} of ${id}? Clients using it get 401 at once.`)) return;
    await api.del(`/v1/admin/applications/${enc(id)}/keys/${enc(k.id)}`); list.reload();
  });
  const limitsOf = (k) => [k.models && k.models.length ? `models ${k.models.join(", ")}` : "", k.rpm ? `${k.rpm} rpm` : "",
    k.tpm ? `${k.tpm} tpm` : "", k.expires_at ? `expires ${typeof k.expires_at === "number" ? fmtTime(k.expires_at) : new Date(k.expires_at).toLocaleString()}` : ""].filter(Boolean).join("; ");
  return html`<div><h1>${id} ${!stored && html`<${ConfigBadge} />`}</h1>
    ${key && html`<${KeyOnce} k=${key} onClose=${() => setKey(null)} />`}
    <p>Stages: ${(a.stages || []).join(", ") || "none of its own"} (central stages always run first). Keys: <span data-testid="key-count">${a.keys}</span>.
      <a href=${"#/monitoring?application=" + enc(id)}>Its monitoring records</a></p>
    ${stored && html`<div class="card"><h2>Keys</h2><div class="row">
      <button onClick=${newKey} disabled=${busy}>New key</button>
      <${TextInput} type="number" label="Keep newest" name="keep" value=${keep} onInput=${setKeep} err=${err} />
      <button class="danger" onClick=${revoke} disabled=${busy}>Revoke older keys</button></div>
      <table aria-label="keys"><thead><tr><th>key id (SHA-256 prefix)</th><th>created</th><th>its own limits</th><th></th></tr></thead>
        <tbody>${(a.key_list || []).map((k) => html`<tr data-key=${k.id}><td><code>${k.id}</code></td>
          <td>${k.created ? fmtTime(k.created) : "before key times were kept"}</td><td>${limitsOf(k) || "the application's"}</td>
          <td><button class="danger" onClick=${() => revokeOne(k)} disabled=${busy}>Revoke</button></td></tr>`)}</tbody></table>
      <${ErrorBanner} err=${err} fields=${["keep"]} /></div>`}
    <div class="card"><h2>Effective plan</h2>
      <div class="row"><${TextInput} label="Model" name="model" value=${model} onInput=${setModel} err=${plan.error} />
        <button class="secondary" onClick=${() => { setPlanFor(model); plan.reload(); }}>Show plan</button></div>
      <${ErrorBanner} err=${plan.error} fields=${["model"]} />
      ${plan.data && html`<table aria-label="effective plan"><thead><tr><th>on</th><th>stage</th><th>scope</th><th>ruleset</th><th>policy / metric</th></tr></thead>
        <tbody>${plan.data.data.map((r) => html`<tr><td>${r.on}</td><td>${r.stage}</td><td>${r.scope}</td><td>${r.ruleset}</td><td>${r.policy} (${r.source})</td></tr>`)}</tbody></table>`}
    </div></div>`;
}
