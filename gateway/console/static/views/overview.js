// V1 overview, sampled in the browser from the monitoring log (no stats endpoint yet: gap G14).
import { html, useState, useEffect, useApi, Loading, ErrorBanner } from "../ui.js";
import { enc } from "../api.js";

const WINDOWS = [["15 min", 900], ["1 h", 3600], ["24 h", 86400]];
const ACTED = new Set(["block", "override", "redact", "correct", "handoff"]);

export function Overview() {
  const [win, setWin] = useState(3600);
  const [since, setSince] = useState(() => Math.floor(Date.now() / 1000) - 3600);
  useEffect(() => {
    setSince(Math.floor(Date.now() / 1000) - win);
    const t = setInterval(() => { if (document.visibilityState === "visible") setSince(Math.floor(Date.now() / 1000) - win); }, 30000);
    return () => clearInterval(t);
  }, [win]);
  const { data, error } = useApi(`/v1/monitoring?since=${since}&limit=1000`);
  if (error) return html`<${ErrorBanner} err=${error} />`;
  if (!data) return html`<${Loading} what="overview" />`;
  const rows = data.data;
  const acted = rows.filter((r) => ACTED.has(r.action)).length;
  const monitored = rows.filter((r) => (r.stages || []).some((s) => s.mode === "monitor" && (s.triggered || []).length)).length;
  const errors = rows.filter((r) => (r.stages || []).some((s) => (s.errors || []).length)).length;
  const top = {};
  for (const r of rows) if (r.ruleset) top[`${r.stage} / ${r.ruleset}`] = (top[`${r.stage} / ${r.ruleset}`] || 0) + 1;
  const card = (label, n, href) => html`<a class="card" href=${href} style="text-decoration:none;color:inherit"><div class="muted">${label}</div><div class="big">${n}</div></a>`;
  return html`<div><h1>Overview</h1>
    <div class="row">Window: ${WINDOWS.map(([l, s]) => html`<button class=${win === s ? "" : "secondary"} onClick=${() => setWin(s)}>${l}</button>`)}</div>
    <p class="muted">Sampled from the last ${rows.length} guarded request records in this window.</p>
    ${rows.length === 0 ? html`<div class="banner info">No guarded traffic in this window. Send a request through the proxy or try the <a href="#/playground">Playground</a>.</div>` : html`
    <div class="cards" data-testid="cards">
      ${card("guarded records", rows.length, "#/monitoring")}
      ${card("acted on", acted, "#/monitoring?action=block")}
      ${card("would have acted (monitor)", monitored, "#/monitoring")}
      ${card("metric errors", errors, "#/monitoring")}
    </div>
    <h2>Top triggered rulesets</h2>
    <table aria-label="top rulesets"><thead><tr><th>stage / ruleset</th><th>count</th></tr></thead><tbody>
      ${Object.entries(top).sort((a, b) => b[1] - a[1]).slice(0, 10).map(([k, n]) => html`<tr><td><a href=${"#/stages/" + enc(k.split(" / ")[0])}>${k}</a></td><td>${n}</td></tr>`)}</tbody></table>`}
  </div>`;
}
