"""Heads: small linear models on the shared encoder's embedding and on lexical n-gram features.

Lexical features are the text's WordPiece unigrams and hashed bigrams (from the encoder's own
tokenizer, in Rust: microseconds for a 1,000-character prompt), binary and L2-normalised. A head may
have a *gate*: a cheap first tier on [static embedding, lexical logit] (the static embedding is the
mean of the text's rows in a token table distilled from the encoder: no transformer). Texts the gate
scores below `gate` are decided there and never reach the encoder; the rest are scored by the full
model on [mean window embedding, lexical logit]. The gate is calibrated on held-out data to pass
>= 99.5% of positives through to the full model.

A head with `sentences` also scores each sentence of the text alone with its first-tier model and
keeps the highest logit: an instruction hidden in a long benign text (an indirect injection in an
email, a request with a command appended) stands out in its own sentence while the whole text's mean
embedding dilutes it. That logit joins the gate (the higher of text and sentence passes) and is
averaged with the full model's logit. It costs no encoder run: the sentences' static embeddings come
from the distilled table.

Heads are stored as one `.npz` (arrays) with a JSON `meta` entry; runtime needs only numpy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

LEX_DIM = 1 << 18
_BIGRAM_MUL = np.int64(1_000_003)


def lexical_indices(tokenizer: Tokenizer, texts: Sequence[str], max_chars: int = 32_000) -> list[np.ndarray]:
    """Per text: the sorted unique feature indices (unigram ids, then hashed bigrams)."""
    vocab = tokenizer.get_vocab_size()
    return [lexical_from_ids(np.asarray(enc.ids, np.int64), vocab)
            for enc in tokenizer.encode_batch_fast([t[:max_chars] for t in texts], add_special_tokens=False)]


def lexical_from_ids(ids: np.ndarray, vocab: int) -> np.ndarray:
    bigrams = vocab + (ids[:-1] * _BIGRAM_MUL + ids[1:]) % (LEX_DIM - vocab)
    return np.unique(np.concatenate([ids, bigrams]))


@dataclass(frozen=True)
class SentenceFeatures:
    """A text's sentences, each alone (`Encoder.sentence_features`): static embeddings [n, hidden], and
    every sentence's unique lexical indices, flat, with the sentence each belongs to."""

    static: np.ndarray
    lexical: np.ndarray
    sentence: np.ndarray

    @classmethod
    def from_ids(cls, ids: Sequence[np.ndarray], table: np.ndarray, vocab: int) -> SentenceFeatures:
        lengths = np.array([len(i) for i in ids], np.int64)
        flat = np.concatenate(ids).astype(np.int64) if len(ids) else np.zeros(0, np.int64)
        static = np.zeros((len(ids), table.shape[1]), np.float32)
        full = lengths > 0
        if flat.size:
            starts = (np.cumsum(lengths) - lengths)[full]
            means = np.add.reduceat(table[flat], starts, axis=0, dtype=np.float32) / lengths[full, None]
            static[full] = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-9)
        owner = np.repeat(np.arange(len(ids)), lengths)
        inside = owner[:-1] == owner[1:]  # bigrams within a sentence, as lexical_from_ids makes them
        bigrams = vocab + (flat[:-1][inside] * _BIGRAM_MUL + flat[1:][inside]) % (LEX_DIM - vocab)
        keys = np.unique(np.concatenate([owner * LEX_DIM + flat, owner[:-1][inside] * LEX_DIM + bigrams]))
        return cls(static, keys % LEX_DIM, keys // LEX_DIM)


def lexical_logit(weights: np.ndarray, bias: float, indices: np.ndarray) -> float:
    if indices.size == 0:
        return float(bias)
    return float(weights[indices].sum() / np.sqrt(indices.size) + bias)


def sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -40.0, 40.0)))


def pooled(vectors: np.ndarray) -> np.ndarray:
    """A text's embedding from its windows: the normalised mean."""
    mean = vectors.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else mean


