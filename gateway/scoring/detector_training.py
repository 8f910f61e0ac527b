"""`guardrail-gateway models train-detectors`: fit each built-in detector's head on its training rows
(`detector_data.py`), then choose its gate and threshold on the held-out 20% of train/, never on test/.

It needs scikit-learn (the `train` extra). A head is three logistic regressions: a lexical one (token
counts), the full one (the encoder's embedding plus the lexical score) and the gate (static embeddings
plus the lexical score), which lets most everyday texts skip the encoder. On the held-out fifth, scored
as served (`detectors.with_views`), the gate keeps GATE_RECALL of the positives and the threshold flags
at most FP_BUDGET of each everyday source.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gateway.scoring.detector_data import RECIPES, SEED, TrainingSplit, training_split
from gateway.scoring.detectors import DETECTORS, detector_file, sentence_logit, with_views
from gateway.scoring.encoder import Encoder
from gateway.scoring.heads import LEX_DIM, Head, lexical_indices, pooled
from gateway.scoring.stats import best_f1_threshold, f1, roc_auc, tpr_at_fpr

GATE_RECALL = 0.995  # the lexical gate passes at least this share of held-out positives to the encoder
# The shipped threshold flags at most this share of each everyday source of the held-out fifth of train/.
FP_BUDGET = 0.01


class EmbeddingCache:
    """Embeddings of training texts on disk (keyed by encoder version + text), so reruns are quick."""

    def __init__(self, encoder: Encoder, directory: Path | None) -> None:
        self.encoder = encoder
        self.path = directory / f"train-embeddings-{encoder.version}.npz" if directory else None
        self.vectors: dict[str, np.ndarray] = {}
        if self.path and self.path.is_file():
            with np.load(self.path) as data:
                self.vectors = dict(zip(data["keys"].tolist(), data["vectors"]))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [hashlib.blake2b(t.encode(), digest_size=12).hexdigest() for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in self.vectors}.items())
        for start in range(0, len(missing), 512):
            part = missing[start:start + 512]
            for (key, _), windows in zip(part, self.encoder.embed([t for _, t in part])):
                self.vectors[key] = pooled(windows)
        if missing and self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.path, keys=np.array(list(self.vectors)), vectors=np.stack(list(self.vectors.values())))
        return np.stack([self.vectors[k] for k in keys]).astype(np.float32)


def lexical_matrix(encoder: Encoder, texts: Sequence[str]):
    from scipy.sparse import csr_matrix

    rows = lexical_indices(encoder.tokenizer, texts)
    indptr = np.cumsum([0, *(len(r) for r in rows)])
    data: Any = np.concatenate([np.full(len(r), 1.0 / np.sqrt(max(len(r), 1)), np.float32) for r in rows]) if rows else []
    return csr_matrix((data, np.concatenate(rows) if rows else [], indptr), shape=(len(rows), LEX_DIM))


def is_traffic_source(source: str) -> bool:
    """Held-out rows the false-positive budget is measured on: every everyday (benign_*) file."""
    return source.startswith("benign_")


def budget_cuts(scores: np.ndarray, sources: Sequence[str], budget: float = FP_BUDGET,
                min_rows: int = 50) -> dict[str, float]:
    """Per everyday (benign_*) source: the lowest threshold at which it flags at most `budget` of its
    rows (a text is flagged when its score is above the threshold). Sources with fewer than `min_rows`
    rows are pooled as "small sources"."""
    by_source: dict[str, list[float]] = {}
    for score, source in zip(scores.tolist(), sources):
        if is_traffic_source(source):
            by_source.setdefault(source, []).append(score)
    pools = {k: v for k, v in by_source.items() if len(v) >= min_rows}
    small = [s for rows in by_source.values() if len(rows) < min_rows for s in rows]
    if small:
        pools["small sources"] = small
    cuts = {}
    for source, rows in pools.items():
        ranked = np.sort(np.asarray(rows))[::-1]
        allowed = int(np.floor(budget * len(ranked)))
        cuts[source] = float(ranked[allowed]) if allowed < len(ranked) else float(ranked[-1])
    return cuts


def budget_threshold(scores: np.ndarray, sources: Sequence[str], budget: float = FP_BUDGET,
                     min_rows: int = 50) -> float:
    """The lowest threshold at which no everyday source flags more than `budget` of its rows."""
    cuts = budget_cuts(scores, sources, budget, min_rows)
    if not cuts:
        raise ValueError("no held-out everyday (benign_*) rows to calibrate the threshold on")
    return max(cuts.values())


def with_margin(cut: float, positives: np.ndarray) -> float:
    """Halfway from `cut` to the lowest positive score above it: the same held-out recall, with room for
    everyday texts that score a little above the held-out ones."""
    above = positives[positives > cut]
    return (cut + float(above.min())) / 2 if above.size else cut


def train_detector(name: str, encoder: Encoder, data_dir: Path, cache: EmbeddingCache, log=print) -> Head:
    """A detector's head fitted on its training split, with its gate and threshold chosen on the held-out fifth."""
    started = time.perf_counter()
    split = training_split(data_dir, name)
    lex = lexical_matrix(encoder, split.texts)
    emb = cache.embed(split.texts)
    log(f"{name}: {len(split.texts)} rows ({int(split.labels.sum())} positive), embedded in "
        f"{time.perf_counter() - started:.0f} s")
    static = encoder.static(encoder.token_ids(split.texts))
    head, lexical = _fit(name, split, lex, emb, static)
    held = _held_out(head, lexical.decision_function(lex[split.hold]), encoder, split, emb, static)
    threshold = with_margin(budget_threshold(held.scores, held.sources), held.scores[held.labels == 1])
    meta = {"encoder": encoder.version, "trained_rows": int(len(split.train)), "holdout_rows": int(len(split.hold)),
            **_holdout_meta(held, threshold), "seed": SEED, "train_seconds": round(time.perf_counter() - started, 1)}
    _log_holdout(name, held, threshold, meta, log)
    return replace(head, gate=held.gate, threshold=threshold, meta=meta)


