"""Dev tool: render the Grafana dashboard's panels as a PNG, from a real Prometheus scraping a real gateway.

    .venv/bin/python tools/render_dashboard.py docs/dashboard.png

Run from the repository root. Needs the `prometheus` Debian package (/usr/bin/prometheus:
`apt-get install -y prometheus`) and matplotlib in the venv (`.venv/bin/pip install matplotlib`, a dev-only
dependency, not in pyproject.toml). Everything stays on loopback and takes about 3.5 minutes:

1. the test upstream (a thread) and a gateway (a process) with the guard test config plus a down upstream;
2. a Prometheus scraping the gateway every second, with deploy/prometheus/alerts.yml loaded;
3. about 3 minutes of mixed traffic (chats, streams, blocks, redactions, fail-closed errors, 502s) at a rate
   that rises and falls;
4. every target of deploy/grafana/dashboards/guardrail-gateway.json through /api/v1/query_range over the
   traffic window, one small line chart per panel, laid out like the dashboard (2 columns).
"""

from __future__ import annotations

import json
import math
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' helpers (upstream, gateway runner, guard config) are reused

import httpx
import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from tests.conftest import free_port, running_gateway, stop_process
from tests.guard.conftest import KEY_A, KEY_B, KEY_C, KEY_D, KEY_E
from tests.test_observability import DASHBOARD, JOB, PROM_DIR, _with_down_upstream
from tests.upstream import Recorder, ServerThread, create_upstream

PROMETHEUS = "/usr/bin/prometheus"
TRAFFIC_S = 180.0  # length of the traffic window
STEP_S = 2  # query_range resolution
# Grafana variables -> concrete values (rate windows sized for 1 s scrapes and a 3-minute window).
GRAFANA_VARS = {"${__rate_interval}": "20s", "$__rate_interval": "20s", "${__interval}": "5s", "$__interval": "5s",
                "${instance}": ".*", "$instance": ".*"}
GRAFANA_SUFFIX = {"reqps": "req/s", "ops": "ops/s"}  # how Grafana labels values of these unit ids

# A Grafana-like dark theme and its classic palette.
BG, PANEL_BG, GRID, TEXT, MUTED = "#111217", "#181b1f", "#2c3235", "#d8d9da", "#8e9297"
PALETTE = ["#73bf69", "#f2cc0c", "#5794f2", "#ff9830", "#f2495c", "#b877d9", "#8ab8ff", "#96d98d", "#ffb357",
           "#ff7383", "#ca95e5", "#fade2a", "#3274d9", "#e0b400", "#56a64b"]


# --------------------------------------------------------------------------------------------------- servers


