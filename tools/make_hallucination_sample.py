"""Dev tool: tests/data/hallucination_sample.jsonl, a small labelled sample of the train side of the
hallucination data (15 compliant and 15 not per file, sources under 3,000 characters, fixed seed; SummEdits and
XSumFaith left out: copyrighted sources) for
the heads' regression test. Rows from train/ only: the heads saw them, so the bound guards against a
broken scorer, not for quality (the test side's figures are in the README's model card).

    .venv/bin/python tools/make_hallucination_sample.py ../shared/data/hallucination/train
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.scoring.hallucination import HEADS  # noqa: E402
from gateway.scoring.hallucination_eval import task_rows  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "hallucination_sample.jsonl"
PER_LABEL, MAX_REF_CHARS, SEED = 15, 3000, 20261207
# Their sources are news, earnings calls and BBC articles under their publishers' copyright (the data
# README): not copied into the repository.
EXCLUDED = ("consistency_summedits", "consistency_xsumfaith")


def main(data: Path) -> None:
    rng = random.Random(SEED)
    lines = []
    for head in HEADS:
        rows = task_rows(data, head)
        for stem in sorted(set(rows.files) - set(EXCLUDED)):
            for label in (1, 0):
                pool = [i for i, (f, y, r, c) in enumerate(zip(rows.files, rows.labels, rows.refs, rows.contexts))
                        if f == stem and y == label and len(r) + len(c) < MAX_REF_CHARS]
                if len(pool) < PER_LABEL or not any(rows.labels[i] != label for i in range(len(rows.files))
                                                    if rows.files[i] == stem):
                    continue
                for i in rng.sample(pool, PER_LABEL):
                    row = {"head": head, "file": stem, "label": int(rows.labels[i]), "text": rows.texts[i],
                           "reference": rows.refs[i]}
                    if rows.contexts[i]:
                        row["context"] = rows.contexts[i]
                    lines.append(json.dumps(row))
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {len(lines)} rows to {OUT}")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
