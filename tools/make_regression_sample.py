"""Write tests/data/detector_regression.jsonl: a small fixed sample of each built-in detector's held-out
fifth of train/ (never test/), everyday prompts and attacks, for the regression test that keeps a
retraining that flags more ordinary traffic, or catches fewer attacks, from landing.

    .venv/bin/python tools/make_regression_sample.py --data ../shared/data/train

Per detector: BENIGN rows spread evenly over the held-out everyday (benign_*) files, and ATTACKS rows
spread evenly over the held-out positive files. Fixed seed; the same split as `models train-detectors`
(`detector_data.training_split`), so none of these rows was trained on by the head that is tested on them.
"""

from __future__ import annotations

import argparse
import json
import random
from collections import defaultdict
from pathlib import Path

from gateway.scoring.detector_data import SEED, training_split
from gateway.scoring.detector_training import is_traffic_source
from gateway.scoring.detectors import DETECTORS

BENIGN, ATTACKS = 200, 100
OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "detector_regression.jsonl"


def spread(groups: dict[str, list[str]], total: int, rng: random.Random) -> list[tuple[str, str]]:
    """`total` rows taken round-robin over the groups (each shuffled), so no one file dominates."""
    pools = {k: rng.sample(v, len(v)) for k, v in sorted(groups.items())}
    out: list[tuple[str, str]] = []
    while len(out) < total and any(pools.values()):
        for key in sorted(pools):
            if pools[key] and len(out) < total:
                out.append((key, pools[key].pop()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the train/ directory")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    rng = random.Random(SEED)
    rows = []
    for name in DETECTORS:
        split = training_split(args.data, name)
        benign: dict[str, list[str]] = defaultdict(list)
        attacks: dict[str, list[str]] = defaultdict(list)
        for i in split.hold:
            source, text = split.sources[i], split.texts[i]
            if len(text) > 4000:  # keep the file and the test small
                continue
            if split.labels[i] == 1 and not source.startswith(("hand:", "synthetic")):
                attacks[source].append(text)
            elif split.labels[i] == 0 and is_traffic_source(source):
                benign[source].append(text)
        for label, picked in ((0, spread(benign, BENIGN, rng)), (1, spread(attacks, ATTACKS, rng))):
            rows += [{"detector": name, "label": label, "source": s, "text": t} for s, t in picked]
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