def _fit(name: str, split: TrainingSplit, lex: Any, emb: np.ndarray, static: np.ndarray) -> tuple[Head, Any]:
    """The head (no gate or threshold yet) fitted on the training rows, and its lexical regression. The
    full and gate regressions take the lexical score as a feature: out-of-fold, so they do not learn to
    trust a score that saw their own rows."""
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    idx_train, labels, weights = split.train, split.labels, split.weights
    lexical = LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000, solver="liblinear", tol=1e-3)
    oof = np.zeros(len(idx_train))
    for fit, held in StratifiedKFold(3, shuffle=True, random_state=SEED).split(idx_train, labels[idx_train]):
        fold = clone(lexical).fit(lex[idx_train[fit]], labels[idx_train[fit]], sample_weight=weights[idx_train[fit]])
        oof[held] = fold.decision_function(lex[idx_train[held]])
    lexical.fit(lex[idx_train], labels[idx_train], sample_weight=weights[idx_train])
    full = LogisticRegression(C=2.0, class_weight="balanced", max_iter=5000)
    full.fit(np.hstack([emb[idx_train], oof[:, None]]), labels[idx_train], sample_weight=weights[idx_train])
    first = LogisticRegression(C=2.0, class_weight="balanced", max_iter=5000)
    first.fit(np.hstack([static[idx_train], oof[:, None]]), labels[idx_train], sample_weight=weights[idx_train])
    head = Head(name, full.coef_[0].astype(np.float32), float(full.intercept_[0]),
                lexical.coef_[0].astype(np.float32), float(lexical.intercept_[0]),
                gate_w=first.coef_[0].astype(np.float32), gate_b=float(first.intercept_[0]),
                sentences=RECIPES[name].sentences)
    return head, lexical


@dataclass(frozen=True)
class HeldOut:
    """The held-out fifth scored as served: the gate chosen on it, then each text's score (the gate's
    where it decides, else the encoder's, raised by its views), the gate's own score, label and source."""

    texts: list[str]
    scores: np.ndarray
    gate_scores: np.ndarray
    labels: np.ndarray
    sources: list[str]
    gate: float
    views: int  # views of the texts scored

    @property
    def negatives_gated(self) -> float:
        """The share of negatives the gate decides without the encoder."""
        return float((self.gate_scores[self.labels == 0] < self.gate).mean())


