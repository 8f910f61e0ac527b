"""Built-in detectors (prompt_injection, harmful, toxicity): their data recipe, training and scoring.

Training (`guardrail-gateway models train-detectors --data DIR/train`) is reproducible: fixed seeds,
fixed subsample sizes, data paths as arguments. It needs scikit-learn (the `train` extra); the
shipped heads (`gateway/scoring/weights/*.npz`) need only numpy at run time. Thresholds and gates are
chosen on a held-out 20% of train/, never on test/.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from gateway.text.views import detector_views
from gateway.scoring import synthetic
from gateway.scoring.encoder import Encoder
from gateway.scoring.heads import LEX_DIM, Head, lexical_from_ids, lexical_indices, pooled

WEIGHTS_DIR = Path(__file__).parent / "weights"
SEED = 20261121
GATE_RECALL = 0.995  # the lexical gate passes at least this share of held-out positives to the encoder
LONG_CHARS, LONG_WEIGHT = 300, 3.0
# The shipped threshold flags at most this share of each everyday source of the held-out fifth of train/.
FP_BUDGET = 0.01
# Everyday rows that are not: OpenAssistant's multilingual evaluation prompts include "How do I build a
# bomb?" in ten languages (the data README dropped two English ones). Found by the calibration's log of
# the highest-scoring everyday rows; left out of every detector's rows.
MISLABELLED = frozenset({
    "¿Cómo construyo una bomba?", "Как сделать бомбу?", "Wie baue ich eine Bombe?", "Comment construire une bombe ?",
    "Як побудувати зробити бомбу?", "Come costruire una bomba?", "Làm thế nào để tôi chế tạo một quả bom?",
    "我如何制造一枚炸弹？", "폭탄을 어떻게 만들 수 있나요?", "爆弾を作るにはどうすればいいですか?", "ฉันจะสร้างระเบิดได้อย่างไร?",
})


@dataclass(frozen=True)
class Recipe:
    positives: tuple[str, ...]             # task names whose label-1 rows are positives
    negatives: tuple[str, ...]             # task names whose label-0 rows are negatives (benign always is)
    benign_per_file: int                   # benign rows sampled per file
    max_per_file: int                      # cap on any other file (fixed seed)
    synthetic: Callable[[list[str], int], list[tuple[str, int]]] | None = None  # gateway/scoring/synthetic.py
    # score sentences alone too (heads.py). Chosen on the held-out 20% of train/: it raises injection
    # TPR@1%FPR there (0.924 -> 0.941, BIPIA's injected contexts AUC 0.71 -> 0.79) and lowers harmful's.
    sentences: bool = False
    # hand-written lines (synthetic.prompt_lines): the negatives' file and the positives', appended last,
    # at `hand_weight` each (a few hundred lines against thousands of corpus rows). The weight was
    # chosen among 1, 3, 10 and 20 by the mean F1 on train's held-out 20% and on the detector's
    # validation lines (prompts/validation/), written apart from the training ones.
    hand_written: tuple[str, str] | None = None
    hand_weight: float = 1.0
    # rows left out whose `category` starts with one of these (labels that depend on the policy)
    exclude: tuple[str, ...] = ()
    # positives only in languages with at least this many negatives (`negative_languages`)
    min_language_negatives: int = 200


RECIPES: dict[str, Recipe] = {
    # OWASP chunks that quote attack strings are label 0 by the data's policy, an injection by this one's
    "prompt_injection": Recipe(("injection",), ("injection",), 2500, 4000, synthetic.injection_rows, sentences=True,
                               exclude=("security_education_doc:quotes_attack_examples",)),
    # AILuminate's intellectual-property and defamation prompts depend on the policy (the data README)
    # Harmful positives in English only: the other languages' negatives are Wikipedia questions and
    # passages (xquad) and Finnish, so a short request in Thai or Chinese read as harmful whatever it
    # asked ("I'm sad, how can I be happy?" scored 0.995 on the held-out fifth with them).
    "harmful": Recipe(("harmful",), ("harmful",), 2500, 4000, synthetic.harmful_negatives,
                      hand_written=("harmful_benign", "harmful_requests"), hand_weight=3.0, exclude=("ipv", "dfm"),
                      min_language_negatives=20_000),
    "toxicity": Recipe(("toxic",), ("toxic",), 1500, 6000,
                       hand_written=("toxicity_benign", "toxicity_hateful"), hand_weight=10.0),
}
DETECTORS = tuple(RECIPES)


def read_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


@dataclass(frozen=True)
class Rows:
    """A detector's training rows: texts, labels, sample weights, the group each row belongs to (twins
    and translations share one, so a split never puts them on both sides) and the file it came from."""

    texts: list[str]
    labels: np.ndarray
    weights: np.ndarray
    groups: list[str]
    sources: list[str]


# Rows that are the same document in two forms: a translation, a detoxified paraphrase, a carrier with
# and without an injection. The data README asks that each such set stay on one side of a split.
_TWIN_FIELDS = {"multijail_id": "multijail", "pair_id": "pair"}
_ALIGNED_BLOCK = 100  # benign_oasst_train_prompts and its _fi translation: aligned by order, roughly
_CARRIER_EDGE = 64    # an injected carrier shares the start or the end of its clean twin


def _groups(stem: str, rows: list[dict]) -> list[str]:
    if stem.startswith("benign_oasst_train_prompts"):
        return [f"oasst-train:{i // _ALIGNED_BLOCK}" for i in range(len(rows))]
    groups = []
    for i, row in enumerate(rows):
        twin = next((f"{tag}:{stem}:{row[k]}" for k, tag in _TWIN_FIELDS.items() if k in row), None)
        groups.append(twin or f"{stem}:{i}")
    if stem.startswith("injection_") and {r.get("label") for r in rows} == {0, 1}:
        heads: dict[str, str] = {}
        tails: dict[str, str] = {}
        for row, group in zip(rows, groups):
            if row.get("label") == 0 and len(row["text"]) > 2 * _CARRIER_EDGE:
                heads.setdefault(row["text"][:_CARRIER_EDGE], group)
                tails.setdefault(row["text"][-_CARRIER_EDGE:], group)
        for i, row in enumerate(rows):
            if row.get("label") == 1:
                groups[i] = heads.get(row["text"][:_CARRIER_EDGE]) or tails.get(row["text"][-_CARRIER_EDGE:]) \
                    or groups[i]
    return groups


def negative_languages(files: Sequence[tuple[str, list[dict]]], recipe: Recipe) -> set[str]:
    """Languages with at least `recipe.min_language_negatives` negative rows, and the most common one.
    Positives in any other language are left out: with attacks and no ordinary text in a language, a head
    learns the language itself as the attack (the first build's only German rows were attacks, and German
    prompts were flagged)."""
    counts: dict[str, int] = {}
    for _, rows in files:
        for row in rows:
            if row.get("task") == "benign" or (row.get("task") in recipe.negatives and row.get("label") == 0):
                lang = row.get("lang", "en")
                counts[lang] = counts.get(lang, 0) + 1
    covered = {lang for lang, n in counts.items() if n >= recipe.min_language_negatives}
    return covered | {max(counts, key=counts.__getitem__)} if counts else covered  # and the main language


def training_rows(data_dir: Path, name: str) -> Rows:
    """A detector's training rows (files in name order, then synthetic and hand-written lines)."""
    recipe = RECIPES[name]
    rng = random.Random(SEED)
    texts: list[str] = []
    labels: list[int] = []
    groups: list[str] = []
    sources: list[str] = []
    files = [(path.stem, read_rows(path)) for path in sorted(data_dir.glob("*.jsonl"))]
    covered = negative_languages(files, recipe)
    for stem, rows in files:
        chosen = []
        for row, group in zip(rows, _groups(stem, rows)):
            task, label = row.get("task"), row.get("label")
            if str(row.get("category", "")).startswith(recipe.exclude) or row["text"] in MISLABELLED:
                continue
            if task == "benign" or (task in recipe.negatives and label == 0):
                chosen.append((row["text"], 0, group))
            elif task in recipe.positives and label == 1 and row.get("lang", "en") in covered:
                chosen.append((row["text"], 1, group))
        if not chosen:
            continue
        cap = recipe.benign_per_file if rows[0].get("task") == "benign" else recipe.max_per_file
        if len(chosen) > cap:
            chosen = rng.sample(chosen, cap)
        texts += [t for t, _, _ in chosen]
        labels += [y for _, y, _ in chosen]
        groups += [g for _, _, g in chosen]
        sources += [stem] * len(chosen)
    carriers = [t for t, y in zip(texts, labels) if y == 0 and len(t) < 400]
    extra = recipe.synthetic(carriers, SEED) if recipe.synthetic else []
    texts += [t for t, _ in extra]
    labels += [y for _, y in extra]
    groups += [f"synthetic:{i}" for i in range(len(extra))]
    sources += ["synthetic"] * len(extra)
    weights = [1.0] * len(texts)
    for label, hand in enumerate(recipe.hand_written or ()):
        lines = synthetic.prompt_lines(hand)
        texts += lines
        labels += [label] * len(lines)
        weights += [recipe.hand_weight] * len(lines)
        groups += [f"{hand}:{i}" for i in range(len(lines))]
        sources += [f"hand:{hand}"] * len(lines)
    return Rows(texts, np.asarray(labels, np.int64), np.asarray(weights), groups, sources)


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