class Prometheus:
    """A real Prometheus process scraping one target every second; data and config in `workdir`."""

    def __init__(self, workdir: Path, target: str) -> None:
        config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", evaluation_interval="1s")
        job = next(j for j in config["scrape_configs"] if j["job_name"] == JOB)
        job.update(scrape_interval="1s", scrape_timeout="1s")
        job["static_configs"] = [{"targets": [target]}]
        shutil.copy(PROM_DIR / "alerts.yml", workdir / "alerts.yml")  # rule_files is relative to the config
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = workdir / "prometheus.log"
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        with self.log.open("wb") as out:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [PROMETHEUS, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT, cwd=workdir)

    def wait_ready(self, within: float = 15) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/-/ready", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"prometheus did not become ready in {within} s:\n{self.log.read_text()}")

    def _get(self, path: str, params: dict[str, str | float]) -> Any:
        resp = httpx.get(self.url + path, params=params, timeout=30)
        body = resp.json()
        if resp.status_code != 200 or body.get("status") != "success":
            raise RuntimeError(f"{path} failed ({resp.status_code}): {body.get('error', body)}\n  {params}")
        return body["data"]

    def query(self, expr: str) -> Any:
        return self._get("/api/v1/query", {"query": expr})

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        return list(self._get("/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step})["result"])

    def wait_for_scrapes(self, after: float, count: int, within: float) -> None:
        """Bounded wait until the gateway was scraped successfully `count` times after the Unix time `after`."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            result = self.query(f'up{{job="{JOB}"}}[1m]')["result"]
            ok = [float(t) for t, v in (result[0]["values"] if result else []) if float(t) > after and v == "1"]
            if len(ok) >= count:
                return
            time.sleep(0.2)
        raise RuntimeError(f"no {count} scrape(s) of the gateway within {within} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_process(self.proc)  # terminate, bounded wait, kill


@contextmanager
def running_upstream() -> Iterator[str]:
    server = ServerThread(create_upstream(Recorder()), free_port())
    server.start()
    try:
        yield f"http://127.0.0.1:{server.port}/v1"
    finally:
        server.stop()  # bounded join; the thread is a daemon


@contextmanager
def running_prometheus(workdir: Path, target: str) -> Iterator[Prometheus]:
    prom = Prometheus(workdir, target)
    try:
        prom.wait_ready()
        yield prom
    finally:
        prom.stop()


# --------------------------------------------------------------------------------------------------- traffic


@dataclass
class Counts:
    """Answers by status (or exception name), shared by the worker threads."""

    by_status: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str) -> None:
        with self.lock:
            self.by_status[key] = self.by_status.get(key, 0) + 1


def _chat(model: str, content: object, stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": content}]}
    return {**body, "stream": True} if stream else body


# Ordinary questions; half of them get a random ticket number so the scorer's cache sees misses as well as hits.
QUESTION = "<an ordinary question>"
QUESTIONS = ["What is the capital of France?", "Summarise the plot of Hamlet in two lines.",
             "How do I reverse a list in Python?", "Suggest a name for a grey cat.",
             "What is 17 times 23?", "Translate 'good morning' into Spanish.",
             "Write a haiku about autumn rain.", "Explain what a hash table is."]

# (weight, key, path, JSON body or None for GET). What each one does: `_traffic` in tests/test_observability.py and
# the guard config in tests/guard/conftest.py. A body with "stream": true is read as a stream.
REQUESTS: list[tuple[float, str, str, dict[str, Any] | None]] = [
    (30, KEY_A, "/v1/chat/completions", _chat("gpt-fast", QUESTION)),  # passes
    (8, KEY_A, "/v1/chat/completions", _chat("gpt-4o", QUESTION, stream=True)),  # slow stream: in flight, TTFT
    (6, KEY_A, "/v1/chat/completions", _chat("gpt-fast", "a perfectly ordinary sentence, streamed", stream=True)),
    (4, KEY_A, "/v1/chat/completions", _chat("gpt-4o", "the server is at 10.20.30.40 thanks", stream=True)),  # redact
    (4, KEY_A, "/v1/chat/completions", _chat("gpt-fast", "Tell me about acme corp")),  # override (input)
    (6, KEY_E, "/v1/chat/completions", _chat("gpt-fast", "Tell me about PROJECT-1234")),  # block (input)
    (6, KEY_E, "/v1/chat/completions", _chat("gpt-fast", "Mail me at jane.doe@example.com")),  # redact (input)
    (3, KEY_B, "/v1/chat/completions", _chat("gpt-fast", "this word is forbidden here")),  # correct (output)
    (3, KEY_C, "/v1/chat/completions", _chat("gpt-fast", "hello")),  # metric error, fail closed
    (2, KEY_D, "/v1/chat/completions", _chat("gpt-fast", "hello there")),  # metric error, fail open
    (3, KEY_E, "/v1/chat/completions",  # nothing to scan
     _chat("gpt-fast", [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}])),
    (3, KEY_E, "/v1/embeddings", {"model": "gpt-embed", "input": "a short text to embed"}),
    (2, KEY_E, "/v1/completions", {"model": "gpt-instruct", "prompt": "Once upon a time"}),
    (2, KEY_E, "/v1/responses", {"model": "gpt-fast", "input": "Say hi"}),
    (2, KEY_E, "/v1/models", None),
    (1, "sk-unknown-key", "/v1/chat/completions", _chat("gpt-fast", "hi")),  # 401
    (2, KEY_A, "/v1/chat/completions", {**_chat("gpt-fast", "sent, then dropped"), "guardrails": [  # parallel stop
        {"name": "beside", "on": "input", "parallel": True, "rulesets": [
            {"name": "any", "rules": [{"metric": "length", "op": "gt", "value": 0}], "action": {"type": "block"}}]}]}),
]
DOWN = (KEY_E, "/v1/chat/completions", _chat("down-1", "hi"))  # nothing listens on the upstream: 502


def concrete_body(body: dict[str, Any] | None, rng: random.Random) -> dict[str, Any] | None:
    """`body` with a QUESTION placeholder replaced by a question, unique (random ticket) half of the time."""
    if body is None or body.get("messages", [{}])[0].get("content") != QUESTION:
        return body
    text = rng.choice(QUESTIONS) + (f" (ticket {rng.randrange(100_000)})" if rng.random() < 0.5 else "")
    return {**body, "messages": [{"role": "user", "content": text}]}


def rate_at(t: float) -> float:
    """Requests per second at `t` seconds into the window: 1 rising to ~9 and back, with a short burst."""
    base = 1 + 8 * math.sin(math.pi * t / TRAFFIC_S) ** 2
    return base + (5 if 0.62 * TRAFFIC_S < t < 0.68 * TRAFFIC_S else 0)


def down_share_at(t: float) -> float:
    """Share of requests sent to the down upstream: a small background plus an 'incident' a third of the way in."""
    return 0.25 if 0.3 * TRAFFIC_S < t < 0.42 * TRAFFIC_S else 0.02


def send(client: httpx.Client, key: str, path: str, body: dict[str, Any] | None, counts: Counts) -> None:
    headers = {"authorization": f"Bearer {key}"}
    try:
        if body is None:
            counts.add(str(client.get(path, headers=headers).status_code))
        elif body.get("stream"):
            with client.stream("POST", path, json=body, headers=headers) as resp:
                for _ in resp.iter_bytes():
                    pass
                counts.add(str(resp.status_code))
        else:
            counts.add(str(client.post(path, json=body, headers=headers).status_code))
    except httpx.HTTPError as exc:
        counts.add(type(exc).__name__)


def run_traffic(url: str, seconds: float, seed: int = 20261121) -> Counts:
    """Send the request mix at the changing rate for `seconds` (bounded), then wait for answers (bounded)."""
    rng = random.Random(seed)
    weights = [w for w, *_ in REQUESTS]
    counts = Counts()
    start = time.monotonic()
    with httpx.Client(base_url=url, timeout=15, limits=httpx.Limits(max_connections=64)) as client, \
            ThreadPoolExecutor(max_workers=48) as pool:
        next_at = start
        while (t := time.monotonic() - start) < seconds:
            _, key, path, body = rng.choices(REQUESTS, weights)[0]
            if rng.random() < down_share_at(t):
                key, path, body = DOWN
            pool.submit(send, client, key, path, concrete_body(body, rng), counts)
            next_at += rng.expovariate(rate_at(t))  # Poisson arrivals around the current rate
            time.sleep(max(0.0, next_at - time.monotonic()))
        # leaving the `with` waits for the in-flight requests; each is bounded by the client timeout
    return counts


# --------------------------------------------------------------------------------------------------- dashboard


@dataclass
class Panel:
    title: str
    unit: str  # Grafana unit id of fieldConfig.defaults
    x: int  # gridPos.x: 0 = left column, 12 = right column
    targets: list[dict[str, Any]]


def dashboard_panels() -> list[tuple[str, Panel | None]]:
    """The dashboard in reading order: (row title, None) for row headers, (title, panel) for charts."""
    flat: list[dict[str, Any]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            flat.append(panel)
            walk(panel.get("panels", []))  # a collapsed row keeps its panels inside

    walk(json.loads(DASHBOARD.read_text())["panels"])
    out: list[tuple[str, Panel | None]] = []
    for p in sorted(flat, key=lambda p: (p["gridPos"]["y"], p["gridPos"]["x"])):
        if p["type"] == "row":
            out.append((p["title"], None))
        else:
            unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
            out.append((p["title"], Panel(p["title"], unit, p["gridPos"]["x"], p.get("targets", []))))
    return out


def concrete(expr: str) -> str:
    for var, value in GRAFANA_VARS.items():
        expr = expr.replace(var, value)
    if "$" in expr:
        raise ValueError(f"unsubstituted Grafana variable in {expr!r}")
    return expr


def legend(fmt: str | None, labels: dict[str, str], ref: str) -> str:
    """Grafana's legendFormat ({{label}}) over the series' labels; without one, the labels themselves."""
    if fmt:
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()
    shown = {k: v for k, v in labels.items() if k != "__name__"}
    return "{" + ", ".join(f"{k}={v}" for k, v in shown.items()) + "}" if shown else ref


def _seconds(v: float, _: object = None) -> str:
    """Tick labels for Grafana's unit "s": µs, ms, s or min as the value calls for."""
    if v == 0:
        return "0"
    if abs(v) < 1e-3:
        return f"{v * 1e6:.3g} µs"
    if abs(v) < 1:
        return f"{v * 1e3:.3g} ms"
    if abs(v) < 60:
        return f"{v:.3g} s"
    return f"{v / 60:.3g} min"


def format_axis(ax: Axes, unit: str) -> None:
    if unit == "percentunit":
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    elif unit == "s":
        ax.yaxis.set_major_formatter(FuncFormatter(_seconds))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, steps=[1, 2, 3, 6, 10]))  # whole minutes past 60 s
    elif unit in GRAFANA_SUFFIX:  # Grafana's own suffixes for these unit ids
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g} {GRAFANA_SUFFIX[unit]}" if v else "0"))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S"))
    ax.xaxis.set_major_locator(mdates.SecondLocator(bysecond=[0, 30]))


