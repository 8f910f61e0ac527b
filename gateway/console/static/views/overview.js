// V1 overview from GET /v1/admin/stats (G14): cards over a window, a stacked bar chart of actions over
// time (inline SVG, no chart library), top rulesets (enforced vs monitor), top applications and metrics.
// Recent admin changes from GET /v1/admin/changes (G18). Refreshed every 30 s while the tab is visible.
import { html, useState, useEffect, useApi, useSession, Loading, ErrorBanner, fmtTime } from "../ui.js";
import { enc } from "../api.js";

const WINDOWS = [["15 min", 900, 30], ["1 h", 3600, 120], ["24 h", 86400, 3600]];
// one colour per action, and a text legend beside it: state is never told by colour alone
const COLOURS = { none: "#c9d3e0", passthrough: "#9db4d1", redact: "#e3b341", block: "#d9534f", override: "#a05bd6",
                  correct: "#3a9d6a", handoff: "#4a7fd6", guard_unavailable: "#6b6b6b" };
const ORDER = Object.keys(COLOURS);

function Chart({ series, bucket }) {
  const W = 720, H = 140, pad = 24;
  const max = Math.max(1, ...series.map((b) => Object.values(b.counts).reduce((a, n) => a + n, 0)));
  const bw = (W - pad) / series.length;
  const used = ORDER.filter((k) => series.some((b) => b.counts[k]));
  const label = (t) => new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return html`<figure class="chart"><svg viewBox=${`0 0 ${W} ${H + 18}`} width="100%" role="img" aria-label="actions over time" data-testid="chart">
      <text x="0" y="10" class="axis">${max}</text><text x="0" y=${H} class="axis">0</text>
      ${series.map((b, i) => {
        let y = H;
        return html`<g>${ORDER.filter((k) => b.counts[k]).map((k) => {
          const hgt = (b.counts[k] / max) * (H - 12);
          y -= hgt;
          return html`<rect x=${pad + i * bw + 1} y=${y} width=${Math.max(1, bw - 2)} height=${hgt} fill=${COLOURS[k]}><title>${label(b.start)}: ${b.counts[k]} ${k}</title></rect>`;
        })}</g>`;
      })}
      <text x=${pad} y=${H + 14} class="axis">${series.length ? label(series[0].start) : ""}</text>
      <text x=${W - 40} y=${H + 14} class="axis">${series.length ? label(series[series.length - 1].start + bucket) : ""}</text>
    </svg>
    <figcaption>${used.map((k) => html`<span class="legend"><span class="swatch" style=${"background:" + COLOURS[k]}></span>${k === "none" ? "no action" : k}</span>`)}
      <span class="muted"> · one bar per ${bucket >= 3600 ? bucket / 3600 + " h" : bucket / 60 + " min"}</span></figcaption></figure>`;
}

const PAGES = { policy: "#/policies/", stage: "#/stages/", application: "#/applications/" };

// The last 10 versions written or objects deleted, across policies, stages, applications and pins (an
// application token's own objects only).
function RecentChanges({ now }) {
  const { data, error } = useApi("/v1/admin/changes?limit=10", [now]);
  if (error) return html`<${ErrorBanner} err=${error} />`;
  if (!data) return html`<${Loading} what="recent changes" />`;
  if (!data.data.length) return html`<p class="muted">No changes stored yet.</p>`;
  const name = (c) => PAGES[c.kind] && c.action !== "delete" ? html`<a href=${PAGES[c.kind] + enc(c.id)}>${c.id}</a>` : c.id;
  return html`<table aria-label="recent changes"><thead><tr><th>kind</th><th>id</th><th>version</th><th>author</th><th>time</th><th>note</th></tr></thead><tbody>
    ${data.data.map((c) => html`<tr data-change=${c.seq}><td>${c.kind}</td><td>${name(c)}</td>
      <td>${c.action === "delete" ? `deleted (was v${c.version})` : "v" + c.version}</td><td>${c.author}</td><td>${fmtTime(c.created)}</td><td>${c.note}</td></tr>`)}</tbody></table>`;
}

