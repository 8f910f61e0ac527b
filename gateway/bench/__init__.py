"""`guardrail-gateway bench`: latency, throughput and streamed TTFT of the gateway (without and with guard
rules) vs direct vs LiteLLM, on a mock upstream.

The CLI adds these flags with `add_arguments(subparser)` and calls `run(args)`.
"""

from __future__ import annotations

import argparse

_TARGETS = ("direct", "gateway", "guarded", "litellm")


def _levels(text: str) -> list[int]:
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if not levels or levels[0] < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be integers >= 1")
    return levels


def _only(text: str) -> str:
    unknown = {part.strip() for part in text.split(",")} - set(_TARGETS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown target(s) {sorted(unknown)}; choose from {','.join(_TARGETS)}")
    return text


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the bench flags to `parser` (the `bench` subparser)."""
    parser.add_argument("--duration", type=_positive, default=10, metavar="SECONDS",
                        help="length of each measured point (default 10)")
    parser.add_argument("--warmup", type=int, default=2, metavar="SECONDS",
                        help="unmeasured load before each target's points; 0 to skip (default 2)")
    parser.add_argument("--concurrency-levels", type=_levels, default=[1, 16, 64], metavar="N,N,...",
                        help="connections per point; latency is reported at the lowest (default 1,16,64)")
    parser.add_argument("--litellm-venv", metavar="PATH",
                        help="virtualenv with `litellm[proxy]` installed; without it the LiteLLM row is skipped")
    parser.add_argument("--only", type=_only, default=",".join(_TARGETS), metavar="TARGETS",
                        help="comma-separated subset of direct,gateway,guarded,litellm (default all)")
    parser.add_argument("--prompt-bytes", type=_positive, default=2048, metavar="N",
                        help="size of the user message sent to direct, gateway and guarded (default 2048)")
    parser.add_argument("--ttft-requests", type=_count, default=200, metavar="N",
                        help="streamed requests at c1 for time to first token (direct, gateway, guarded); "
                             "0 skips (default 200)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    parser.add_argument("--load-generator", choices=("auto", "wrk", "hey", "python"), default="auto",
                        help="auto picks wrk, else hey, else a built-in asyncio+httpx client")
    parser.add_argument("--start-timeout", type=float, default=120.0, metavar="SECONDS",
                        help="longest wait for each process to become ready (default 120; LiteLLM is slow)")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table; returns the process exit code."""
    from gateway.bench.runner import run_bench  # imported late so `--help` stays fast

    return run_bench(args)
