"""Runs the benchmark: start the mock, measure each selected target in turn in front of it, report.

Proxies run one at a time (started, measured, stopped) so they never compete for the CPUs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gateway.bench.load import LoadError, LoadResult, LoadSpec, describe_tool, pick_tool, run_load
from gateway.bench.procs import BenchError, Child, stop_child
from gateway.bench.report import (
    GUARD_BUDGET_P50_MS,
    TargetResult,
    format_ratios,
    format_table,
    format_ttft_table,
    guard_budget_met,
    ratios,
)
from gateway.bench.targets import Target, litellm_cli, start_gateway, start_litellm, start_mock, verify, verify_stream
from gateway.bench.ttft import client_name, measure_ttft
from gateway.bench.workload import as_stream, chat_body

TARGETS = ("direct", "gateway", "guarded", "litellm")
TTFT_TARGETS = ("direct", "gateway", "guarded")
Starter = Callable[[], tuple[Child | None, float, Target]]
Plan = list[tuple[str, Starter | None, str]]


@dataclass(frozen=True)
class Settings:
    tool: str
    levels: list[int]
    duration_s: int
    warmup_s: int
    start_timeout_s: float
    prompt_bytes: int = 2048
    ttft_requests: int = 0

    def streams(self, name: str) -> bool:
        return self.ttft_requests > 0 and name in TTFT_TARGETS


def _log(message: str) -> None:
    # Progress goes to stderr so stdout carries only the report.
    print(message, file=sys.stderr, flush=True)


def settle(target: Target) -> None:
    """Wait out the previous run's backlog before the next one.

    A slow proxy keeps working on requests whose client (the load generator) has already left;
    that backlog would land in the next point (a c1 p99 of seconds after a c64 warm-up). A new
    request is answered only once the queued ones are mostly done; two in a row make it sure.
    """
    verify(target)
    verify(target)


def measure(target: Target, settings: Settings) -> dict[int, LoadResult]:
    """Verify one request (and a stream), warm up, then one load run per concurrency level."""
    verify(target)
    if settings.streams(target.name):
        verify_stream(target)
    if settings.warmup_s > 0:
        # Lazy imports, caches and connection pools warm up here, not in the first measured point.
        run_load(settings.tool, LoadSpec(target.url, target.body, target.headers,
                                         max(settings.levels), settings.warmup_s))
    points: dict[int, LoadResult] = {}
    for level in settings.levels:
        settle(target)
        _log(f"  {target.name}: c{level} for {settings.duration_s} s")
        points[level] = run_load(settings.tool, LoadSpec(target.url, target.body, target.headers,
                                                         level, settings.duration_s))
    return points


def measure_target(name: str, start: Starter, settings: Settings) -> TargetResult:
    """Start (if needed), measure and stop one target; failures become a 'failed' row."""
    result = TargetResult(name)
    child: Child | None = None
    _log(f"{name}: starting")
    try:
        child, startup_s, target = start()
        result.startup_s = startup_s if child else None  # `direct` reuses the already running mock
        _log(f"{name}: ready" + (f" after {startup_s:.1f} s" if child else ""))
        result.points = measure(target, settings)
        if settings.streams(name):
            settle(target)
            _log(f"  {name}: {settings.ttft_requests} streamed requests at c1")
            result.ttft = measure_ttft(target.url, as_stream(target.body), target.headers, settings.ttft_requests)
    except (BenchError, LoadError) as exc:
        result.status, result.note = "failed", str(exc)
        _log(f"{name}: FAILED: {exc}")
    finally:
        if child is not None:
            stop_child(child)
    return result


def _plan(args: argparse.Namespace, mock_port: int, direct: Target, workdir: Path,
          settings: Settings) -> Plan:
    """(name, how to start it or None, why skipped) for each selected target, in order."""
    timeout, plan = settings.start_timeout_s, Plan()
    selected = [t.strip() for t in args.only.split(",") if t.strip()]
    if "direct" in selected:
        plan.append(("direct", lambda: (None, 0.0, direct), ""))
    if "gateway" in selected:
        plan.append(("gateway", lambda: start_gateway(mock_port, workdir, timeout, direct.body), ""))
    if "guarded" in selected:
        plan.append(("guarded", lambda: start_gateway(mock_port, workdir, timeout, direct.body, guarded=True), ""))
    if "litellm" in selected:
        cli, why = litellm_cli(args.litellm_venv)
        starter = (lambda: start_litellm(cli, mock_port, workdir, timeout)) if cli else None
        plan.append(("litellm", starter, why))
    return plan


def _measure_all(args: argparse.Namespace, settings: Settings) -> list[TargetResult]:
    with tempfile.TemporaryDirectory(prefix="guardrail-bench-") as tmp:
        _log("mock: starting")
        mock, mock_port, direct = start_mock(settings.start_timeout_s, chat_body(settings.prompt_bytes))
        try:
            results = []
            for name, starter, why in _plan(args, mock_port, direct, Path(tmp), settings):
                if starter is None:
                    _log(f"{name}: skipped: {why}")
                    results.append(TargetResult(name, status="skipped", note=why))
                else:
                    results.append(measure_target(name, starter, settings))
            return results
        finally:
            stop_child(mock)


def report(results: list[TargetResult], settings: Settings, json_path: str | None) -> None:
    print(f"Load generator: {describe_tool(settings.tool)}; {settings.duration_s} s per point after a "
          f"{settings.warmup_s} s warm-up; all processes share this machine's {os.cpu_count()} CPUs")
    print(f"Body: a {settings.prompt_bytes}-byte prompt for direct, gateway and guarded "
          f"(litellm: a short one); the mock answers at once")
    print(format_table(results, settings.levels))
    streams = format_ttft_table(results)
    if streams:
        print(f"\nStreams: {settings.ttft_requests} requests each, client {client_name()}")
        print(streams)
    values = ratios(results, settings.levels)
    if values:
        print("\n" + format_ratios(values, settings.levels))
    if json_path:
        document = {"load_generator": describe_tool(settings.tool), "duration_s": settings.duration_s,
                    "warmup_s": settings.warmup_s, "concurrency_levels": settings.levels,
                    "cpus": os.cpu_count(), "prompt_bytes": settings.prompt_bytes,
                    "ttft_requests": settings.ttft_requests, "ttft_client": client_name(),
                    "targets": {r.name: r.as_dict() for r in results}, "ratios": values,
                    "guard_budget_p50_ms": GUARD_BUDGET_P50_MS,
                    "guard_budget_met": guard_budget_met(values, settings.levels)}
        Path(json_path).write_text(json.dumps(document, indent=2) + "\n")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so SIGTERM also unwinds through the finally blocks that stop children


def run_bench(args: argparse.Namespace) -> int:
    """The `bench` command: 0 if every selected target was measured, 1 on failure, 130 if interrupted."""
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        settings = Settings(pick_tool(args.load_generator), args.concurrency_levels, args.duration,
                            args.warmup, args.start_timeout, args.prompt_bytes, args.ttft_requests)
        results = _measure_all(args, settings)
    except KeyboardInterrupt:
        _log("interrupted; child processes stopped")
        return 130
    except (BenchError, LoadError) as exc:
        _log(f"bench: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)
    report(results, settings, args.json)
    return 1 if any(r.status == "failed" for r in results) else 0
