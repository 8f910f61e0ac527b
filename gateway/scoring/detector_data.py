"""A built-in detector's training data: its recipe (which rows of which files, which synthetic and
hand-written lines), the rows it yields, and their fixed train / held-out split.

The recipe is reproducible: fixed seeds, fixed subsample sizes, data paths as arguments
(`guardrail-gateway models train-detectors --data DIR/train`). `detector_training.py` fits and calibrates
the heads on these rows; `detectors.py` serves them.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.scoring import synthetic

SEED = 20261121
LONG_CHARS, LONG_WEIGHT = 300, 3.0
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
