"""The deploy/ observability files against real tools: promtool, and a real Prometheus scraping a guarded gateway.

Every PromQL expression of the Grafana dashboard and of the alert rules runs against a Prometheus
that scraped real guarded traffic; dashboard queries must also return series. Needs the `prometheus`
Debian package (binaries /usr/bin/prometheus and /usr/bin/promtool): the test fails, not skips,
without it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.conftest import free_port, running_gateway, stop_process
from tests.guard.conftest import KEY_A, KEY_C, KEY_D, KEY_E, guard_config

ROOT = Path(__file__).resolve().parent.parent
PROM_DIR = ROOT / "deploy" / "prometheus"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "guardrail-gateway.json"
JOB = "guardrail-gateway"
INSTALL = "apt-get update && apt-get install -y prometheus"

# Grafana variables -> concrete values Prometheus understands.
GRAFANA_VARS = {"$__rate_interval": "1m", "${__rate_interval}": "1m", "$__interval": "15s", "${__interval}": "15s",
                "${instance}": ".*", "$instance": ".*"}

# Dashboard queries allowed to be empty after the traffic below (none today: the traffic covers every panel).
MAY_BE_EMPTY: set[tuple[str, str]] = set()

EXPECTED_PANELS = {
    "Request rate by route and status", "Error rate (share of answers)", "Request latency p50 / p99 by route",
    "Gateway overhead p50 / p99 by route", "Time to first token p50 / p99 by route", "In-flight requests by route",
    "Guard triggers by stage, ruleset and action", "Blocked vs rewritten vs passed",
    "Guard metric latency p99 by metric", "Guard metric errors and timeouts", "Upstream errors, and calls dropped by parallel stages",
    "Stage runs with nothing to scan", "Scorer batch size (windows per encoder call)", "Scorer cache hit ratio and first-tier share",
    "Scorer queue and encoder busy share", "Monitoring-log backlog and store link",
    "Monitoring records written and dropped",
}


def binary(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"`{name}` not found: install the `prometheus` Debian package ({INSTALL})", pytrace=False)
    return path


def dashboard_targets() -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) for every panel target, rows' nested panels included."""
    out = []

    def walk(panels: list[dict]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                out.append((panel["title"], target["refId"], target["expr"]))

    walk(json.loads(DASHBOARD.read_text())["panels"])
    return out


def alert_rules() -> list[tuple[str, str]]:
    groups = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())["groups"]
    return [(rule.get("alert") or rule["record"], rule["expr"]) for group in groups for rule in group["rules"]]


