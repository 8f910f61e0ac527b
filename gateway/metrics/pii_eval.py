"""Span-level evaluation of the `pii` metric on a Presidio-format JSONL file.

    python -m gateway.metrics.pii_eval PATH.jsonl [--types T,T] [--min-score S] [--errors N]

Each line: {"text": ..., "spans": [{"start", "end", "type"}, ...], ...}; a row without spans is a
PII-free negative. For every entity type the metric can emit (or those given with --types), prints
gold and predicted counts and precision / recall / F1, twice:

  exact    a prediction counts only if start, end and type equal a gold span's;
  overlap  a prediction counts if it overlaps a gold span of the same type (one-to-one).

Gold types the metric never emits (PERSON, LOCATION, ...) are left out. `--min-score` drops spans
scoring below it (0.5 shows what a policy at its calibrated threshold acts on); `--errors N` prints up
to N false positives and false negatives per type (overlap sense), to study them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from gateway.metrics.pii import ENTITY_TYPES, PiiMetric


@dataclass
class Counts:
    gold: int = 0
    pred: int = 0
    exact: int = 0  # predictions equal to a gold span
    overlap_pred: int = 0  # predictions overlapping a gold span (one-to-one)
    overlap_gold: int = 0  # gold spans overlapped by a prediction (one-to-one)
    false_pos: list[str] = field(default_factory=list)
    false_neg: list[str] = field(default_factory=list)


def _prf(tp_pred: int, pred: int, tp_gold: int, gold: int) -> tuple[float, float, float]:
    precision = tp_pred / pred if pred else 0.0
    recall = tp_gold / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _match(gold: list[tuple[int, int]], pred: list[tuple[int, int]]) -> tuple[int, set[int], set[int]]:
    """Exact matches, and the one-to-one overlap matching as (matched gold indices, matched pred indices)."""
    exact = len(set(gold) & set(pred))
    used_gold: set[int] = set()
    used_pred: set[int] = set()
    for p, (ps, pe) in enumerate(pred):  # exact pairs first, then any overlap
        for g, span in enumerate(gold):
            if g not in used_gold and span == (ps, pe):
                used_gold.add(g)
                used_pred.add(p)
                break
    for p, (ps, pe) in enumerate(pred):
        if p in used_pred:
            continue
        for g, (gs, ge) in enumerate(gold):
            if g not in used_gold and ps < ge and gs < pe:
                used_gold.add(g)
                used_pred.add(p)
                break
    return exact, used_gold, used_pred


def evaluate(rows: Iterable[dict], types: frozenset[str], min_score: float = 0.0,
             keep_errors: int = 0) -> tuple[dict[str, Counts], dict[str, float]]:
    metric = PiiMetric(types)
    counts: dict[str, Counts] = defaultdict(Counts)
    stats = {"rows": 0, "negative_rows": 0, "negative_rows_flagged": 0, "seconds": 0.0, "chars": 0}
    for row in rows:
        text = row["text"]
        started = time.perf_counter()
        value = metric.measure(text)
        stats["seconds"] += time.perf_counter() - started
        stats["rows"] += 1
        stats["chars"] += len(text)
        gold: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for span in row.get("spans") or ():
            if span["type"] in types:
                gold[span["type"]].append((span["start"], span["end"]))
        pred: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for span in value.spans:
            if span.score >= min_score:
                pred[span.label].append((span.start, span.end))
        if not row.get("spans"):
            stats["negative_rows"] += 1
            stats["negative_rows_flagged"] += bool(pred)
        for label in set(gold) | set(pred):
            c, g, p = counts[label], gold[label], pred[label]
            exact, used_gold, used_pred = _match(g, p)
            c.gold += len(g)
            c.pred += len(p)
            c.exact += exact
            c.overlap_gold += len(used_gold)
            c.overlap_pred += len(used_pred)
            if keep_errors:
                for i, (s, e) in enumerate(p):
                    if i not in used_pred and len(c.false_pos) < keep_errors:
                        c.false_pos.append(f"{text[s:e]!r} in {text[max(0, s - 40):e + 20]!r}")
                for i, (s, e) in enumerate(g):
                    if i not in used_gold and len(c.false_neg) < keep_errors:
                        c.false_neg.append(f"{text[s:e]!r} in {text[max(0, s - 40):e + 20]!r}")
    return counts, stats


def report(counts: dict[str, Counts], stats: dict[str, float], types: Sequence[str], out: TextIO = sys.stdout) -> None:
    header = (f"{'type':<18} {'gold':>5} {'pred':>5} | {'exact P':>7} {'R':>6} {'F1':>6} | "
              f"{'overlap P':>9} {'R':>6} {'F1':>6}")
    print(header, file=out)
    print("-" * len(header), file=out)
    total = Counts()
    for label in types:
        c = counts.get(label)
        if c is None or not (c.gold or c.pred):
            continue
        for name in ("gold", "pred", "exact", "overlap_pred", "overlap_gold"):
            setattr(total, name, getattr(total, name) + getattr(c, name))
        _row(label, c, out)
    _row("all (micro)", total, out)
    rows, seconds = stats["rows"], stats["seconds"]
    print(f"\nrows {rows:.0f}, negatives (no gold span) {stats['negative_rows']:.0f}, negatives with a "
          f"prediction {stats['negative_rows_flagged']:.0f}", file=out)
    if rows:
        print(f"measure(): {seconds / rows * 1e6:.1f} us per row on average "
              f"({stats['chars'] / rows:.0f} chars per row)", file=out)


def _row(label: str, c: Counts, out: TextIO) -> None:
    ep, er, ef = _prf(c.exact, c.pred, c.exact, c.gold)
    op, orr, of = _prf(c.overlap_pred, c.pred, c.overlap_gold, c.gold)
    print(f"{label:<18} {c.gold:>5} {c.pred:>5} | {ep:>7.3f} {er:>6.3f} {ef:>6.3f} | "
          f"{op:>9.3f} {orr:>6.3f} {of:>6.3f}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.metrics.pii_eval", description=__doc__.split("\n")[0])
    parser.add_argument("path", help="Presidio-format JSONL file")
    parser.add_argument("--types", help="comma-separated entity types (default: all the metric emits)")
    parser.add_argument("--min-score", type=float, default=0.0, help="ignore spans scoring below this")
    parser.add_argument("--errors", type=int, default=0, help="print up to N false positives/negatives per type")
    args = parser.parse_args(argv)
    if args.types:
        chosen = [t.strip() for t in args.types.split(",") if t.strip()]
        unknown = [t for t in chosen if t not in ENTITY_TYPES]
        if unknown:
            parser.error(f"unknown type(s) {', '.join(unknown)}; known: {', '.join(sorted(ENTITY_TYPES))}")
        types = frozenset(chosen)
    else:
        types = ENTITY_TYPES
    with open(args.path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    counts, stats = evaluate(rows, types, args.min_score, args.errors)
    order = sorted(types, key=lambda t: (-(counts[t].gold if t in counts else 0), t))
    print(f"{args.path}: {len(rows)} rows" + (f", spans scoring >= {args.min_score}" if args.min_score else ""))
    report(counts, stats, order)
    if args.errors:
        for label in order:
            c = counts.get(label)
            if c is None or not (c.false_pos or c.false_neg):
                continue
            print(f"\n{label}")
            for line in c.false_pos:
                print(f"  FP {line}")
            for line in c.false_neg:
                print(f"  FN {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
