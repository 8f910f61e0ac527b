// The console shell: hash router, session (an HttpOnly cookie from POST /v1/admin/session; GET answers
// the role, DELETE signs out),
// header with nav, role badge and store status, the global store banner, and the login page.
import { render } from "./vendor/preact.module.js";
import { html, useState, useEffect, Session } from "./ui.js";
import { api, onApiEvent } from "./api.js";
import { Overview } from "./views/overview.js";
import { PolicyList, PolicyNew, PolicyPage } from "./views/policies.js";
import { StageList, StagePage } from "./views/stages.js";
import { ApplicationList, ApplicationPage } from "./views/applications.js";
import { Monitoring } from "./views/monitoring.js";
import { Playground } from "./views/playground.js";
import { Reference } from "./views/reference.js";

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  return { path, parts, query: new URLSearchParams(query || "") };
}

function useRoute() {
  const [route, setRoute] = useState(parseHash());
  useEffect(() => {
    const on = () => setRoute(parseHash());
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return route;
}

function Login({ onLogin, message }) {
  const [value, setValue] = useState("");
  const [err, setErr] = useState(message || null);
  const [busy, setBusy] = useState(false);
  const submit = async (ev) => {
    ev.preventDefault();
    setBusy(true); setErr(null);
    try {
      const who = await api.post("/v1/admin/session", { token: value }, { quiet: true });
      setValue("");
      onLogin(who);
    } catch (e) {
      setErr(e.message);
    } finally { setBusy(false); }
  };
  return html`<main class="login"><h1>guardrail-gateway console</h1>
    <form onSubmit=${submit}>
      <div class="field"><label>Admin token<br/><input type="password" name="token" autocomplete="off" value=${value}
        onInput=${(e) => setValue(e.target.value)} /></label>
        <span class="hint">Tokens come from <code>admin.tokens</code> in the gateway config.</span></div>
      ${err && html`<div class="banner error" role="alert">${err}</div>`}
      <button type="submit" disabled=${busy}>Sign in</button>
    </form></main>`;
}

function StoreStatus() {
  const [status, setStatus] = useState("…");
  useEffect(() => {
    let live = true;
    const poll = () => fetch("/readyz", { cache: "no-store" }).then((r) => r.json())
      .then((b) => live && setStatus(b.checks ? b.checks.store : b.status), () => live && setStatus("unreachable"));
    poll();
    const t = setInterval(() => { if (document.visibilityState === "visible") poll(); }, 30000);
    return () => { live = false; clearInterval(t); };
  }, []);
  return html`<span class="badge" title="policy store status from /readyz">store: ${status}</span>`;
}

function Shell({ session, route, onSignOut, storeBanner }) {
  const top = route.parts[0] || "overview";
  const nav = [["overview", "Overview"], ["policies", "Policies"], ["stages", "Stages"],
               ...(session.central ? [["applications", "Applications"]] : []),
               ["monitoring", "Monitoring"], ["playground", "Playground"]];
  return html`<${Session.Provider} value=${session}>
    <header class="top">
      <strong>guardrail-gateway</strong>
      <nav aria-label="main">${nav.map(([id, label]) =>
        html`<a href=${"#/" + id} class=${top === id ? "active" : ""}>${label}</a>`)}</nav>
      <span class="badge" data-testid="role">${session.central ? "central" : "app:" + session.application}</span>
      <${StoreStatus} />
      <a href="#/api" class=${top === "api" ? "active" : ""}>API reference</a>
      <button class="secondary" onClick=${onSignOut}>Sign out</button>
    </header>
    ${storeBanner && html`<div class="banner error" role="alert" data-testid="store-banner">Policy store unreachable: the gateway keeps enforcing its last good plan; changes cannot be saved now. (${storeBanner})</div>`}
    <main>${view(route, session)}</main>
  </${Session.Provider}>`;
}

function view(route, session) {
  const [top, id, sub] = route.parts;
  switch (top || "overview") {
    case "overview": return html`<${Overview} />`;
    case "policies":
      if (id === "new") return html`<${PolicyNew} query=${route.query} />`;
      return id ? html`<${PolicyPage} key=${id} id=${id} tab=${sub || "definition"} />` : html`<${PolicyList} query=${route.query} />`;
    case "stages":
      if (id === "new") return html`<${StagePage} key="new" isNew=${true} query=${route.query} />`;
      return id ? html`<${StagePage} key=${id} name=${id} tab=${sub || "rulesets"} />` : html`<${StageList} />`;
    case "applications":
      if (!session.central) return html`<div class="banner error" role="alert">Only central tokens manage applications.</div>`;
      return id ? html`<${ApplicationPage} key=${id} id=${id} />` : html`<${ApplicationList} />`;
    case "monitoring": return html`<${Monitoring} query=${route.query} />`;
    case "playground": return html`<${Playground} query=${route.query} />`;
    case "api": return html`<${Reference} query=${route.query} />`;
    default: return html`<div class="banner error" role="alert">Not found: no page ${route.path}. <a href="#/">Overview</a></div>`;
  }
}

function App() {
  const route = useRoute();
  const [session, setSession] = useState(null);
  const [checking, setChecking] = useState(true);
  const [loginMessage, setLoginMessage] = useState(null);
  const [storeBanner, setStoreBanner] = useState(null);

  const adopt = (who) => setSession({ role: who.role, application: who.application, central: who.role === "central" });
  useEffect(() => {
    const off = onApiEvent((ev) => {
      if (ev.type === "unauthorized") {
        setSession(null);
        setLoginMessage("Your session ended (" + ev.message + "): sign in again.");
      } else if (ev.type === "store") setStoreBanner(ev.message);
    });
    api.get("/v1/admin/session", { quiet: true }).then(adopt, () => {}).finally(() => setChecking(false));
    return off;
  }, []);
  useEffect(() => { setStoreBanner(null); }, [route.path]);

  if (checking) return html`<p class="muted">Checking session…</p>`;
  if (!session) return html`<${Login} message=${loginMessage} onLogin=${(who) => { setLoginMessage(null); adopt(who); }} />`;
  const signOut = () => { api.del("/v1/admin/session").finally(() => setSession(null)); };
  return html`<${Shell} session=${session} route=${route} onSignOut=${signOut} storeBanner=${storeBanner} />`;
}

render(html`<${App} />`, document.getElementById("root"));
