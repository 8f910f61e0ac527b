"""`guardrail-gateway models evaluate`: a built-in detector's report on the test/ files.

Positives (the detector's task, label 1) against negatives (the same task's label 0 and every benign
file), per file and over all of them; `evaluate_scores` takes any scorer of the task, so a tool can
report another model the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from gateway.scoring.detector_data import read_rows
from gateway.scoring.detectors import load_detector, score_texts
from gateway.scoring.encoder import Encoder
from gateway.scoring.heads import Head
from gateway.scoring.stats import f1, roc_auc, tpr_at_fpr

# The task of each detector's rows in the data (`task` of a row).
EVAL_TASKS = {"prompt_injection": "injection", "harmful": "harmful", "toxicity": "toxic"}


def evaluate_detector(name: str, data_dir: Path, encoder: Encoder, head: Head | None = None) -> dict:
    head = head or load_detector(name)
    return evaluate_scores(name, data_dir, lambda texts: score_texts(head, encoder, texts), head.threshold)


def evaluate_scores(name: str, data_dir: Path, score: Callable[[list[str]], tuple[np.ndarray, float]],
                    threshold: float) -> dict:
    """The evaluation report of any scorer of a detector's task: `score(texts)` gives the scores and the
    share of texts decided without the encoder.

    Per file: the share flagged at the threshold (recall for positives, false-positive rate for
    negatives); for a file with positives, AUC and TPR at 1% and 5% FPR against every negative of the
    data (the task's label-0 rows and every benign file), and F1 within the file where it has both
    labels; per language where a file has more than one."""
    files = _task_files(data_dir, EVAL_TASKS[name])
    report: dict = {"detector": name, "threshold": round(threshold, 4), "files": {}}
    scored: dict[str, np.ndarray] = {}
    gated_total = 0.0
    for stem, (texts, labels, _) in files.items():
        scores, gated = score(texts)
        scored[stem] = scores
        gated_total += gated * len(texts)
    s = np.concatenate(list(scored.values()))
    y = np.concatenate([labels for _, labels, _ in files.values()])
    for stem, (texts, labels, langs) in files.items():
        report["files"][stem] = _file_entry(scored[stem], labels, langs, s[y == 0], threshold)
    report.update(rows=int(len(y)), positives=int(y.sum()), auc=round(roc_auc(s, y), 4),
                  tpr_at_1pct_fpr=round(tpr_at_fpr(s, y, 0.01), 4), tpr_at_5pct_fpr=round(tpr_at_fpr(s, y, 0.05), 4),
                  f1=round(f1(s > threshold, y), 4), gated_without_encoder=round(gated_total / len(y), 4))
    return report


def _task_files(data_dir: Path, task: str) -> dict[str, tuple[list[str], np.ndarray, list[str]]]:
    """Per file of `data_dir` with rows of `task` or benign ones: their texts, labels and languages."""
    files: dict[str, tuple[list[str], np.ndarray, list[str]]] = {}
    for path in sorted(data_dir.glob("*.jsonl")):
        rows = [r for r in read_rows(path) if r.get("task") in (task, "benign")]
        if rows:
            files[path.stem] = ([r["text"] for r in rows], np.array([int(r.get("label", 0)) for r in rows]),
                                [str(r.get("lang") or "?") for r in rows])
    return files


def _file_entry(scores: np.ndarray, labels: np.ndarray, langs: list[str], negatives: np.ndarray,
                threshold: float) -> dict:
    """One file's report; `negatives`: the scores of every negative of the data."""
    entry: dict = {"rows": len(labels)}
    if (labels == 0).any():
        entry["fpr"] = round(float((scores[labels == 0] > threshold).mean()), 4)
    if (labels == 1).any():
        pos = scores[labels == 1]
        entry["recall"] = round(float((pos > threshold).mean()), 4)
        against = np.concatenate([pos, negatives])
        against_y = np.concatenate([np.ones(len(pos), np.int64), np.zeros(len(negatives), np.int64)])
        entry["auc_vs_all_negatives"] = round(roc_auc(against, against_y), 4)
        entry["tpr_at_1pct_fpr"] = round(tpr_at_fpr(against, against_y, 0.01), 4)
        entry["tpr_at_5pct_fpr"] = round(tpr_at_fpr(against, against_y, 0.05), 4)
        if (labels == 0).any():
            entry["f1"] = round(f1(scores > threshold, labels), 4)
            entry["auc"] = round(roc_auc(scores, labels), 4)
    if len(set(langs)) > 1:
        by_lang: dict[str, dict] = {}
        for lang in sorted(set(langs)):
            mask = np.array([g == lang for g in langs])
            by_lang[lang] = {"rows": int(mask.sum()), "flagged": round(float((scores[mask] > threshold).mean()), 4)}
        entry["languages"] = by_lang
    return entry
