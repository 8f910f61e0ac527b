"""Train the hallucination heads (consistency, factual, relevance_input, relevance_output) on the train
side of the labelled hallucination data and write gateway/scoring/weights/hallucination.json.

    .venv/bin/python tools/train_hallucination.py --data ../shared/data/hallucination/train \
        [--cache /tmp/halluc_emb] [--out PATH] [--cosine]

Needs scikit-learn (the `train` extra). Designs and thresholds are chosen on out-of-fold scores of a
5-fold split by group (a document, knowledge snippet or question stays on one side), never on test/.
Each file weighs the same in training. The threshold is the one of best balanced accuracy on those
out-of-fold scores. `--cosine` also measures the previous scorer (the weakest sentence's best
encoder cosine) on the same folds: the baseline a head must beat.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.scoring.stats import roc_auc  # noqa: E402
from gateway.scoring.encoder import Encoder, EncoderOptions  # noqa: E402
from gateway.scoring.hallucination import HEADS, WEIGHTS, SupportHead, all_features, save_heads  # noqa: E402
from gateway.scoring.hallucination_eval import (  # noqa: E402
    TaskRows, features, length_controlled_auc, task_rows, word_overlap)
from gateway.scoring.heads import pooled  # noqa: E402

SEED = 20261207
LENGTH = ("log_claim_words", "claim_sentences")  # left out where length gives the label away (factual)
# Candidate designs per head: the feature subsets compared on out-of-fold scores.
# A name with "+trees" fits gradient-boosted trees (monotone in the same directions as the linear
# weights' signs) instead of the logistic regression.
DESIGNS: dict[str, dict[str, tuple[str, ...] | str | None]] = {
    "consistency": {"all": None, "no_length": LENGTH, "all+trees": None},
    "factual": {"all": None, "no_length": LENGTH, "no_length+trees": LENGTH},
    "relevance_input": {"all": None, "cosine_only": "keep:encoder_cos", "all+trees": None},
    "relevance_output": {"all": None, "question_only": "prefix:q_", "cosine_only": "keep:q_encoder_cos",
                         "all+trees": None},
}
TREES = {"max_iter": 100, "learning_rate": 0.05, "max_leaf_nodes": 8}
TREES_MARGIN = 0.005


class Embeddings:
    """Pooled int8 embeddings (as the gateway serves) cached on disk by text hash."""

    def __init__(self, encoder: Encoder, directory: Path | None) -> None:
        self.encoder = encoder
        self.path = directory / f"pooled-{encoder.version}.pkl" if directory else None
        self.vectors: dict[bytes, np.ndarray] = pickle.loads(self.path.read_bytes()) \
            if self.path and self.path.is_file() else {}
        self.dirty = False

    def save(self) -> None:
        if self.dirty and self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_bytes(pickle.dumps(self.vectors))
            self.dirty = False

    def __call__(self, texts) -> np.ndarray:
        keys = [hashlib.blake2b(t.encode(), digest_size=12).digest() for t in texts]
        missing = {k: t for k, t in zip(keys, texts) if k not in self.vectors}
        order = list(missing)
        for start in range(0, len(order), 256):
            part = order[start:start + 256]
            for k, v in zip(part, self.encoder.embed([missing[k] for k in part])):
                self.vectors[k] = pooled(v)
        self.dirty |= bool(missing)
        return np.stack([self.vectors[k] for k in keys]) if keys else np.zeros((0, self.encoder.hidden), np.float32)


def cosine_baseline(rows: TaskRows, embed: Embeddings) -> np.ndarray:
    """The previous consistency scorer: each sentence's best cosine to a source sentence (or the whole
    source), the weakest sentence's."""
    from gateway.metrics.model import _sentences

    embed(sorted({p for t, r in zip(rows.texts, rows.refs) for p in [*_sentences(t), *_sentences(r), r]}))
    out = []
    for text, ref in zip(rows.texts, rows.refs):
        claims = _sentences(text)
        if not claims:
            out.append(1.0)
            continue
        c, s = embed(claims), embed([*_sentences(ref), ref])
        out.append(float(np.clip((c @ s.T).max(axis=1).min(), 0, 1)))
    return np.array(out)