def _held_out(head: Head, lexical: np.ndarray, encoder: Encoder, split: TrainingSplit, emb: np.ndarray,
              static: np.ndarray) -> HeldOut:
    """`lexical`: the lexical regression's scores of the held-out rows."""
    idx = split.hold
    texts = [split.texts[i] for i in idx]
    sentences = [sentence_logit(head, encoder, text) for text in texts]
    full = np.array([head.score(e, float(z), s) for e, z, s in zip(emb[idx], lexical, sentences)])
    gate_scores = np.array([head.gate_score(v, float(z), s) for v, z, s in zip(static[idx], lexical, sentences)])
    y = split.labels[idx]
    gate = float(np.quantile(gate_scores[y == 1], 1.0 - GATE_RECALL))
    # as served: a text's views (decoded forms, the trailing request) count too
    scores, views = with_views(replace(head, gate=gate), encoder, texts, np.where(gate_scores < gate, gate_scores, full))
    return HeldOut(texts, scores, gate_scores, y, [split.sources[i] for i in idx], gate, views)


def _holdout_meta(held: HeldOut, threshold: float) -> dict[str, Any]:
    """What a head records of its held-out fifth (its `meta`, beside the encoder and row counts)."""
    combined, y = held.scores, held.labels
    best_cut, best_f1 = best_f1_threshold(combined, y)
    flagged = {}
    for source in sorted(set(held.sources)):
        mask = np.array([s == source for s in held.sources])
        flagged[source] = {"rows": int(mask.sum()), "flagged": round(float((combined[mask] > threshold).mean()), 4)}
    return {"fp_budget": FP_BUDGET, "calibration": "each held-out benign_* file of train/ (those under 50 rows "
            "pooled) flags at most fp_budget", "holdout_f1": round(f1(combined > threshold, y), 4),
            "holdout_recall": round(float((combined[y == 1] > threshold).mean()), 4),
            "holdout_auc": round(roc_auc(combined, y), 4), "holdout_tpr_at_1pct_fpr": round(tpr_at_fpr(combined, y, 0.01), 4),
            "holdout_best_f1": round(best_f1, 4), "holdout_best_f1_threshold": round(best_cut, 4),
            "holdout_by_source": flagged, "holdout_negatives_gated": round(held.negatives_gated, 4)}


def _log_holdout(name: str, held: HeldOut, threshold: float, meta: dict[str, Any], log) -> None:
    """The calibration's log: the held-out figures, each everyday source's share flagged and its own cut,
    and the five highest-scoring everyday texts (how MISLABELLED was found)."""
    best_cut, best_f1 = best_f1_threshold(held.scores, held.labels)
    log(f"{name}: {held.views} views of held-out texts scored")
    log(f"{name}: threshold {threshold:.3f} ({FP_BUDGET:.0%} budget on held-out everyday files): held-out recall "
        f"{meta['holdout_recall']:.3f}, F1 {f1(held.scores > threshold, held.labels):.3f} (best F1 {best_f1:.3f} at "
        f"{best_cut:.3f}), AUC {meta['holdout_auc']:.4f}; gate {held.gate:.4f} skips the encoder for "
        f"{held.negatives_gated:.1%} of held-out negatives")
    cuts = budget_cuts(held.scores, held.sources)
    for source, entry in meta["holdout_by_source"].items():
        cut = f", its own cut {cuts[source]:.3f}" if source in cuts else ""
        log(f"  {source}: {entry['rows']} held-out rows, {entry['flagged']:.1%} flagged{cut}")
    if "small sources" in cuts:
        log(f"  small sources pooled: cut {cuts['small sources']:.3f}")
    top = np.argsort(-np.where([is_traffic_source(s) for s in held.sources], held.scores, -1.0))[:5]
    for k in top:
        log(f"  top everyday score {held.scores[k]:.3f} ({held.sources[k]}): {held.texts[k][:120]!r}")


def train_all(data_dir: Path, out_dir: Path, names: Iterable[str] = DETECTORS, cache_dir: Path | None = None,
              log=print, layers: int = 0) -> list[Path]:
    from gateway.scoring.encoder import EncoderOptions

    # The shipped heads were trained on fp32 embeddings (int8 serves them: the same quality on test).
    encoder = Encoder.load(options=EncoderOptions(precision="fp32", layers=layers))
    cache = EmbeddingCache(encoder, cache_dir)
    written = []
    for name in names:
        head = train_detector(name, encoder, data_dir, cache, log)
        path = out_dir / detector_file(name, layers)
        head.save(path)
        written.append(path)
    return written
