"""Issue 23 item 1 figures: evasion detection, false positives on benign prompts, and speed, for the
pattern metrics with their evasion views on (the default) and off (`normalize: false, decode: false`,
the matching as it was before the views).

    .venv/bin/python tools/evasion_report.py [--data ../shared/data] [--split train|test] [--limit N]

Detection: every transform of tests/metrics/evasion_cases.py applied to each canary, in three contexts;
a case counts when the metric reports the canary with spans covering exactly the disguised characters.
False positives: the share of benign prompts (`benign_*.jsonl` of the split) on which `pii` (all
entities) reports anything, and on which the canary `regex`/`contains` metrics fire (none should).
Speed: microseconds per `measure` call on English prose of 1K and 4K characters (median of 7 runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.metrics.contains import ContainsMetric  # noqa: E402
from gateway.metrics.pii import PiiMetric  # noqa: E402
from gateway.metrics.regex import RegexMetric  # noqa: E402
from tests.metrics.evasion_cases import CANARIES, CONTEXTS, PATTERNS, PII_LABELS, TRANSFORMS  # noqa: E402

OFF = {"normalize": False, "decode": False}


def metrics(views: bool) -> dict[str, object]:
    extra = {} if views else OFF
    return {
        "regex": RegexMetric.from_params({"patterns": [{"name": n, "pattern": p} for n, p in PATTERNS.items()], **extra}),
        "contains": ContainsMetric.from_params({"keywords": list(CANARIES.values()), **extra}),
        "pii": PiiMetric.from_params(extra),
    }


def detection(views: bool) -> dict[str, tuple[int, int, list[str]]]:
    ms = metrics(views)
    out = {}
    for name, metric in ms.items():
        hit = total = 0
        missed = []
        for tname, transform in TRANSFORMS.items():
            for cname, canary in CANARIES.items():
                if name == "pii" and cname not in PII_LABELS:
                    continue
                label = {"regex": cname, "contains": canary, "pii": PII_LABELS.get(cname)}[name]
                for prefix, suffix in CONTEXTS:
                    disguised = transform(canary)
                    spans = [s for s in metric.measure(prefix + disguised + suffix).spans if s.label == label]
                    total += 1
                    if spans and min(s.start for s in spans) == len(prefix) \
                            and max(s.end for s in spans) == len(prefix) + len(disguised):
                        hit += 1
                    else:
                        missed.append(f"{tname}/{cname}")
        out[name] = (hit, total, sorted(set(missed)))
    return out


def benign(data: Path, split: str, limit: int) -> list[tuple[str, str]]:
    rows = []
    for path in sorted((data / split).glob("benign_*.jsonl")):
        with path.open() as f:
            for k, line in enumerate(f):
                if k >= limit:
                    break
                rows.append((path.name, json.loads(line)["text"]))
    return rows


def false_positives(rows: list[tuple[str, str]], views: bool) -> dict[str, tuple[int, Counter]]:
    ms = metrics(views)
    out = {}
    for name, metric in ms.items():
        fired = 0
        labels: Counter = Counter()
        for _, text in rows:
            value = metric.measure(text).value
            if value:
                fired += 1
                labels.update(value)
        out[name] = (fired, labels)
    return out


PROSE = ("The committee reviewed the quarterly report and agreed that the new onboarding process had reduced "
         "support tickets by a noticeable margin. Several members asked whether the same approach could be "
         "applied to the billing team, where customers often wait too long for a reply. ")


def speed(views: bool) -> dict[str, dict[int, float]]:
    ms = metrics(views)
    out: dict[str, dict[int, float]] = {}
    for name, metric in ms.items():
        out[name] = {}
        for size in (1000, 4000):
            text = (PROSE * (size // len(PROSE) + 1))[:size]
            runs = []
            for _ in range(7):
                n = 300
                t0 = time.perf_counter()
                for _ in range(n):
                    metric.measure(text)
                runs.append((time.perf_counter() - t0) / n * 1e6)
            out[name][size] = statistics.median(runs)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--split", default="train", choices=["train", "test"])
    parser.add_argument("--limit", type=int, default=2000, help="rows per file")
    parser.add_argument("--skip-speed", action="store_true")
    args = parser.parse_args()

    print(f"evasion set: {len(TRANSFORMS)} transforms x {len(CANARIES)} canaries x {len(CONTEXTS)} contexts")
    for views in (False, True):
        for name, (hit, total, missed) in detection(views).items():
            print(f"  detection views={'on ' if views else 'off'} {name:8s} {hit}/{total} = {hit / total:.1%}"
                  + (f"  missed: {', '.join(missed[:12])}{' ...' if len(missed) > 12 else ''}" if views else ""))
    rows = benign(args.data, args.split, args.limit)
    files = sorted({f for f, _ in rows})
    print(f"benign prompts: {len(rows)} from {args.split}/ ({', '.join(files)})")
    before, after = false_positives(rows, False), false_positives(rows, True)
    for name in before:
        (b, bl), (a, al) = before[name], after[name]
        print(f"  fires on benign: {name:8s} views off {b} ({b / len(rows):.2%})  views on {a} ({a / len(rows):.2%})"
              f"  labels off {dict(bl)} on {dict(al)}")
    if after["pii"][0] != before["pii"][0]:
        off = metrics(False)["pii"]
        on = metrics(True)["pii"]
        for f, text in rows:
            extra = on.measure(text).value - off.measure(text).value  # type: ignore[attr-defined]
            if extra:
                spans = [text[s.start:s.end] for s in on.measure(text).spans if s.label in extra]  # type: ignore[attr-defined]
                print(f"    new pii {sorted(extra)} in {f}: {spans[:3]!r}")
    if not args.skip_speed:
        slow, fast = speed(False), speed(True)
        for name in slow:
            print(f"  speed {name:8s} " + "  ".join(
                f"{size} chars: off {slow[name][size]:.1f} us, on {fast[name][size]:.1f} us" for size in (1000, 4000)))


if __name__ == "__main__":
    main()
