"""Load generation for the benchmark: wrk if installed, else hey, else an asyncio+httpx client.

Each tool runs one point (a URL at one concurrency for a fixed time) and yields a LoadResult.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from gateway.errors import LoadError  # noqa: F401  (re-exported; defined there)

TOOLS = ("wrk", "hey", "python")


@dataclass(frozen=True)
class LoadSpec:
    """One measurement point: POST `body` to `url` with `concurrency` connections for `duration_s`."""

    url: str
    body: str
    headers: dict[str, str] = field(default_factory=dict)
    concurrency: int = 1
    duration_s: int = 10
    # Long on purpose: a slow proxy's queueing must show up as latency, not as dropped requests.
    timeout_s: int = 30


@dataclass(frozen=True)
class LoadResult:
    tool: str
    concurrency: int
    requests: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    errors: int  # non-2xx answers plus socket errors/timeouts

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def pick_tool(preferred: str = "auto") -> str:
    """The load generator to use: the preferred one, or the first of wrk, hey, python installed."""
    if preferred != "auto":
        if preferred != "python" and shutil.which(preferred) is None:
            raise LoadError(f"{preferred} is not installed")
        return preferred
    return next((t for t in ("wrk", "hey") if shutil.which(t)), "python")


def run_load(tool: str, spec: LoadSpec) -> LoadResult:
    if tool == "wrk":
        return run_wrk(spec)
    if tool == "hey":
        return run_hey(spec)
    return run_python(spec)


def _run_tool(cmd: list[str], spec: LoadSpec) -> str:
    # Bounded: the tool's own duration plus its request timeout plus slack for start-up.
    limit = spec.duration_s + spec.timeout_s + 30
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=False)
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"{cmd[0]} did not finish within {limit} s") from exc
    if done.returncode != 0:
        raise LoadError(f"{cmd[0]} exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    return done.stdout


# --- wrk -----------------------------------------------------------------------------------------

_WRK_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _lua_string(text: str) -> str:
    """A Lua double-quoted literal for any text (the body and headers go into wrk's script)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def wrk_script(spec: LoadSpec) -> str:
    """A wrk Lua script that turns every request into POST + JSON body + the spec's headers."""
    lines = ['wrk.method = "POST"', f"wrk.body = {_lua_string(spec.body)}",
             'wrk.headers["Content-Type"] = "application/json"']
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in spec.headers.items()]
    return "\n".join(lines) + "\n"