export function Overview() {
  const session = useSession();
  const [win, setWin] = useState(3600);
  const [now, setNow] = useState(() => Math.floor(Date.now() / 1000));
  useEffect(() => {
    setNow(Math.floor(Date.now() / 1000));
    const t = setInterval(() => { if (document.visibilityState === "visible") setNow(Math.floor(Date.now() / 1000)); }, 30000);
    return () => clearInterval(t);
  }, [win]);
  const bucket = WINDOWS.find((w) => w[1] === win)[2];
  const since = now - win;
  const { data: s, error } = useApi(`/v1/admin/stats?since=${since}&until=${now + 1}&bucket=${bucket}`);
  if (error) return html`<${ErrorBanner} err=${error} />`;
  if (!s) return html`<${Loading} what="overview" />`;
  const card = (label, n, href) => html`<a class="card" href=${href} style="text-decoration:none;color:inherit"><div class="muted">${label}</div><div class="big">${n}</div></a>`;
  const mon = (q) => `#/monitoring?since=${since}${q ? "&" + q : ""}`;
  return html`<div><h1>Overview</h1>
    <div class="row">Window: ${WINDOWS.map(([l, sec]) => html`<button class=${win === sec ? "" : "secondary"} onClick=${() => setWin(sec)}>${l}</button>`)}</div>
    ${s.source === "memory" && html`<div class="banner warn">Policy store unreachable: showing this replica's recent records only.</div>`}
    ${s.truncated && html`<p class="muted">The window holds more records than were read: the figures are those of the newest ${s.records}.</p>`}
    ${s.records === 0 ? html`<div class="banner info">No guarded traffic in this window. Send a request through the proxy or try the <a href="#/playground">Playground</a>.
        <pre>curl ${location.origin}/v1/chat/completions -H "authorization: Bearer $APP_KEY" -H 'content-type: application/json' -d '{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}'</pre></div>` : html`
    <div class="cards" data-testid="cards">
      ${card("guarded records", s.records, mon(""))}
      ${card("acted on", s.acted, mon("action=block"))}
      ${card("would have acted (monitor)", s.would_have_acted, mon(""))}
      ${card("metric errors", s.errors, mon(""))}
      ${card("fail-open passes", s.fail_open, mon(""))}
    </div>
    <h2>Actions over time</h2>
    <${Chart} series=${s.series} bucket=${s.bucket} />
    <div class="row top-lists">
    <div><h2>Top triggered rulesets</h2>
    <table aria-label="top rulesets"><thead><tr><th>stage / ruleset</th><th>action</th><th>mode</th><th>count</th></tr></thead><tbody>
      ${s.top_rulesets.map((r) => html`<tr><td><a href=${"#/stages/" + enc(r.stage)}>${r.stage} / ${r.ruleset}</a></td><td>${r.action}</td>
        <td>${r.mode === "monitor" ? "monitor (would have acted)" : "enforce"}</td><td>${r.count}</td></tr>`)}</tbody></table></div>
    ${session.central && html`<div><h2>Top applications</h2>
    <table aria-label="top applications"><thead><tr><th>application</th><th>records</th><th>acted on</th><th>would have</th></tr></thead><tbody>
      ${s.top_applications.map((a) => html`<tr><td><a href=${mon("application=" + enc(a.application))}>${a.application}</a></td><td>${a.records}</td><td>${a.acted}</td><td>${a.would_have_acted}</td></tr>`)}</tbody></table></div>`}
    <div><h2>Top metrics and policies</h2>
    <table aria-label="top metrics"><thead><tr><th>metric</th><th>measured</th></tr></thead><tbody>
      ${s.top_metrics.map((m) => html`<tr><td>${m.metric}</td><td>${m.count}</td></tr>`)}</tbody></table></div>
    </div>`}
    <h2>Recent changes</h2>
    <${RecentChanges} now=${now} />
  </div>`;
}