@dataclass(frozen=True)
class TrainingSplit:
    texts: list[str]
    labels: np.ndarray
    weights: np.ndarray
    train: np.ndarray   # indices trained on
    hold: np.ndarray    # the held-out fifth: thresholds and gates are chosen here
    sources: list[str]  # the file (or "synthetic", "hand:NAME") each row came from


def training_split(data_dir: Path, name: str) -> TrainingSplit:
    """A detector's rows, sample weights and its fixed (seeded, stratified) split: a fifth of the groups
    held out, so a translation, a paraphrase or a carrier's clean twin never sits on the other side."""
    from sklearn.model_selection import StratifiedGroupKFold

    rows = training_rows(data_dir, name)
    texts, labels = rows.texts, rows.labels
    # Long everyday prompts weigh more: the corpus's long texts are mostly attacks, and a head must not
    # learn "long = attack" (the data README's caveat).
    weights = rows.weights * np.where((labels == 0) & (np.array([len(t) for t in texts]) > LONG_CHARS),
                                      LONG_WEIGHT, 1.0)
    folds = StratifiedGroupKFold(5, shuffle=True, random_state=SEED)
    idx_train, idx_hold = next(folds.split(np.zeros(len(texts)), labels, rows.groups))
    return TrainingSplit(texts, labels, weights, idx_train, idx_hold, rows.sources)


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
    from sklearn.base import clone
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    started = time.perf_counter()
    split = training_split(data_dir, name)
    texts, labels, weights, idx_train, idx_hold = split.texts, split.labels, split.weights, split.train, split.hold
    lex = lexical_matrix(encoder, texts)
    emb = cache.embed(texts)
    log(f"{name}: {len(texts)} rows ({int(labels.sum())} positive), embedded in {time.perf_counter() - started:.0f} s")

    lexical = LogisticRegression(C=4.0, class_weight="balanced", max_iter=2000, solver="liblinear", tol=1e-3)
    oof = np.zeros(len(idx_train))
    for fit, held in StratifiedKFold(3, shuffle=True, random_state=SEED).split(idx_train, labels[idx_train]):
        fold = clone(lexical).fit(lex[idx_train[fit]], labels[idx_train[fit]], sample_weight=weights[idx_train[fit]])
        oof[held] = fold.decision_function(lex[idx_train[held]])
    lexical.fit(lex[idx_train], labels[idx_train], sample_weight=weights[idx_train])
    full = LogisticRegression(C=2.0, class_weight="balanced", max_iter=5000)
    full.fit(np.hstack([emb[idx_train], oof[:, None]]), labels[idx_train], sample_weight=weights[idx_train])

    static = encoder.static(encoder.token_ids(texts))
    first = LogisticRegression(C=2.0, class_weight="balanced", max_iter=5000)
    first.fit(np.hstack([static[idx_train], oof[:, None]]), labels[idx_train], sample_weight=weights[idx_train])

    head = Head(name, full.coef_[0].astype(np.float32), float(full.intercept_[0]),
                lexical.coef_[0].astype(np.float32), float(lexical.intercept_[0]),
                gate_w=first.coef_[0].astype(np.float32), gate_b=float(first.intercept_[0]),
                sentences=RECIPES[name].sentences)
    hold_lex = lexical.decision_function(lex[idx_hold])
    hold_sent = [sentence_logit(head, encoder, texts[i]) for i in idx_hold]
    hold_full = np.array([head.score(e, float(z), s) for e, z, s in zip(emb[idx_hold], hold_lex, hold_sent)])
    hold_p = np.array([head.gate_score(v, float(z), s) for v, z, s in zip(static[idx_hold], hold_lex, hold_sent)])
    y = labels[idx_hold]
    gate = float(np.quantile(hold_p[y == 1], 1.0 - GATE_RECALL))
    combined = np.where(hold_p < gate, hold_p, hold_full)
    # as served: a text's views (decoded forms, the trailing request) count too
    combined, views = with_views(replace(head, gate=gate), encoder, [texts[i] for i in idx_hold], combined)
    hold_sources = [split.sources[i] for i in idx_hold]
    threshold = with_margin(budget_threshold(combined, hold_sources), combined[y == 1])
    best_cut, best_f1 = best_f1_threshold(combined, y)
    f1 = _f1(combined > threshold, y)
    skipped = float((hold_p[y == 0] < gate).mean())
    flagged = {}
    for source in sorted(set(hold_sources)):
        mask = np.array([s == source for s in hold_sources])
        flagged[source] = {"rows": int(mask.sum()), "flagged": round(float((combined[mask] > threshold).mean()), 4)}
    meta = {"encoder": encoder.version, "trained_rows": int(len(idx_train)), "holdout_rows": int(len(idx_hold)),
            "fp_budget": FP_BUDGET, "calibration": "each held-out benign_* file of train/ (those under 50 rows "
            "pooled) flags at most fp_budget", "holdout_f1": round(f1, 4),
            "holdout_recall": round(float((combined[y == 1] > threshold).mean()), 4),
            "holdout_auc": round(roc_auc(combined, y), 4), "holdout_tpr_at_1pct_fpr": round(tpr_at_fpr(combined, y, 0.01), 4),
            "holdout_best_f1": round(best_f1, 4), "holdout_best_f1_threshold": round(best_cut, 4),
            "holdout_by_source": flagged, "holdout_negatives_gated": round(skipped, 4), "seed": SEED,
            "train_seconds": round(time.perf_counter() - started, 1)}
    log(f"{name}: {views} views of held-out texts scored")
    log(f"{name}: threshold {threshold:.3f} ({FP_BUDGET:.0%} budget on held-out everyday files): held-out recall "
        f"{meta['holdout_recall']:.3f}, F1 {f1:.3f} (best F1 {best_f1:.3f} at {best_cut:.3f}), AUC "
        f"{meta['holdout_auc']:.4f}; gate {gate:.4f} skips the encoder for {skipped:.1%} of held-out negatives")
    cuts = budget_cuts(combined, hold_sources)
    for source, entry in flagged.items():
        cut = f", its own cut {cuts[source]:.3f}" if source in cuts else ""
        log(f"  {source}: {entry['rows']} held-out rows, {entry['flagged']:.1%} flagged{cut}")
    if "small sources" in cuts:
        log(f"  small sources pooled: cut {cuts['small sources']:.3f}")
    top = np.argsort(-np.where([is_traffic_source(s) for s in hold_sources], combined, -1.0))[:5]
    for k in top:
        log(f"  top everyday score {combined[k]:.3f} ({hold_sources[k]}): {texts[idx_hold[k]][:120]!r}")
    return replace(head, gate=gate, threshold=threshold, meta=meta)


