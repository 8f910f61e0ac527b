"""Dev tool (an experiment, not shipped): does scoring a long text per segment help a built-in detector?

    .venv/bin/python tools/segment_score_experiment.py --data ../shared/data/train --detector prompt_injection \\
        [--sentences 2] [--windows 16]

On the detector's held-out fifth of train/ (`detector_data.training_split`, never test/), scored as the
gateway scores it (3-layer heads, int8, gate then encoder), it compares the shipped whole-text score with
two variants, each recalibrated to the same false-positive budget per everyday file
(`detector_training.budget_threshold`, with its margin):
- `--windows N`: every 256-token window of a long text read (up to N), the most severe kept instead of
  the mean embedding;
- `--sentences K`: each run of K sentences (per paragraph) of a text over 400 characters scored as a text
  of its own, the most severe kept with the whole text's score.
Prints AUC, TPR at 1% FPR, the recalibrated threshold, recall per positive source and the everyday files'
flagged shares. The figures of 2026-12-07 are in docs/detectors-history.md ("Scores per window").
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.scoring.detector_data import training_split  # noqa: E402
from gateway.scoring.detector_training import budget_threshold, with_margin  # noqa: E402
from gateway.scoring.detectors import _score_plain, load_detector  # noqa: E402
from gateway.scoring.encoder import Encoder, EncoderOptions, sentence_spans  # noqa: E402
from gateway.scoring.heads import Head, lexical_from_ids  # noqa: E402
from gateway.scoring.stats import roc_auc, tpr_at_fpr  # noqa: E402


def segments(text: str, per: int) -> list[str]:
    """Runs of `per` sentences, per paragraph, of a text over 400 characters (at most 64)."""
    if len(text) <= 400:
        return []
    out = []
    for para in (p for p in re.split(r"\n\s*\n", text) if p.strip()):
        sents = [para[a:b] for a, b in sentence_spans(para)] or [para]
        for i in range(0, len(sents), per):
            seg = " ".join(s.strip() for s in sents[i:i + per])
            if len(seg) > 20:
                out.append(seg)
    return out[:64] if len(out) > 1 else []


def by_segment(head: Head, encoder: Encoder, texts: list[str], whole: np.ndarray, per: int) -> np.ndarray:
    segs = [(k, s) for k, t in enumerate(texts) for s in segments(t, per)]
    print(f"{len(segs)} segments of {len({k for k, _ in segs})} texts", flush=True)
    scores = whole.copy()
    if segs:
        flat, _ = _score_plain(head, encoder, [s for _, s in segs])
        np.maximum.at(scores, np.array([k for k, _ in segs]), flat)
    return scores


def by_window(head: Head, texts: list[str], whole: np.ndarray, gated: np.ndarray, windows: int) -> np.ndarray:
    encoder = Encoder.load(options=EncoderOptions(precision="int8", layers=3, max_windows=windows))
    ids = encoder.token_ids(texts)
    long = [k for k, i in enumerate(ids) if len(i) > encoder.max_tokens - 2 and not gated[k]]
    vocab = encoder.tokenizer.get_vocab_size()
    scores = whole.copy()
    for k, vectors in zip(long, encoder.embed([texts[k] for k in long])):
        lex = head.lexical(lexical_from_ids(ids[k], vocab)) if head.needs_lexical else None
        sentence = head.sentence_logit(encoder.sentence_features(texts[k])) if head.sentences else None
        each = [head.score(v / max(float(np.linalg.norm(v)), 1e-9), lex, sentence) for v in vectors]
        scores[k] = max(max(each), whole[k])
    return scores


def report(label: str, scores: np.ndarray, y: np.ndarray, sources: list[str]) -> None:
    threshold = with_margin(budget_threshold(scores, sources), scores[y == 1])
    print(f"\n{label}: AUC {roc_auc(scores, y):.4f} TPR@1% {tpr_at_fpr(scores, y, .01):.3f} "
          f"recalibrated threshold {threshold:.4f}; all positives recall {np.mean(scores[y == 1] > threshold):.3f}")
    rows: dict[str, list[tuple[bool, int]]] = collections.defaultdict(list)
    for s, label_, source in zip(scores, y, sources):
        rows[source].append((bool(s > threshold), int(label_)))
    print("  recall", " ".join(f"{src}:{np.mean([f for f, lab in r if lab == 1]):.3f}"
                               for src, r in sorted(rows.items()) if sum(lab for _, lab in r) >= 20))
    print("  everyday flagged", " ".join(f"{src}:{np.mean([f for f, lab in r if lab == 0]):.3f}"
                                         for src, r in sorted(rows.items()) if src.startswith("benign")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="the train/ directory")
    parser.add_argument("--detector", default="prompt_injection")
    parser.add_argument("--sentences", type=int, default=2)
    parser.add_argument("--windows", type=int, default=16)
    args = parser.parse_args()
    split = training_split(args.data, args.detector)
    head = load_detector(args.detector, layers=3)
    encoder = Encoder.load(options=EncoderOptions(precision="int8", layers=3))
    texts = [split.texts[i] for i in split.hold]
    y = split.labels[split.hold]
    sources = [split.sources[i] for i in split.hold]
    started = time.perf_counter()
    whole, gated = _score_plain(head, encoder, texts)
    variants = {"whole text (shipped)": whole,
                f"most severe of up to {args.windows} windows": by_window(head, texts, whole, gated, args.windows),
                f"most severe segment of {args.sentences} sentences": by_segment(head, encoder, texts, whole,
                                                                                 args.sentences)}
    print(f"{len(texts)} held-out rows, {time.perf_counter() - started:.0f} s")
    for label, scores in variants.items():
        report(label, scores, y, sources)


if __name__ == "__main__":
    main()