def columns(head: str, design) -> list[str]:
    names = list(all_features(head))
    if design is None:
        return names
    if isinstance(design, str) and design.startswith("keep:"):
        return [design[5:]]
    if isinstance(design, str) and design.startswith("prefix:"):
        return [n for n in names if n.startswith(design[7:])]
    return [n for n in names if n not in design]


def file_weights(rows: TaskRows) -> np.ndarray:
    files = np.array(rows.files)
    w = np.array([1.0 / (files == f).sum() for f in files])
    return w * len(w) / w.sum()


FREE = ("log_claim_words", "log_source_words", "claim_sentences")  # sizes: either sign


def signs(cols: list[str]) -> list[tuple[float | None, float | None]]:
    """Bounds per weight: more support (coverage, cosine) never lowers the score and a negation gap
    never raises it. Unconstrained, the correlated min/mean features took opposite signs and a claim
    with one wholly invented sentence scored as compliant (a hand-written check, not test data)."""
    out: list[tuple[float | None, float | None]] = []
    for c in cols:
        out.append((None, None) if c.endswith(FREE) else (None, 0.0) if "negation" in c else (0.0, None))
    return out


def fit(x: np.ndarray, y: np.ndarray, w: np.ndarray, cols: list[str], l2: float = 1.0):
    """Weighted logistic regression on standardised features with the sign bounds of `signs` (L-BFGS-B)."""
    from scipy.optimize import minimize

    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    w = w / w.sum()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        logit = z @ theta[:-1] + theta[-1]
        p = 1 / (1 + np.exp(-logit))
        value = float((w * (np.logaddexp(0, logit) - y * logit)).sum()) + l2 / (2 * len(y)) * float(theta[:-1] @ theta[:-1])
        g = w * (p - y)
        return value, np.append(z.T @ g + l2 / len(y) * theta[:-1], g.sum())

    res = minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B", bounds=[*signs(cols), (None, None)])
    return mean, scale, res.x[:-1], float(res.x[-1])


def fit_trees(x: np.ndarray, y: np.ndarray, w: np.ndarray, cols: list[str]):
    from sklearn.ensemble import HistGradientBoostingClassifier

    monotone = [0 if lo is None and hi is None else -1 if hi == 0.0 else 1 for lo, hi in signs(cols)]
    return HistGradientBoostingClassifier(monotonic_cst=monotone, random_state=0, **TREES).fit(x, y, sample_weight=w)


def exported(model) -> tuple[float, tuple[np.ndarray, ...]]:
    """(bias, trees) in SupportHead's layout: rows of [feature or -1, threshold, left, right, value]."""
    trees = []
    for (predictor,) in model._predictors:
        n = predictor.nodes
        trees.append(np.stack([np.where(n["is_leaf"], -1, n["feature_idx"]), n["num_threshold"], n["left"],
                               n["right"], n["value"]], axis=1).astype(np.float64))
    return float(np.ravel(model._baseline_prediction)[0]), tuple(trees)


def predict(x: np.ndarray, rows: TaskRows, w: np.ndarray, cols: list[str], tr, te, trees: bool) -> np.ndarray:
    if trees:
        return fit_trees(x[tr], rows.labels[tr], w[tr], cols).predict_proba(x[te])[:, 1]
    mean, scale, coef, b = fit(x[tr], rows.labels[tr], w[tr], cols)
    return 1 / (1 + np.exp(-(((x[te] - mean) / scale) @ coef + b)))


def out_of_fold(x: np.ndarray, rows: TaskRows, w: np.ndarray, cols: list[str], trees: bool = False) -> np.ndarray:
    from sklearn.model_selection import StratifiedGroupKFold

    oof = np.zeros(len(rows.labels))
    folds = StratifiedGroupKFold(5, shuffle=True, random_state=SEED)
    for tr, te in folds.split(x, rows.labels, rows.groups):
        oof[te] = predict(x, rows, w, cols, tr, te, trees)
    return oof


