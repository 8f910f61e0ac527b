"""Joining scanned texts for one metric pass, mapping spans back to them, and replacing spans."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.metrics.types import Span


def join_segments(texts: Sequence[str], separator: str) -> tuple[str, list[int]]:
    """One text to measure, and where each segment starts in it."""
    starts, pos = [], 0
    for text in texts:
        starts.append(pos)
        pos += len(text) + len(separator)
    return separator.join(texts), starts


def spans_by_segment(spans: Sequence[Span], starts: Sequence[int], lengths: Sequence[int]) -> list[list[Span]]:
    """Spans of the joined text, moved into their segment's coordinates and clipped to it."""
    out: list[list[Span]] = [[] for _ in starts]
    for span in spans:
        for k, (start, length) in enumerate(zip(starts, lengths)):
            lo, hi = max(span.start, start), min(span.end, start + length)
            if lo < hi:
                out[k].append(Span(lo - start, hi - start, span.label, span.score))
    return out


def redact(text: str, spans: Sequence[Span], placeholder: str) -> str:
    """Replace each span (overlaps merged, first label kept) with `placeholder.format(label=...)`."""
    if not spans:
        return text
    merged: list[tuple[int, int, str]] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and span.start < merged[-1][1]:
            start, end, label = merged[-1]
            merged[-1] = (start, max(end, span.end), label)
        else:
            merged.append((span.start, span.end, span.label))
    parts, pos = [], 0
    for start, end, label in merged:
        parts.append(text[pos:start])
        parts.append(placeholder.format(label=label))
        pos = end
    parts.append(text[pos:])
    return "".join(parts)
