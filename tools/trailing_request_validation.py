"""The validation behind reading a long text's trailing request apart (README, model card).

Written apart from training and test: held-out requests of a detector (its positives and OpenAssistant's
everyday prompts, under 400 characters) pasted after held-out long benign documents (OWASP cheat sheets,
XQuAD passages, Arena-Hard prompts, 600-3,000 characters), all from the detector's held-out fifth of
train/ (`detector_data.training_split`). Prints recall and the everyday share flagged at the shipped
threshold for the request alone, after a document scored whole, and after a document scored with its
trailing request.

    .venv/bin/python tools/trailing_request_validation.py --data ../shared/data/train --detector harmful

The whole-text figure is the text's own score (`_score_plain`); the last one is `score_texts`, which
serves and evaluates with every view, so encoded texts may add to it.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from gateway.config.schema import ScoringConfig
from gateway.scoring import detectors as D
from gateway.scoring.detector_data import SEED, training_split
from gateway.scoring.encoder import Encoder, EncoderOptions

DOCUMENT_SOURCES = ("benign_owasp_cheatsheets", "benign_xquad_multilingual", "benign_arena_hard_v0.1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the train/ directory")
    parser.add_argument("--detector", choices=D.DETECTORS, required=True)
    parser.add_argument("--rows", type=int, default=300, help="requests of each kind (default 300)")
    args = parser.parse_args()
    layers = ScoringConfig().layers_for(args.detector)
    encoder = Encoder.load(options=EncoderOptions(layers=layers))
    head = D.load_detector(args.detector, layers=layers)
    split = training_split(args.data, args.detector)
    hold = [(split.texts[i], int(split.labels[i]), split.sources[i]) for i in split.hold]
    docs = [t for t, y, s in hold if y == 0 and s in DOCUMENT_SOURCES and 600 < len(t) < 3000]
    pos = [t for t, y, s in hold if y == 1 and len(t) < 400 and not s.startswith(("hand:", "synthetic"))]
    neg = [t for t, y, s in hold if y == 0 and s.startswith("benign_oasst") and len(t) < 400]
    rng = random.Random(SEED)
    n = min(args.rows, len(pos), len(neg))
    pos, neg = rng.sample(pos, n), rng.sample(neg, n)
    pasted_pos = [f"{rng.choice(docs)}\n\n{r}" for r in pos]
    pasted_neg = [f"{rng.choice(docs)}\n\n{r}" for r in neg]
    t = head.threshold

    def rates(p: np.ndarray, q: np.ndarray) -> str:
        return f"recall {(p > t).mean():.3f}, everyday flagged {(q > t).mean():.3f}"

    print(f"{args.detector}: {len(docs)} documents, {n} requests of each kind, threshold {t:.3f}")
    print("request alone:                    ", rates(D.score_texts(head, encoder, pos)[0],
                                                       D.score_texts(head, encoder, neg)[0]))
    print("after a document, the text alone: ", rates(D._score_plain(head, encoder, pasted_pos)[0],
                                                       D._score_plain(head, encoder, pasted_neg)[0]))
    print("after a document, as served:      ", rates(D.score_texts(head, encoder, pasted_pos)[0],
                                                       D.score_texts(head, encoder, pasted_neg)[0]))


if __name__ == "__main__":
    main()
