"""Support features of a claim against a source (consistency, factual, relevance heads): numpy only.

Each sentence of the claim is matched against the source's windows of three sentences: its words,
bigrams, numbers and names found there (in the whole source and in the best window) and its negations
against the best window's. Per feature the weakest sentence and the mean are kept, so one unsupported
sentence shows. Cost grows linearly with the source (one regex pass, one set per window): no encoder
pass over the source, however long. (Static-embedding cosines to the nearest source sentence were
measured as a feature too and added nothing on held-out folds: tools/train_hallucination.py.)
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from gateway.scoring.encoder import sentence_spans

WORD = re.compile(r"\w+(?:[.,]\d+)*", re.UNICODE)
NUMBER = re.compile(r"\d")
NEGATIONS = frozenset({"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "t",
                       "cannot", "didn", "doesn", "isn", "wasn", "weren", "aren", "won", "hasn", "haven"})
STOP = frozenset("""a an the and or but of to in on at for from by with as is are was were be been being it its
this that these those he she they we you i his her their our your my me him them us there here which who whom
what when where why how will would can could should may might do does did has have had so than then also
into about over after before up out if not no just very s""".split())
MAX_SOURCE_CHARS = 32_000   # the rest of a source is not read (the encoder's own cap)
MAX_CLAIM_SENTENCES = 64
PER_SENTENCE = ("cov_word", "cov_bigram", "local_word", "local_bigram", "cov_number", "cov_name",
                "negation_gap")
FEATURES = tuple(f"{agg}_{name}" for name in PER_SENTENCE for agg in ("min", "mean")) + (
    "log_claim_words", "log_source_words", "claim_sentences", "cov_word_all")


def _words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def _names(text: str) -> set[str]:
    """Capitalised words not at a sentence start: a crude named-entity set."""
    found = set()
    for m in re.finditer(r"(?<![.!?]\s)(?<!^)\b[A-Z][\w'-]+", text):
        found.add(m.group().lower())
    return found


def _bigrams(words: Sequence[str]) -> set[tuple[str, str]]:
    return set(zip(words, words[1:]))


def _share(part: set, whole: set, empty: float = 1.0) -> float:
    return len(part & whole) / len(part) if part else empty


def support_features(claim: str, source: str) -> np.ndarray:
    """The `FEATURES` vector of `claim` against `source`."""
    source = source[:MAX_SOURCE_CHARS]
    claims = [claim[a:b] for a, b in sentence_spans(claim)][:MAX_CLAIM_SENTENCES]
    src_sents = [source[a:b] for a, b in sentence_spans(source)] if source.strip() else [""]
    src_words = [_words(s) for s in src_sents]
    windows = [sum(src_words[max(0, i - 1):i + 2], []) for i in range(len(src_words))]
    win_sets = [set(w) for w in windows]
    win_bigrams = [_bigrams(w) for w in windows]
    all_words = set().union(*win_sets)
    all_bigrams = set().union(*win_bigrams)
    rows = []
    for sent in claims:
        words = _words(sent)
        content = {w for w in words if w not in STOP}
        bigrams = _bigrams(words)
        local = [_share(content, ws) for ws in win_sets]
        best = int(np.argmax(local)) if local else 0
        numbers = {w for w in words if NUMBER.search(w)}
        neg_claim = sum(w in NEGATIONS for w in words)
        neg_src = sum(w in NEGATIONS for w in windows[best]) if windows else 0
        rows.append((
            _share(content, all_words), _share(bigrams, all_bigrams), local[best] if local else 0.0,
            _share(bigrams, win_bigrams[best]) if win_bigrams else 0.0,
            _share(numbers, all_words), _share(_names(sent), all_words),
            float(neg_claim != neg_src),
        ))
    per = np.asarray(rows, np.float64)
    agg = np.stack([per.min(axis=0), per.mean(axis=0)], axis=1).reshape(-1)
    claim_words = _words(claim)
    extra = [np.log1p(len(claim_words)), np.log1p(sum(len(w) for w in src_words)), min(len(claims), 20) / 20,
             _share(set(claim_words), all_words)]
    return np.concatenate([agg, extra]).astype(np.float32)
