"""Dev tool: the relevance policy's calibrated threshold (RELEVANCE_CALIBRATED), reproducibly.

    .venv/bin/python tools/fit_relevance.py ../shared/data/train [--precision int8|fp32]

Matched (question, answer) pairs from the train split's GPTFuzz responses against the same answers
shuffled onto other questions: the best-F1 cut of the relevance score (cosine of the answer's
embedding to the question's, clipped at 0, as RelevanceMetric scores the output side). English rows
only, 600 pairs, fixed seed. Prints the cut, F1, AUC and the class means.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np

from gateway.scoring.encoder import Encoder, EncoderOptions
from gateway.scoring.heads import pooled


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("train", type=Path)
    parser.add_argument("--precision", choices=("fp32", "int8"), default="int8")
    parser.add_argument("--pairs", type=int, default=600)
    args = parser.parse_args()
    rows = [json.loads(line) for line in (args.train / "jailbroken_response_gptfuzz.jsonl").open()]
    rows = [r for r in rows if r.get("question") and r.get("lang", "en") == "en"]
    rng = random.Random(20261121)
    picked = rng.sample(rows, min(args.pairs, len(rows)))
    questions = [r["question"] for r in picked]
    answers = [r["text"] for r in picked]
    shuffled = questions[1:] + questions[:1]  # every answer onto another row's question
    keep = [i for i in range(len(picked)) if shuffled[i] != questions[i]]
    encoder = Encoder.load(options=EncoderOptions(precision=args.precision))
    q = np.stack([pooled(v) for v in encoder.embed(questions)])
    a = np.stack([pooled(v) for v in encoder.embed(answers)])
    s = np.stack([pooled(v) for v in encoder.embed(shuffled)])
    matched = np.clip((q * a).sum(1), 0, 1)
    other = np.clip((s * a).sum(1)[keep], 0, 1)
    scores = np.concatenate([matched, other])
    labels = np.concatenate([np.ones(len(matched)), np.zeros(len(other))])  # 1 = relevant
    best = (0.0, 0.0)
    for cut in np.unique(np.round(scores, 3)):
        pred = scores >= cut
        tp = float((pred & (labels == 1)).sum())
        f1 = 2 * tp / max(pred.sum() + (labels == 1).sum(), 1)
        best = max(best, (f1, float(cut)))
    order = np.argsort(scores)
    ranks = np.empty(len(scores))
    ranks[order] = np.arange(1, len(scores) + 1)
    n1, n0 = len(matched), len(other)
    auc = (ranks[labels == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)
    print(f"{args.precision}: {n1} matched, {n0} shuffled pairs; means {matched.mean():.3f} vs {other.mean():.3f}; "
          f"best-F1 cut {best[1]:.3f} (F1 {best[0]:.3f}), AUC {auc:.3f}")


if __name__ == "__main__":
    main()