def run_wrk(spec: LoadSpec, threads: int = 1) -> LoadResult:
    """Run wrk; one thread by default because on a 2-core box more threads steal CPU from the
    proxy under test (one wrk thread alone drives ~50k req/s against the mock)."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(wrk_script(spec))
        cmd = ["wrk", f"-t{min(threads, spec.concurrency)}", f"-c{spec.concurrency}",
               f"-d{spec.duration_s}s", f"--timeout={spec.timeout_s}s", "--latency",
               "-s", str(script), spec.url]
        output = _run_tool(cmd, spec)
    return parse_wrk(output, spec.concurrency)


def _wrk_time_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise LoadError(f"unreadable wrk time {text!r}")
    return float(match.group(1)) * _WRK_UNITS_MS[match.group(2)]


def parse_wrk(output: str, concurrency: int) -> LoadResult:
    """Read wrk's `--latency` summary: Requests/sec, the 50%/99% lines and the error counts."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    total = re.search(r"^\s*(\d+) requests in", output, re.M)
    if rps is None or total is None:
        raise LoadError(f"unreadable wrk output:\n{output}")
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", output, re.M))
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket = re.search(r"Socket errors:\s+connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket:
        errors += sum(int(n) for n in socket.groups())
    return LoadResult("wrk", concurrency, int(total.group(1)), float(rps.group(1)),
                      _wrk_time_ms(pct["50"]) if "50" in pct else None,
                      _wrk_time_ms(pct["99"]) if "99" in pct else None, errors)


# --- hey -----------------------------------------------------------------------------------------

def run_hey(spec: LoadSpec) -> LoadResult:
    cmd = ["hey", "-z", f"{spec.duration_s}s", "-c", str(spec.concurrency), "-t", str(spec.timeout_s),
           "-m", "POST", "-T", "application/json", "-d", spec.body]
    for name, value in spec.headers.items():
        cmd += ["-H", f"{name}: {value}"]
    return parse_hey(_run_tool([*cmd, spec.url], spec), spec.concurrency)


def parse_hey(output: str, concurrency: int) -> LoadResult:
    """Read hey's summary (its latencies have only 0.1 ms resolution)."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rps is None:
        raise LoadError(f"unreadable hey output:\n{output}")
    pct = dict(re.findall(r"^\s+(50|99)% in ([\d.]+) secs", output, re.M))
    statuses = [(int(code), int(n)) for code, n in re.findall(r"^\s+\[(\d{3})\]\s+(\d+) responses", output, re.M)]
    failed = 0  # requests that got no answer at all (timeouts, resets)
    error_part = output.split("Error distribution:", 1)
    if len(error_part) == 2:
        failed = sum(int(n) for n in re.findall(r"^\s+\[(\d+)\]", error_part[1], re.M))
    return LoadResult("hey", concurrency, sum(n for _, n in statuses) + failed, float(rps.group(1)),
                      float(pct["50"]) * 1e3 if "50" in pct else None,
                      float(pct["99"]) * 1e3 if "99" in pct else None,
                      sum(n for code, n in statuses if not 200 <= code < 300) + failed)


# --- python fallback -----------------------------------------------------------------------------

def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, round(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def _python_load(spec: LoadSpec) -> tuple[list[float], int, float]:
    import httpx

    latencies: list[float] = []
    errors = 0
    headers = {"Content-Type": "application/json", **spec.headers}
    # One single-connection client per worker, like wrk's connections: a shared pool of many
    # connections is much slower in httpx. Built before the clock starts (each costs an SSL context).
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(limits=limits, timeout=spec.timeout_s, trust_env=False)
               for _ in range(spec.concurrency)]
    start = time.perf_counter()
    deadline = start + spec.duration_s

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while (began := time.perf_counter()) < deadline:
            try:
                response = await client.post(spec.url, content=spec.body, headers=headers)
                ok = 200 <= response.status_code < 300
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append((time.perf_counter() - began) * 1e3)
            else:
                errors += 1

    try:
        await asyncio.gather(*(worker(client) for client in clients))
        elapsed = time.perf_counter() - start
    finally:
        await asyncio.gather(*(client.aclose() for client in clients))
    return latencies, errors, elapsed


def run_python(spec: LoadSpec) -> LoadResult:
    """Our own client: a last resort, since httpx tops out at a few hundred to ~1,000 req/s, so
    fast targets are measured client-bound."""
    try:
        import uvloop  # a faster loop leaves more of the shared CPU to the target

        latencies, errors, elapsed = uvloop.run(_python_load(spec))
    except ImportError:
        latencies, errors, elapsed = asyncio.run(_python_load(spec))
    latencies.sort()
    total = len(latencies) + errors
    return LoadResult("python", spec.concurrency, total, total / elapsed if elapsed else 0.0,
                      percentile(latencies, 50), percentile(latencies, 99), errors)


def describe_tool(tool: str) -> str:
    """The tool with its version, as printed under the table."""
    if tool == "python":
        return "python (asyncio + httpx, in-process)"
    try:
        # wrk prints its version on `-v`, hey has no version flag; both exit non-zero here.
        done = subprocess.run([tool, "-v"], capture_output=True, text=True, timeout=10, check=False)
        first = (done.stdout or done.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        first = ""
    version = first.split()[1] if tool == "wrk" and first.startswith("wrk ") else ""
    threads = ", 1 thread" if tool == "wrk" else ""
    return f"{tool} ({shutil.which(tool)}{' ' + version if version else ''}{threads})"