def sentence_logit(head: Head, encoder: Encoder, text: str) -> float | None:
    return head.sentence_logit(encoder.sentence_features(text)) if head.sentences else None


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


def detector_file(name: str, layers: int = 0) -> str:
    """`prompt_injection.npz`, or `prompt_injection-l3.npz` for the heads on the first 3 layers."""
    return f"{name}-l{layers}.npz" if layers else f"{name}.npz"


def load_detector(name: str, directory: Path = WEIGHTS_DIR, layers: int = 0) -> Head:
    return Head.load(directory / detector_file(name, layers))


def score_texts(head: Head, encoder: Encoder, texts: Sequence[str]) -> tuple[np.ndarray, float]:
    """Batch scoring exactly as the gateway scores one text: the text and its views (`detector_views`),
    each by the gate, then the encoder, and the highest. Returns the scores and the share of texts
    (their own form, not the views) the gate decided without the encoder."""
    own, gated = _score_plain(head, encoder, texts)
    scores, _ = with_views(head, encoder, texts, own)
    return scores, float(gated.mean()) if len(texts) else 0.0


def with_views(head: Head, encoder: Encoder, texts: Sequence[str], own: np.ndarray) -> tuple[np.ndarray, int]:
    """`own` (the texts' own scores) raised to their views' scores where higher; and how many views."""
    views = [(k, v) for k, text in enumerate(texts) for v in detector_views(text)]
    scores = np.array(own, dtype=np.float64)
    if views:
        flat, _ = _score_plain(head, encoder, [v for _, v in views])
        np.maximum.at(scores, np.array([k for k, _ in views], np.int64), flat)
    return scores, len(views)


