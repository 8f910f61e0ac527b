"""A `classifier` policy's head: its labelled examples, its training on the shared encoder's embeddings
(cached on disk), the threshold curve it records, and the JSON form a trained version stores.

`model.HeadMetric` scores with the head; the admin API's training trains and stores it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gateway.config.guard_schema import PolicySpec
from gateway.metrics.types import ParamError
from gateway.scoring.heads import Head, fit_logistic, pooled
from gateway.scoring.runtime import ScoringRuntime

BACKGROUND = Path(__file__).parent.parent / "scoring" / "weights" / "background.json"


def policy_examples(spec: PolicySpec) -> tuple[list[str], list[int]]:
    """Labelled texts from the policy definition: examples (FAIL=1), disallowed/allowed behaviours,
    and a `training_data` JSONL file of {"example", "compliance": PASS|FAIL} rows (seed 000)."""
    texts: list[str] = []
    labels: list[int] = []
    for ex in spec.examples:
        for text in (ex.output_example, ex.input_example):
            if text.strip():
                texts.append(text)
                labels.append(1 if ex.type == "FAIL" else 0)
    texts += list(spec.disallowed_behaviors)
    labels += [1] * len(spec.disallowed_behaviors)
    texts += list(spec.allowed_behaviors)
    labels += [0] * len(spec.allowed_behaviors)
    stored = spec.params.get("training_examples", [])  # a trained version's snapshot of the store's rows
    if not isinstance(stored, list):
        raise ParamError(("training_examples",), "must be a list of {example, compliance}")
    for i, row in enumerate(stored):
        if not isinstance(row, dict) or not isinstance(row.get("example"), str) \
                or str(row.get("compliance", "")).upper() not in ("PASS", "FAIL"):
            raise ParamError(("training_examples", i), "must be {example: text, compliance: PASS or FAIL}")
        texts.append(row["example"])
        labels.append(1 if str(row["compliance"]).upper() == "FAIL" else 0)
    path = spec.params.get("training_data")
    if path is not None:
        try:
            lines = Path(str(path)).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ParamError(("training_data",), f"cannot read {path}: {exc.strerror}") from None
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                status = str(row["compliance"]).upper()
                if status not in ("PASS", "FAIL") or not isinstance(row["example"], str):
                    raise ValueError("compliance must be PASS or FAIL and example a string")
            except (ValueError, KeyError, TypeError) as exc:
                raise ParamError(("training_data",), f"{path}:{n}: {exc}") from None
            texts.append(row["example"])
            labels.append(1 if status == "FAIL" else 0)
    return texts, labels


def background_texts() -> list[str]:
    """Everyday prompts shipped with the package: the negatives every classifier head also sees."""
    return json.loads(BACKGROUND.read_text(encoding="utf-8"))


def train_policy_head(policy_id: str, texts: Sequence[str], labels: Sequence[int], runtime: ScoringRuntime,
                      cache_dir: Path | None = None) -> Head:
    """Logistic regression on embeddings of the examples plus the shipped background negatives.

    The calibrated threshold is the best-F1 cut on out-of-fold scores (5 folds) when there are at
    least 5 examples of each class, else 0.5. Heads are cached on disk by data hash + encoder version."""
    from gateway.scoring.stats import best_f1_threshold, roc_auc

    encoder = runtime.encoder
    background = background_texts()
    all_texts = [*texts, *background]
    y = np.asarray([*labels, *([0] * len(background))], np.int64)
    digest = hashlib.sha256(json.dumps([encoder.version, all_texts, y.tolist()]).encode()).hexdigest()[:20]
    cache = (cache_dir / "heads" / f"{policy_id}-{digest}.npz") if cache_dir else None
    if cache is not None and cache.is_file():
        return Head.load(cache)
    x = np.stack([pooled(v) for v in encoder.embed(all_texts)])
    w, b = fit_logistic(x, y, l2=1.0)
    threshold = 0.5
    meta: dict[str, Any] = {"examples": len(texts), "background": len(background)}
    n_pos, n_neg = int(y.sum()), int(len(texts) - y.sum())
    if n_pos >= 5 and n_neg >= 5:
        rng = np.random.default_rng(0)
        folds = rng.permutation(len(y)) % 5
        oof = np.zeros(len(y))
        for k in range(5):
            fw, fb = fit_logistic(x[folds != k], y[folds != k], l2=1.0)
            oof[folds == k] = 1 / (1 + np.exp(-(x[folds == k] @ fw + fb)))
        threshold, f1 = best_f1_threshold(oof[:len(texts)], y[:len(texts)])
        meta.update(cv_f1=round(f1, 4), cv_auc=round(roc_auc(oof[:len(texts)], y[:len(texts)]), 4),
                    positives=n_pos, negatives=n_neg, curve=threshold_curve(oof[:len(texts)], y[:len(texts)]))
    head = Head(policy_id, w, b, threshold=float(min(max(threshold, 0.01), 0.99)),
                meta={**meta, "encoder": encoder.version, "data_sha": digest})
    if cache is not None:
        head.save(cache)
    return head


def threshold_curve(scores: np.ndarray, labels: np.ndarray, points: int = 50) -> list[dict[str, float]]:
    """G8: held-out precision, recall, false-positive rate and F1 at `points` thresholds spread over 0..1
    (violated when the score is above the threshold, as the plan's `gt` rule), from out-of-fold scores."""
    y = labels.astype(bool)
    pos, neg = int(y.sum()), int((~y).sum())
    out = []
    for t in (np.arange(points) + 0.5) / points:
        hit = scores > t
        tp, fp = int((hit & y).sum()), int((hit & ~y).sum())
        precision = tp / (tp + fp) if tp + fp else 1.0
        recall = tp / pos if pos else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out.append({"threshold": round(float(t), 4), "precision": round(precision, 4), "recall": round(recall, 4),
                    "fpr": round(fp / neg, 4) if neg else 0.0, "f1": round(f1, 4)})
    return out


def head_to_dict(head: Head) -> dict[str, Any]:
    """A policy head as JSON (about 400 numbers): stored inside the policy version it belongs to."""
    assert head.emb_w is not None
    return {"w": [round(float(x), 7) for x in head.emb_w], "b": head.emb_b, "threshold": head.threshold,
            "meta": head.meta}


def same_model(version: str) -> str:
    """An encoder version without its precision: heads trained on fp32 serve on int8 and back."""
    return version.removesuffix("-fp32").removesuffix("-int8")


def head_from_dict(policy_id: str, raw: Any, runtime: ScoringRuntime) -> Head:
    try:
        w = np.asarray(raw["w"], np.float32)
        head = Head(policy_id, w, float(raw["b"]), threshold=float(raw["threshold"]), meta=dict(raw.get("meta", {})))
    except (KeyError, TypeError, ValueError) as exc:
        raise ParamError(("head",), f"not a trained head: {exc}") from None
    if w.shape != (runtime.encoder.hidden,):
        raise ParamError(("head",), f"head has {w.shape} weights; the encoder has {runtime.encoder.hidden} dimensions")
    encoder = head.meta.get("encoder")
    if encoder and same_model(encoder) != same_model(runtime.encoder.version):
        raise ParamError(("head",), f"head trained on encoder {encoder}, this gateway runs "
                                    f"{runtime.encoder.version}: retrain the policy")
    return head