def concrete(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    assert "$" not in expr, f"unsubstituted Grafana variable in {expr!r}"
    return expr


def test_promtool_accepts_rules_and_config() -> None:
    promtool = binary("promtool")
    for args in (["check", "rules", str(PROM_DIR / "alerts.yml")],
                 ["check", "config", str(PROM_DIR / "prometheus.yml")]):  # resolves rule_files next to the config
        done = subprocess.run([promtool, *args], check=False, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"


def test_dashboard_shape() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert 36 <= dash["schemaVersion"] <= 41 and dash["uid"] == "guardrail-gateway"
    assert {v["name"] for v in dash["templating"]["list"]} >= {"datasource", "instance"}
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    titles = {p["title"] for p in dash["panels"]}
    assert EXPECTED_PANELS <= titles, EXPECTED_PANELS - titles
    for panel in dash["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"], panel["title"]
    for _, _, expr in dashboard_targets():
        concrete(expr)


def _with_down_upstream(upstream: str, port: int) -> str:
    """The guard test config plus an upstream nobody listens on, for 502s and upstream errors."""
    text = guard_config(upstream, port)
    down = (f'  - {{name: down, base_url: "http://127.0.0.1:{free_port()}/v1", models: ["down-*"], '
            f"connect_timeout_s: 2}}\napplications:\n")
    assert "\napplications:\n" in text
    return text.replace("\napplications:\n", "\n" + down, 1)


class Prometheus:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url, self.proc, self.log = url, proc, log

    def query(self, expr: str) -> dict:
        resp = httpx.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10)
        body = resp.json()
        if resp.status_code != 200 or body.get("status") != "success":
            raise AssertionError(f"query failed ({resp.status_code}): {body.get('error', body)}\n  {expr}")
        return body["data"]

    def wait_for_scrapes(self, after: float, count: int, within: float) -> None:
        """Bounded wait until the gateway was scraped `count` times (successfully) after the Unix time `after`."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            result = self.query(f'up{{job="{JOB}"}}[1m]')["result"]
            ok = [float(t) for t, v in (result[0]["values"] if result else []) if float(t) > after and v == "1"]
            if len(ok) >= count:
                return
            time.sleep(0.2)
        pytest.fail(f"Prometheus did not scrape the gateway {count} time(s) after {after} within {within} s:\n"
                    f"{self.log.read_text()[-3000:]}")


@pytest.fixture()
def prometheus_for(tmp_path: Path) -> Iterator:
    """Start a real Prometheus scraping one target every second, with the repo's alert rules loaded."""
    exe = binary("prometheus")
    started: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> Prometheus:
        config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        job = next(j for j in config["scrape_configs"] if j["job_name"] == JOB)
        job.update(scrape_interval="1s", scrape_timeout="1s")
        job["static_configs"] = [{"targets": [target]}]
        shutil.copy(PROM_DIR / "alerts.yml", tmp_path / "alerts.yml")
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        log = tmp_path / "prometheus.log"
        with log.open("wb") as out:  # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(
                    [exe, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        started.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"prometheus exited with {proc.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(url + "/-/ready", timeout=0.5).status_code == 200:
                    return Prometheus(url, proc, log)
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        pytest.fail(f"prometheus did not become ready in 15 s:\n{log.read_text()}")

    try:
        yield start
    finally:
        for proc in started:
            stop_process(proc)  # terminate, bounded wait, kill


def _traffic(url: str) -> None:
    def client(key: str) -> openai.OpenAI:
        return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=10)

    def chat(key: str, content: object, model: str = "gpt-fast") -> openai.types.chat.ChatCompletion:
        return client(key).chat.completions.create(model=model, messages=[{"role": "user", "content": content}])

    for _ in range(3):
        assert chat(KEY_A, "What is the capital of France?").choices[0].finish_reason == "stop"
    assert chat(KEY_E, "Tell me about PROJECT-1234").choices[0].finish_reason == "content_filter"  # block
    assert "<EMAIL_ADDRESS>" in chat(KEY_E, "Mail me at jane.doe@example.com").choices[0].message.content  # redact
    with pytest.raises(openai.InternalServerError):  # metric error, fail closed: 503 guard_unavailable
        chat(KEY_C, "hello")
    assert chat(KEY_D, "hello").choices[0].finish_reason == "stop"  # metric error, on_error: allow: a fail-open
    chat(KEY_E, [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}])  # not scanned
    for text in ("a perfectly ordinary sentence, streamed " * 3, "the server is at 10.20.30.40 thanks"):
        chunks = list(client(KEY_A).chat.completions.create(
            model="gpt-fast", stream=True, messages=[{"role": "user", "content": text}]))
        assert chunks
    beside = [{"name": "beside", "on": "input", "parallel": True, "rulesets": [
        {"name": "any", "rules": [{"metric": "length", "op": "gt", "value": 0}], "action": {"type": "block"}}]}]
    stopped = client(KEY_A).chat.completions.create(model="gpt-fast", extra_body={"guardrails": beside},
                                                    messages=[{"role": "user", "content": "sent, then dropped"}])
    assert stopped.choices[0].finish_reason == "content_filter"  # a parallel stage drops the upstream call
    with pytest.raises(openai.APIStatusError) as info:  # upstream unreachable: 502 and an upstream error
        chat(KEY_E, "hi", model="down-1")
    assert info.value.status_code == 502


def test_dashboard_and_alert_queries_on_real_prometheus(upstream: str, tmp_path: Path, prometheus_for) -> None:
    dashboard = dashboard_targets()
    alerts = alert_rules()
    assert dashboard and alerts
    gw_dir = tmp_path / "gw"
    gw_dir.mkdir()
    with running_gateway(gw_dir, lambda port: _with_down_upstream(upstream, port)) as gw:
        prom = prometheus_for(gw.url.removeprefix("http://"))
        # Prometheus applies new targets a few seconds after start: wait for its first scrape, then send traffic.
        prom.wait_for_scrapes(after=0, count=1, within=15)
        _traffic(gw.url)
        prom.wait_for_scrapes(after=time.time(), count=2, within=20)

        failures = []
        for title, ref, expr in dashboard:
            try:
                data = prom.query(concrete(expr))
            except AssertionError as exc:
                failures.append(f"dashboard '{title}' {ref}: {exc}")
                continue
            if not data["result"] and (title, ref) not in MAY_BE_EMPTY:
                failures.append(f"dashboard '{title}' {ref}: no series after traffic\n  {concrete(expr)}")
        for name, expr in alerts:
            try:
                prom.query(expr)  # may be empty: only validity matters
            except AssertionError as exc:
                failures.append(f"alert {name}: {exc}")
        if failures:
            samples = prom.query("count_over_time(gateway_requests_total[1m])")["result"]
            failures.append(f"samples per request series: {[s['value'][1] for s in samples]}")
        assert not failures, "\n".join(failures)

        # The real server loaded the same rule file and evaluates it without errors.
        groups = httpx.get(prom.url + "/api/v1/rules", timeout=10).json()["data"]["groups"]
        loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
        assert set(loaded) == {name for name, _ in alerts}
        bad = {name: rule.get("lastError") for name, rule in loaded.items() if rule.get("health") == "err"}
        assert not bad, bad
