"""Turns measured points into the printed table, the ratio lines and the JSON document."""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.bench.load import LoadResult


@dataclass
class TargetResult:
    name: str
    status: str = "ok"  # ok, skipped or failed
    note: str = ""
    startup_s: float | None = None
    points: dict[int, LoadResult] = field(default_factory=dict)  # by concurrency

    def as_dict(self) -> dict[str, object]:
        return {"status": self.status, "note": self.note, "startup_s": self.startup_s,
                "points": [p.as_dict() for _, p in sorted(self.points.items())]}


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


def ratios(results: list[TargetResult], levels: list[int]) -> dict[str, float]:
    """gateway/litellm minus direct latency at the lowest level; gateway / litellm throughput."""
    by_name = {r.name: r for r in results if r.status == "ok"}
    low = min(levels)
    out: dict[str, float] = {}
    direct = by_name.get("direct")
    for proxy in ("gateway", "litellm"):
        if direct is None or proxy not in by_name:
            continue
        mine, base = by_name[proxy].points.get(low), direct.points.get(low)
        for q in ("p50", "p99"):
            a, b = (getattr(mine, f"{q}_ms", None), getattr(base, f"{q}_ms", None))
            if a is not None and b is not None:
                out[f"{proxy}_added_{q}_ms_c{low}"] = round(a - b, 3)
    if "gateway" in by_name and "litellm" in by_name:
        for c in levels:
            g, lite = by_name["gateway"].points.get(c), by_name["litellm"].points.get(c)
            if g and lite and lite.rps > 0:
                out[f"gateway_over_litellm_rps_c{c}"] = round(g.rps / lite.rps, 2)
    return out


def format_ratios(values: dict[str, float], levels: list[int]) -> str:
    low, lines = min(levels), []
    for proxy in ("gateway", "litellm"):
        p50, p99 = values.get(f"{proxy}_added_p50_ms_c{low}"), values.get(f"{proxy}_added_p99_ms_c{low}")
        if p50 is not None and p99 is not None:
            lines.append(f"{proxy} vs direct at c{low}: added p50 {p50:+.3f} ms, added p99 {p99:+.3f} ms")
    speedups = [f"c{c} x{values[f'gateway_over_litellm_rps_c{c}']:.1f}"
                for c in levels if f"gateway_over_litellm_rps_c{c}" in values]
    if speedups:
        lines.append("gateway / litellm throughput: " + ", ".join(speedups))
    return "\n".join(lines)
