"""The numbers every report of a scorer gives: ROC AUC, TPR at a false-positive rate, F1, and the
threshold of the best F1. Plain numpy, scores and 0/1 labels as arrays."""

from __future__ import annotations

import numpy as np


def best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    order = np.argsort(-scores)
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    fp = np.cumsum(1 - y)
    f1 = 2 * tp / (tp + fp + y.sum())
    best = int(np.argmax(f1))
    threshold = float((s[best] + s[best + 1]) / 2) if best + 1 < len(s) else float(s[best])
    return threshold, float(f1[best])


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann-Whitney U (ties count half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    ranks = _average_ranks(np.concatenate([pos, neg]))
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def tpr_at_fpr(scores: np.ndarray, labels: np.ndarray, fpr: float) -> float:
    neg = np.sort(scores[labels == 0])[::-1]
    if len(neg) == 0:
        return float("nan")
    k = int(np.floor(fpr * len(neg)))
    cut = neg[k] if k < len(neg) else -np.inf  # scores strictly above the (k+1)-th highest negative
    return float((scores[labels == 1] > cut).mean())


def f1(predicted: np.ndarray, labels: np.ndarray) -> float:
    tp = float((predicted & (labels == 1)).sum())
    fp = float((predicted & (labels == 0)).sum())
    fn = float((~predicted & (labels == 1)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0