def draw_panel(ax: Axes, panel: Panel, series: list[tuple[str, list[datetime], list[float]]]) -> None:
    ax.set_facecolor(PANEL_BG)
    ax.set_title(panel.title, loc="left", fontsize=10, color=TEXT, fontweight="bold", pad=6)
    ax.grid(True, color=GRID, linewidth=0.6)
    ax.tick_params(colors=MUTED, labelsize=7.5, length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    format_axis(ax, panel.unit)
    if not series:
        ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", va="center", color=MUTED, fontsize=11)
        ax.set_yticks([])
        return
    for i, (name, times, values) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        ax.plot(times, values, color=color, linewidth=1.3, label=name)
        if len(series) <= 4:  # Grafana's light fill, except where many series would muddy each other
            ax.fill_between(times, values, color=color, alpha=0.08, linewidth=0)
    ax.set_ylim(bottom=0)
    ax.margins(x=0)
    ncol = 2 if len(series) > 3 else 1
    leg = ax.legend(loc="upper left", bbox_to_anchor=(0, -0.1), ncol=ncol if len(series) > 1 else 1, fontsize=7,
                    frameon=False, labelcolor=TEXT, handlelength=1.2, columnspacing=1.2, borderaxespad=0)
    for line in leg.get_lines():
        line.set_linewidth(3)


def fetch(prom: Prometheus, panel: Panel, start: float, end: float) -> list[tuple[str, list[datetime], list[float]]]:
    out = []
    for target in panel.targets:
        for s in prom.query_range(concrete(target["expr"]), start, end, STEP_S):
            times = [datetime.fromtimestamp(float(t)) for t, _ in s["values"]]
            values = [float(v) if v not in ("NaN", "+Inf", "-Inf") else math.nan for _, v in s["values"]]
            out.append((legend(target.get("legendFormat"), s["metric"], target["refId"]), times, values))
    return sorted(out, key=lambda s: s[0]) if len(panel.targets) == 1 else out  # multi-target: keep query order


def render(prom: Prometheus, start: float, end: float, path: Path) -> list[str]:
    """Plot every panel over [start, end] into `path`; return the titles of panels that had no series."""
    layout: list[tuple[str | None, list[Panel]]] = []  # (row title, []) for a header, (None, [left, right])
    for title, panel in dashboard_panels():
        if panel is None:
            layout.append((title, []))
        elif layout and layout[-1][0] is None and len(layout[-1][1]) == 1 and panel.x >= 12:
            layout[-1][1].append(panel)
        else:
            layout.append((None, [panel]))
    ratios = [0.22 if header else 1.0 for header, _ in layout]
    fig = plt.figure(figsize=(16, sum(ratios) * 3.3 + 0.6), dpi=100, facecolor=BG, layout="constrained")
    fig.get_layout_engine().set(h_pad=0.12, w_pad=0.15, hspace=0.03, wspace=0.04)  # type: ignore[union-attr]
    fig.suptitle("guardrail-gateway  ·  Grafana dashboard queries on a live Prometheus (3 min of test traffic)",
                 color=TEXT, fontsize=13, x=0.01, ha="left")
    grid = fig.add_gridspec(len(layout), 2, height_ratios=ratios)
    empty = []
    for row, (header, panels) in enumerate(layout):
        if header is not None:
            ax = fig.add_subplot(grid[row, :])
            ax.axis("off")
            ax.text(0, 0.2, header, color=TEXT, fontsize=12.5, fontweight="bold", transform=ax.transAxes)
            continue
        for panel in panels:
            ax = fig.add_subplot(grid[row, 0 if panel.x < 12 else 1])
            series = fetch(prom, panel, start, end)
            if not series:
                empty.append(panel.title)
            draw_panel(ax, panel, series)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, facecolor=BG)
    plt.close(fig)
    return empty


# --------------------------------------------------------------------------------------------------- main


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    if not Path(PROMETHEUS).exists():
        print(f"{PROMETHEUS} not found: apt-get install -y prometheus", file=sys.stderr)
        return 1
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="render-dashboard-") as tmp:
        work = Path(tmp)
        (work / "gw").mkdir()
        (work / "prom").mkdir()
        with running_upstream() as upstream, \
                running_gateway(work / "gw", lambda port: _with_down_upstream(upstream, port)) as gw, \
                running_prometheus(work / "prom", gw.url.removeprefix("http://")) as prom:
            prom.wait_for_scrapes(after=0, count=3, within=20)  # Prometheus applies targets a few seconds late
            start = time.time()
            print(f"sending traffic for {TRAFFIC_S:.0f} s to {gw.url} ...", flush=True)
            counts = run_traffic(gw.url, TRAFFIC_S)
            print("answers:", dict(sorted(counts.by_status.items())), flush=True)
            time.sleep(4)  # a few quiet seconds so the rates visibly come down
            prom.wait_for_scrapes(after=time.time(), count=2, within=20)
            end = time.time()
            empty = render(prom, start, end, out)
    print(f"wrote {out} in {time.monotonic() - began:.0f} s; empty panels: {empty or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