def best_balanced_threshold(scores: np.ndarray, labels: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """The cut (compliant at or above) of best file-weighted balanced accuracy."""
    cuts = np.unique(np.quantile(scores, np.linspace(0.01, 0.99, 197)))
    best = (0.5, -1.0)
    for cut in cuts:
        passed = scores >= cut
        tpr = (w * passed * (labels == 1)).sum() / (w * (labels == 1)).sum()
        tnr = (w * ~passed * (labels == 0)).sum() / (w * (labels == 0)).sum()
        if (tpr + tnr) / 2 > best[1]:
            best = (float(cut), float((tpr + tnr) / 2))
    return best


def per_file(scores: np.ndarray, rows: TaskRows, head: str) -> dict[str, dict[str, float]]:
    files = np.array(rows.files)
    out = {}
    for stem in sorted(set(rows.files)):
        m = files == stem
        y = rows.labels[m]
        if y.min() == y.max():
            continue
        entry = {"auc": round(roc_auc(scores[m], y), 4)}
        if head == "factual":
            entry["auc_length_controlled"] = round(length_controlled_auc(
                scores[m], y, [t for t, k in zip(rows.texts, m) if k]), 4)
        out[stem] = entry
    return out


def train_head(head: str, data: Path, encoder: Encoder, embed: Embeddings, cosine: bool, log=print) -> SupportHead:
    started = time.perf_counter()
    rows = task_rows(data, head)
    x = features(head, rows.texts, rows.refs, encoder, embed, rows.contexts)
    w = file_weights(rows)
    x_fit, rows_fit, w_fit = x, rows, w
    if head == "relevance_output":  # copies as a request without context sends them (question in both slots)
        half = x.shape[1] // 2
        x_fit = np.vstack([x, np.hstack([x[:, :half], x[:, :half]])])
        rows_fit = TaskRows(rows.texts * 2, rows.refs * 2, np.concatenate([rows.labels] * 2), rows.files * 2,
                            rows.groups * 2, rows.contexts * 2)
        w_fit = np.concatenate([w, w])
    if head == "factual":
        # HaluEval's right answers are verbatim spans of the knowledge: alone, it teaches a head that a
        # paraphrase is wrong (bigram coverage took most of the weight, and a correct two-sentence answer
        # scored 0.001). Trained with the consistency files too, each file weighing the same; the
        # threshold and the figures below still come from HaluEval's out-of-fold rows only.
        extra = task_rows(data, "consistency")
        x_fit = np.vstack([x, features("consistency", extra.texts, extra.refs, encoder, embed)])
        rows_fit = TaskRows(rows.texts + extra.texts, rows.refs + extra.refs,
                            np.concatenate([rows.labels, extra.labels]), rows.files + extra.files,
                            rows.groups + extra.groups, rows.contexts + extra.contexts)
        w_fit = file_weights(rows_fit)
        w = w_fit[:len(rows.labels)]
        kept = columns(head, LENGTH)
        halueval_only = out_of_fold(x[:, [list(all_features(head)).index(c) for c in kept]], rows,
                                    file_weights(rows), kept)
    log(f"\n{head}: {len(rows.texts)} rows ({int(rows.labels.sum())} compliant) from {sorted(set(rows.files))}, "
        f"features in {time.perf_counter() - started:.0f} s")
    candidates = {"word overlap": word_overlap(rows.texts, [c or r for r, c in zip(rows.refs, rows.contexts)])}
    if cosine and head in ("consistency", "factual"):
        candidates["encoder cosine (previous)"] = cosine_baseline(rows, embed)
    if head == "factual":
        candidates["HaluEval alone, no_length"] = halueval_only
    names = list(all_features(head))
    results = {}
    for design, spec in DESIGNS[head].items():
        cols = columns(head, spec)
        idx = [names.index(c) for c in cols]
        oof = out_of_fold(x_fit[:, idx], rows_fit, w_fit, cols, "+trees" in design)[:len(rows.labels)]
        candidates[f"head:{design}"] = oof
        results[design] = (cols, idx, oof)
    key = "auc_length_controlled" if head == "factual" else "auc"
    summary = {}
    for label, scores in candidates.items():
        files = per_file(scores, rows, head)
        summary[label] = float(np.mean([e[key] for e in files.values()]))
        log(f"  {label:28s} " + "  ".join(f"{k.split('_', 1)[1]} " + "/".join(str(v) for v in e.values())
                                          for k, e in files.items()) + f"   mean {key} {summary[label]:.4f}")
    # Trees must beat the best linear design by TREES_MARGIN: otherwise the smaller, smoother model.
    design = max(results, key=lambda d: summary[f"head:{d}"] - (TREES_MARGIN if "+trees" in d else 0.0))
    if head == "factual":
        other = out_of_fold(x_fit[:, results[design][1]], rows_fit, w_fit, results[design][0],
                            "+trees" in design)[len(rows.labels):]
        log(f"  kept head, out of fold on the consistency files: {per_file(other, extra, 'consistency')}")
    cols, idx, oof = results[design]
    threshold, bal = best_balanced_threshold(oof, rows.labels, w)
    shift = float(np.log(threshold / (1 - threshold)))
    empty = np.zeros(0)
    if "+trees" in design:
        model = fit_trees(x_fit[:, idx], rows_fit.labels, w_fit, cols)
        bias, trees = exported(model)
        made = SupportHead(head, tuple(cols), empty, empty, empty, bias - shift, 0.5, {}, trees)
        check = x_fit[:200][:, idx]
        full = np.zeros((len(check), len(all_features(head))))
        full[:, [list(all_features(head)).index(c) for c in cols]] = check
        mine = np.array([made.score(v) for v in full])
        theirs = 1 / (1 + np.exp(-(np.log(model.predict_proba(check)[:, 1] / model.predict_proba(check)[:, 0]) - shift)))
        assert np.allclose(mine, theirs, atol=1e-6), "the exported trees do not reproduce scikit-learn's"
    else:
        mean, scale, coef, b = fit(x_fit[:, idx], rows_fit.labels, w_fit, cols)
        made = SupportHead(head, tuple(cols), mean, scale, coef, b - shift, 0.5)
    meta = {"encoder": encoder.version, "design": design, "trained_rows": len(rows.texts), "seed": SEED,
            "files": sorted(set(rows.files)), "calibration": "best file-weighted balanced accuracy on "
            "out-of-fold scores of train/ (5 folds by group)", "cv_balanced_accuracy": round(bal, 4),
            "cv": per_file(oof, rows, head), "cv_mean_" + key: round(summary[f"head:{design}"], 4),
            "cv_baselines_mean_" + key: {k: round(v, 4) for k, v in summary.items() if not k.startswith("head:")}}
    log(f"  kept {design}: cut {threshold:.4f} (out-of-fold balanced accuracy {bal:.4f}), shipped as 0.5")
    # The bias moves the cut to 0.5: every head (and both sides of relevance) shares one calibrated threshold.
    meta["cut_before_shift"] = round(threshold, 4)
    return replace(made, meta=meta)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="the train/ directory")
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    parser.add_argument("--cache", type=Path, help="keep embeddings here between runs")
    parser.add_argument("--only", help="comma-separated heads (the others are kept from --out)")
    parser.add_argument("--cosine", action="store_true", help="also measure the previous cosine scorer")
    args = parser.parse_args()
    encoder = Encoder.load(options=EncoderOptions(precision="int8"))
    embed = Embeddings(encoder, args.cache)
    names = args.only.split(",") if args.only else list(HEADS)
    heads = {}
    if args.only and args.out.is_file():  # the heads not retrained are kept
        from gateway.scoring.hallucination import load_heads

        heads = load_heads(args.out)
    for name in names:
        heads[name] = train_head(name, args.data, encoder, embed, args.cosine)
        embed.save()
    save_heads({n: heads[n] for n in HEADS if n in heads}, args.out)
    print(f"wrote {args.out}")
    print(json.dumps({n: heads[n].threshold for n in heads}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
