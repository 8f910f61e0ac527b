"""Turns measured points into the printed tables, the ratio lines and the JSON document."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.bench.load import LoadResult
from gateway.bench.ttft import TtftResult

# The target: guard rules add at most this much p50 over the no-rule gateway at c1 (2 KB prompts).
GUARD_BUDGET_P50_MS = 1.0
# (proxy, baseline) pairs whose latency difference is reported.
PAIRS = (("gateway", "direct"), ("litellm", "direct"), ("guarded", "gateway"))


@dataclass
class TargetResult:
    name: str
    status: str = "ok"  # ok, skipped or failed
    note: str = ""
    startup_s: float | None = None
    points: dict[int, LoadResult] = field(default_factory=dict)  # by concurrency
    ttft: TtftResult | None = None  # streamed requests at c1

    def as_dict(self) -> dict[str, object]:
        return {"status": self.status, "note": self.note, "startup_s": self.startup_s,
                "points": [p.as_dict() for _, p in sorted(self.points.items())],
                "ttft": self.ttft.as_dict() if self.ttft else None}


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3f} ms" if value < 1 else f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"


def _rps(point: LoadResult | None) -> str:
    if point is None:
        return "-"
    mark = "!" if point.errors else ""  # explained under the table
    return f"{point.rps:,.0f}{mark}"


def format_table(results: list[TargetResult], levels: list[int]) -> str:
    """Latency at the lowest concurrency, throughput at every level, one row per target."""
    low = min(levels)
    head = ["target", f"p50@c{low}", f"p99@c{low}"] + [f"req/s@c{c}" for c in levels]
    rows = [head]
    notes: list[str] = []
    for result in results:
        if result.status != "ok":
            notes.append(f"- {result.name}: {result.status}: {result.note}")
            continue
        first = result.points.get(low)
        rows.append([result.name, _ms(first.p50_ms if first else None), _ms(first.p99_ms if first else None)]
                    + [_rps(result.points.get(c)) for c in levels])
        notes += [f"! {result.name} c{c}: {p.errors} of {p.requests} requests failed (non-2xx or socket error)"
                  for c, p in sorted(result.points.items()) if p.errors]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = [_line(row, widths) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + notes)


def _line(row: list[str], widths: list[int]) -> str:
    # Names left-aligned, figures right-aligned so their digits line up.
    cells = [row[0].ljust(widths[0])] + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
    return "  ".join(cells)


def format_ttft_table(results: list[TargetResult]) -> str:
    """Streamed requests at c1: time to the first content event and to the end of the answer."""
    rows = [["stream@c1", "TTFT p50", "TTFT p99", "end p50", "end p99"]]
    notes: list[str] = []
    for result in results:
        t = result.ttft
        if result.status != "ok" or t is None:
            continue
        rows.append([result.name, _ms(t.ttft_p50_ms), _ms(t.ttft_p99_ms), _ms(t.total_p50_ms), _ms(t.total_p99_ms)])
        if t.errors:
            notes.append(f"! {result.name} streams: {t.errors} of {t.requests} requests failed")
    if len(rows) == 1:
        return ""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [_line(row, widths) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines + notes)


def _added(out: dict[str, float], mine: object, base: object, fields: dict[str, str]) -> None:
    """out[name] = mine.attr - base.attr for each name: attr of `fields` both sides have."""
    for name, attr in fields.items():
        a, b = getattr(mine, attr, None), getattr(base, attr, None)
        if a is not None and b is not None:
            out[name] = round(a - b, 3)


def ratios(results: list[TargetResult], levels: list[int]) -> dict[str, float]:
    """Added latency of each PAIRS proxy over its baseline (c1 load, and streams), and throughput ratios."""
    by_name = {r.name: r for r in results if r.status == "ok"}
    low = min(levels)
    out: dict[str, float] = {}
    for proxy, base in PAIRS:
        if proxy not in by_name or base not in by_name:
            continue
        mine, other = by_name[proxy], by_name[base]
        # Keys stay `<proxy>_added_*` against direct (as before); guarded's are named after the gateway.
        key = proxy if base == "direct" else f"{proxy}_vs_{base}"
        _added(out, mine.points.get(low), other.points.get(low),
               {f"{key}_added_p50_ms_c{low}": "p50_ms", f"{key}_added_p99_ms_c{low}": "p99_ms"})
        _added(out, mine.ttft, other.ttft, {f"{key}_added_ttft_p50_ms": "ttft_p50_ms",
                                            f"{key}_added_ttft_p99_ms": "ttft_p99_ms",
                                            f"{key}_added_end_p50_ms": "total_p50_ms",
                                            f"{key}_added_end_p99_ms": "total_p99_ms"})
    for proxy, base in (("gateway", "litellm"), ("guarded", "gateway")):
        for c in levels:
            a = by_name[proxy].points.get(c) if proxy in by_name else None
            b = by_name[base].points.get(c) if base in by_name else None
            if a and b and b.rps > 0:
                out[f"{proxy}_over_{base}_rps_c{c}"] = round(a.rps / b.rps, 2)
    return out


def _pair_line(values: dict[str, float], key: str, title: str, low: int) -> list[str]:
    lines = []
    p50, p99 = values.get(f"{key}_added_p50_ms_c{low}"), values.get(f"{key}_added_p99_ms_c{low}")
    if p50 is not None and p99 is not None:
        lines.append(f"{title} at c{low}: added p50 {p50:+.3f} ms, added p99 {p99:+.3f} ms")
    t50, t99 = values.get(f"{key}_added_ttft_p50_ms"), values.get(f"{key}_added_ttft_p99_ms")
    if t50 is not None and t99 is not None:
        lines.append(f"{title}, streams at c1: added TTFT p50 {t50:+.3f} ms, added TTFT p99 {t99:+.3f} ms")
    return lines


def guard_budget_met(values: dict[str, float], levels: list[int]) -> bool | None:
    """Whether guarded adds at most GUARD_BUDGET_P50_MS p50 over the gateway at the lowest level."""
    added = values.get(f"guarded_vs_gateway_added_p50_ms_c{min(levels)}")
    return None if added is None else added <= GUARD_BUDGET_P50_MS


def format_ratios(values: dict[str, float], levels: list[int]) -> str:
    low, lines = min(levels), []
    for proxy, base in PAIRS:
        key = proxy if base == "direct" else f"{proxy}_vs_{base}"
        lines += _pair_line(values, key, f"{proxy} vs {base}", low)
    for proxy, base in (("gateway", "litellm"), ("guarded", "gateway")):
        shares = [f"c{c} x{values[f'{proxy}_over_{base}_rps_c{c}']:.2f}"
                  for c in levels if f"{proxy}_over_{base}_rps_c{c}" in values]
        if shares:
            lines.append(f"{proxy} / {base} throughput: " + ", ".join(shares))
    met = guard_budget_met(values, levels)
    if met is not None:
        lines.append(f"target (guarded adds <= {GUARD_BUDGET_P50_MS:g} ms p50 over gateway at c{low}): "
                     + ("met" if met else "NOT met"))
    return "\n".join(lines)
