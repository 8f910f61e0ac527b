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


# A redaction as an edit of the text it was found in: text[start:end] is replaced by the string.
Edit = tuple[int, int, str]
# A run of an edited text, [start, end), that is still the original's characters from `orig` on.
Kept = tuple[int, int, int]


def redaction_edits(spans: Sequence[Span], placeholder: str) -> list[Edit]:
    """The edits that replace each span (overlaps merged, first label kept) with
    `placeholder.format(label=...)`, sorted and disjoint."""
    merged: list[tuple[int, int, str]] = []
    for span in sorted(spans, key=lambda s: (s.start, -s.end)):
        if merged and span.start < merged[-1][1]:
            start, end, label = merged[-1]
            merged[-1] = (start, max(end, span.end), label)
        else:
            merged.append((span.start, span.end, span.label))
    return [(start, end, placeholder.format(label=label)) for start, end, label in merged]


def apply_edits(text: str, edits: Sequence[Edit]) -> str:
    """`text` with its sorted, disjoint `edits` made."""
    parts, pos = [], 0
    for start, end, replacement in edits:
        parts.append(text[pos:start])
        parts.append(replacement)
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def redact(text: str, spans: Sequence[Span], placeholder: str) -> str:
    """Replace each span (overlaps merged, first label kept) with `placeholder.format(label=...)`."""
    if not spans:
        return text
    return apply_edits(text, redaction_edits(spans, placeholder))


def kept_after(kept: Sequence[Kept], edits: Sequence[Edit]) -> list[Kept]:
    """The runs of original characters an edited text still holds once its own sorted, disjoint `edits`
    (in its coordinates) are made: several redactions of one text in a row (one per stage) tracked back
    to the text they all started from."""
    out: list[Kept] = []
    k, shift = 0, 0  # the next edit; how far the edits before it moved the text after them
    for a, b, orig in kept:
        pos = a
        while pos < b:
            while k < len(edits) and edits[k][1] <= pos:
                shift += len(edits[k][2]) - (edits[k][1] - edits[k][0])
                k += 1
            if k < len(edits) and edits[k][0] <= pos:  # inside an edit: its characters are replaced
                pos = edits[k][1]
                continue
            end = min(b, edits[k][0]) if k < len(edits) else b
            out.append((pos + shift, end + shift, orig + pos - a))
            pos = end
    return out


def edits_between(original: int, kept: Sequence[Kept], text: str) -> list[Edit]:
    """The edits of an original text of length `original` that give `text`, whose runs of original
    characters are `kept`: what lies between two runs replaces what lay between them."""
    out: list[Edit] = []
    orig, at = 0, 0
    for a, b, start in [*kept, (len(text), len(text), original)]:
        if start > orig or a > at:
            out.append((orig, start, text[at:a]))
        orig, at = start + b - a, b
    return out