@dataclass(frozen=True)
class Head:
    """sigmoid(emb_w . [embedding, lexical logit] + emb_b), optionally gated by the lexical model."""

    name: str
    emb_w: np.ndarray | None               # [hidden (+1 if lexical)]
    emb_b: float
    lex_w: np.ndarray | None = None        # [LEX_DIM]
    lex_b: float = 0.0
    gate: float | None = None              # gate probability below which the encoder is skipped
    gate_w: np.ndarray | None = None       # [hidden + 1]: the gate model on [static embedding, lexical logit]
    gate_b: float = 0.0
    threshold: float = 0.5                 # calibrated on held-out data
    meta: dict[str, Any] = field(default_factory=dict)
    sentences: bool = False                # also score sentences alone with the first tier (see above)

    @property
    def needs_lexical(self) -> bool:
        return self.lex_w is not None

    def lexical(self, indices: np.ndarray) -> float:
        assert self.lex_w is not None
        return lexical_logit(self.lex_w, self.lex_b, indices)

    def gate_logit(self, static: np.ndarray, lex_logit: float) -> float:
        assert self.gate_w is not None
        return float(np.append(static, np.float32(lex_logit)) @ self.gate_w) + self.gate_b

    def gate_score(self, static: np.ndarray, lex_logit: float, sentence: float | None = None) -> float:
        """The first tier's probability: the text's, or its highest sentence's if that is higher."""
        z = self.gate_logit(static, lex_logit)
        return float(sigmoid(z if sentence is None else max(z, sentence)))

    def sentence_logit(self, sentences: SentenceFeatures) -> float:
        """The highest first-tier logit over a text's sentences, each scored alone."""
        assert self.gate_w is not None and self.lex_w is not None
        n = len(sentences.static)
        sums = np.bincount(sentences.sentence, weights=self.lex_w[sentences.lexical], minlength=n)
        counts = np.bincount(sentences.sentence, minlength=n)
        lex = sums / np.sqrt(np.maximum(counts, 1)) + self.lex_b
        return float((sentences.static @ self.gate_w[:-1] + lex * self.gate_w[-1]).max() + self.gate_b)

    def gated_out(self, lex_logit: float | None, static: np.ndarray | None = None,
                  sentence: float | None = None) -> float | None:
        """The first tier's probability if it decides the text alone, else None (ask the encoder).
        `sentence`: `sentence_logit` of the text, for heads with `sentences`."""
        if self.gate is None or lex_logit is None:
            return None
        if self.gate_w is not None:
            if static is None:
                return None
            p = self.gate_score(static, lex_logit, sentence)
        else:
            p = float(sigmoid(lex_logit))
        return p if p < self.gate else None

    def score(self, embedding: np.ndarray, lex_logit: float | None = None, sentence: float | None = None) -> float:
        if self.emb_w is None:
            assert lex_logit is not None
            return float(sigmoid(lex_logit))
        features = embedding if lex_logit is None else np.append(embedding, np.float32(lex_logit))
        z = float(features @ self.emb_w) + self.emb_b
        return float(sigmoid(z if sentence is None else (z + sentence) / 2))

    def save(self, path: Path) -> None:
        arrays: dict[str, np.ndarray] = {}
        if self.emb_w is not None:
            arrays["emb_w"] = self.emb_w.astype(np.float32)
        if self.lex_w is not None:
            arrays["lex_w"] = self.lex_w.astype(np.float16)
        if self.gate_w is not None:
            arrays["gate_w"] = self.gate_w.astype(np.float32)
        meta = {**self.meta, "name": self.name, "emb_b": self.emb_b, "lex_b": self.lex_b, "gate": self.gate,
                "gate_b": self.gate_b, "threshold": self.threshold, "sentences": self.sentences}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> Head:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(bytes(data["meta"]).decode())
            emb_w = data["emb_w"].astype(np.float32) if "emb_w" in data else None
            lex_w = data["lex_w"].astype(np.float32) if "lex_w" in data else None
            gate_w = data["gate_w"].astype(np.float32) if "gate_w" in data else None
        return cls(meta.pop("name"), emb_w, float(meta.pop("emb_b")), lex_w, float(meta.pop("lex_b")),
                   meta.pop("gate"), gate_w, float(meta.pop("gate_b", 0.0)), float(meta.pop("threshold")), meta,
                   bool(meta.pop("sentences", False)))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, weights: np.ndarray | None = None,
                 iterations: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method (dense, small: policy heads on embeddings).

    Deterministic and fast (a 385x385 solve per step); classes are balanced by sample weights unless
    `weights` is given. Returns (w, b)."""
    n, d = x.shape
    y = y.astype(np.float64)
    if weights is None:
        pos = max(y.sum(), 1.0)
        neg = max(n - y.sum(), 1.0)
        weights = np.where(y > 0, n / (2 * pos), n / (2 * neg))
    xb = np.hstack([x.astype(np.float64), np.ones((n, 1))])
    beta = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0  # the bias is not penalised
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ beta, -40, 40)))
        grad = xb.T @ (weights * (p - y)) + reg * beta
        hess = (xb * (weights * p * (1 - p))[:, None]).T @ xb + np.diag(reg) + 1e-9 * np.eye(d + 1)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-6:
            break
    return beta[:-1].astype(np.float32), float(beta[-1])
