"""The labelled hallucination files as (text, reference, label) rows per head, their features, and the
`models evaluate` report: AUC, balanced accuracy and F1 at the shipped threshold beside word overlap."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.scoring.stats import roc_auc
from gateway.scoring.encoder import Encoder
from gateway.scoring.heads import pooled
from gateway.scoring.support import FEATURES, support_features

# file stem prefix -> (head, the text field, the reference field, a second reference field). Response
# relevance reads the answer against the question (the gateway's prompt) and the context, as served
# from the evaluate API; factual rows need knowledge.
TASKS: dict[str, tuple[str, str, str, str]] = {
    "consistency_": ("consistency", "claim", "source_text", ""),
    "qa_factual_halueval_qa": ("factual", "answer", "knowledge", ""),
    "relevance_input_": ("relevance_input", "query", "context", ""),
    "relevance_response_": ("relevance_output", "answer", "query", "context"),
}
# Scored without knowledge, the factual type refuses (`knowledge` is required): listed, never scored.
UNGROUNDED = ("qa_factual_truthfulqa", "qa_factual_halueval_general")
LENGTH_BINS = (1, 2, 3, 5, 8, 12, 20)  # answer words: HaluEval's right answers are short spans


@dataclass(frozen=True)
class TaskRows:
    texts: list[str]
    refs: list[str]
    labels: np.ndarray
    files: list[str]
    groups: list[str]
    contexts: list[str]  # the second reference (response relevance's context), else ""


def task_rows(data_dir: Path, head: str) -> TaskRows:
    texts: list[str] = []
    refs: list[str] = []
    labels: list[int] = []
    files: list[str] = []
    groups: list[str] = []
    contexts: list[str] = []
    for path in sorted(data_dir.glob("*.jsonl")):
        task = next((t for prefix, t in TASKS.items() if path.stem.startswith(prefix)), None)
        if task is None or task[0] != head:
            continue
        _, text_key, ref_key, second = task
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if not str(row.get(ref_key) or "").strip():
                continue
            texts.append(row[text_key])
            refs.append(row[ref_key])
            labels.append(int(row["label"]))
            files.append(path.stem)
            groups.append(f"{path.stem}:{row.get('group', len(groups))}")
            contexts.append(str(row.get(second) or "") if second else "")
    return TaskRows(texts, refs, np.asarray(labels, np.int64), files, groups, contexts)


def features(head: str, texts: Sequence[str], refs: Sequence[str], encoder: Encoder,
             embed: Callable[[Sequence[str]], np.ndarray] | None = None,
             contexts: Sequence[str] | None = None) -> np.ndarray:
    """The head's feature matrix, as the gateway computes it one text at a time (`contexts`: response
    relevance's second reference; empty or None, the first serves for both)."""
    x = np.stack([support_features(t, r) for t, r in zip(texts, refs)]) if texts \
        else np.zeros((0, len(FEATURES)), np.float32)
    if not head.startswith("relevance"):
        return x
    embed = embed or (lambda items: np.stack([pooled(v) for v in encoder.embed(list(items))]))
    unique = sorted(set(texts) | set(refs))
    vectors = dict(zip(unique, embed(unique)))
    cos = np.array([float(vectors[t] @ vectors[r]) for t, r in zip(texts, refs)], np.float32)
    x = np.hstack([x, cos[:, None]])
    if head != "relevance_output":
        return x
    contexts = list(contexts or [""] * len(texts))
    has = [i for i, c in enumerate(contexts) if c.strip()]
    second = x.copy()
    if has:
        second[has] = features("relevance_input", [texts[i] for i in has], [contexts[i] for i in has], encoder, embed)
    return np.hstack([x, second])


def word_overlap(texts: Sequence[str], refs: Sequence[str]) -> np.ndarray:
    """The data README's baseline: the share of the text's words found in the reference."""
    import re

    def words(s: str) -> set[str]:
        return set(re.findall(r"\w+", s.lower()))

    return np.array([len(words(t) & words(r)) / max(len(words(t)), 1) for t, r in zip(texts, refs)])


def balanced_accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    passed = scores >= threshold  # compliant at or above the threshold (violated below it)
    return float(((passed[labels == 1]).mean() + (~passed[labels == 0]).mean()) / 2)


def f1_violations(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """F1 of flagging the non-compliant rows (label 0) below the threshold."""
    flagged, bad = scores < threshold, labels == 0
    tp, fp, fn = float((flagged & bad).sum()), float((flagged & ~bad).sum()), float((~flagged & bad).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def length_controlled_auc(scores: np.ndarray, labels: np.ndarray, texts: Sequence[str]) -> float:
    """AUC over positive/negative pairs of answers in the same length bin (`LENGTH_BINS` words): what is
    left of the ranking once answer length cannot give the label away."""
    lengths = np.digitize([len(t.split()) for t in texts], LENGTH_BINS)
    total = weight = 0.0
    for b in np.unique(lengths):
        m = lengths == b
        pairs = float((labels[m] == 1).sum() * (labels[m] == 0).sum())
        if pairs:
            total += roc_auc(scores[m], labels[m]) * pairs
            weight += pairs
    return total / weight if weight else float("nan")


def file_report(scores: np.ndarray, labels: np.ndarray, threshold: float, texts: Sequence[str],
                refs: Sequence[str]) -> dict:
    entry: dict = {"rows": int(len(labels)), "positives": int(labels.sum())}
    if labels.min() == labels.max():  # one label only (summacoz_neg): how many are flagged
        entry["flagged"] = round(float((scores < threshold).mean()), 4)
        return entry
    entry.update(auc=round(roc_auc(scores, labels), 4),
                 balanced_accuracy=round(balanced_accuracy(scores, labels, threshold), 4),
                 f1=round(f1_violations(scores, labels, threshold), 4),
                 overlap_auc=round(roc_auc(word_overlap(texts, refs), labels), 4))
    return entry


def evaluate_hallucination(data_dir: Path, encoder: Encoder, heads: dict, only: Sequence[str] | None = None) -> list[dict]:
    """Per head: its shipped threshold and, per test file, `file_report` (factual also length-controlled)."""
    reports = []
    for name, head in heads.items():
        if only and name not in only:
            continue
        rows = task_rows(data_dir, name)
        if not rows.texts:
            continue
        x = features(name, rows.texts, rows.refs, encoder, contexts=rows.contexts)
        scores = np.array([head.score(v) for v in x])
        report: dict = {"policy": name, "threshold": round(head.threshold, 4), "files": {}}
        files = np.array(rows.files)
        for stem in sorted(set(rows.files)):
            m = files == stem
            texts = [t for t, k in zip(rows.texts, m) if k]
            # the data README's overlap baseline reads response relevance against the context
            overlap_refs = [c or r for r, c, k in zip(rows.refs, rows.contexts, m) if k]
            entry = file_report(scores[m], rows.labels[m], head.threshold, texts, overlap_refs)
            if name == "factual" and "auc" in entry:
                entry["auc_length_controlled"] = round(length_controlled_auc(scores[m], rows.labels[m], texts), 4)
                entry["overlap_auc_length_controlled"] = round(length_controlled_auc(
                    word_overlap(texts, [r for r, k in zip(rows.refs, m) if k]), rows.labels[m], texts), 4)
            report["files"][stem] = entry
        reports.append(report)
    if not only or "factual" in only:
        present = [s for s in UNGROUNDED if (data_dir / f"{s}.jsonl").is_file()]
        if present:
            reports.append({"policy": "factual (no knowledge)", "files": {s: {"refused": "needs `knowledge` or a "
                            "rubric policy with a judge"} for s in present}})
    return reports