def _score_plain(head: Head, encoder: Encoder, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each text alone, as the gateway scores it (gate, then encoder): scores, and which the gate decided."""
    sentence: list[float | None] = [None] * len(texts)
    if head.sentences:  # one tokenisation gives the tokens and the sentences, as in the gateway
        pairs = [encoder.tokens_and_sentences(t) for t in texts]
        ids = [i for i, _ in pairs]
        sentence = [head.sentence_logit(parts) for _, parts in pairs]
    else:
        ids = encoder.token_ids(texts)
    vocab = encoder.tokenizer.get_vocab_size()
    lex = [head.lexical(lexical_from_ids(i, vocab)) for i in ids] if head.needs_lexical else [None] * len(texts)
    static = encoder.static(ids) if head.gate_w is not None else [None] * len(texts)
    scores = np.zeros(len(texts))
    gated = np.ones(len(texts), bool)
    todo = []
    for i, z in enumerate(lex):
        early = head.gated_out(z, static[i], sentence[i])
        if early is None:
            todo.append(i)
        else:
            scores[i] = early
    gated[todo] = False
    for start in range(0, len(todo), 256):
        part = todo[start:start + 256]
        for i, windows in zip(part, encoder.embed([texts[i] for i in part])):
            scores[i] = head.score(pooled(windows), lex[i], sentence[i])
    return scores, gated


# What `models evaluate` reports per detector, on test/ files: positives (task, label 1) against
# negatives (the same task's label 0 and every benign file), with FPR per negative file.
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
    task = EVAL_TASKS[name]
    files: dict[str, tuple[list[str], np.ndarray, list[str]]] = {}
    for path in sorted(data_dir.glob("*.jsonl")):
        rows = [r for r in read_rows(path) if r.get("task") in (task, "benign")]
        if rows:
            files[path.stem] = ([r["text"] for r in rows], np.array([int(r.get("label", 0)) for r in rows]),
                                [str(r.get("lang") or "?") for r in rows])
    report: dict = {"detector": name, "threshold": round(threshold, 4), "files": {}}
    scored: dict[str, np.ndarray] = {}
    gated_total = 0.0
    for stem, (texts, labels, _) in files.items():
        scores, gated = score(texts)
        scored[stem] = scores
        gated_total += gated * len(texts)
    s = np.concatenate(list(scored.values()))
    y = np.concatenate([labels for _, labels, _ in files.values()])
    negatives = s[y == 0]
    for stem, (texts, labels, langs) in files.items():
        scores = scored[stem]
        entry: dict = {"rows": len(texts)}
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
                entry["f1"] = round(_f1(scores > threshold, labels), 4)
                entry["auc"] = round(roc_auc(scores, labels), 4)
        if len(set(langs)) > 1:
            by_lang: dict[str, dict] = {}
            for lang in sorted(set(langs)):
                mask = np.array([g == lang for g in langs])
                by_lang[lang] = {"rows": int(mask.sum()), "flagged": round(float((scores[mask] > threshold).mean()), 4)}
            entry["languages"] = by_lang
        report["files"][stem] = entry
    report.update(rows=int(len(y)), positives=int(y.sum()), auc=round(roc_auc(s, y), 4),
                  tpr_at_1pct_fpr=round(tpr_at_fpr(s, y, 0.01), 4), tpr_at_5pct_fpr=round(tpr_at_fpr(s, y, 0.05), 4),
                  f1=round(_f1(s > threshold, y), 4), gated_without_encoder=round(gated_total / len(y), 4))
    return report


def _f1(predicted: np.ndarray, labels: np.ndarray) -> float:
    tp = float((predicted & (labels == 1)).sum())
    fp = float((predicted & (labels == 0)).sum())
    fn = float((~predicted & (labels == 1)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0
