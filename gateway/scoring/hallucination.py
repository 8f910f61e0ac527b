"""The hallucination heads (consistency, factual, input and response relevance): logistic regressions on
support features (support.py) plus, for relevance, the encoder cosine; shipped in weights/hallucination.json.

Trained by `tools/train_hallucination.py` on the train side of the labelled hallucination data, each
with the threshold of best balanced accuracy on out-of-fold scores (groups kept on one side); numpy
at run time. Scores are compliance: higher means consistent, correct or relevant.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from gateway.scoring.support import FEATURES

WEIGHTS = Path(__file__).parent / "weights" / "hallucination.json"
HEADS = ("consistency", "factual", "relevance_input", "relevance_output")
RELEVANCE_FEATURES = (*FEATURES, "encoder_cos")
# Response relevance reads the answer against the question and against the context; a request without
# one of them gives the other in both slots (the head was trained with such copies too).
RESPONSE_FEATURES = (*(f"q_{f}" for f in RELEVANCE_FEATURES), *(f"c_{f}" for f in RELEVANCE_FEATURES))


@dataclass(frozen=True)
class SupportHead:
    """Standardise, then a logistic regression: P(compliant) from a feature vector."""

    name: str
    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    w: np.ndarray
    b: float
    threshold: float
    meta: dict[str, Any] = field(default_factory=dict)
    columns: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        available = all_features(self.name)
        unknown = [f for f in self.features if f not in available]
        if unknown:
            raise ValueError(f"head {self.name} reads unknown features {unknown}: rerun tools/train_hallucination.py")
        object.__setattr__(self, "columns", np.array([available.index(f) for f in self.features], np.int64))

    def score(self, x: np.ndarray) -> float:
        """P(compliant) from the full feature vector (`all_features`): the head reads its own columns."""
        x = np.asarray(x, np.float64)[self.columns]
        z = float(((x - self.mean) / self.scale) @ self.w + self.b)
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))))

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "mean": _rounded(self.mean), "scale": _rounded(self.scale),
                "w": _rounded(self.w), "b": round(self.b, 7), "threshold": round(self.threshold, 4), "meta": self.meta}

    @classmethod
    def from_dict(cls, name: str, raw: dict[str, Any]) -> SupportHead:
        return cls(name, tuple(raw["features"]), np.asarray(raw["mean"]), np.asarray(raw["scale"]),
                   np.asarray(raw["w"]), float(raw["b"]), float(raw["threshold"]), dict(raw.get("meta", {})))


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 7) for v in values]


def load_heads(path: Path = WEIGHTS) -> dict[str, SupportHead]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {name: SupportHead.from_dict(name, raw[name]) for name in HEADS if name in raw}


def all_features(head: str) -> tuple[str, ...]:
    """The feature vector computed for a head; it may read only some of it (`SupportHead.features`)."""
    return {"relevance_input": RELEVANCE_FEATURES, "relevance_output": RESPONSE_FEATURES}.get(head, FEATURES)


def save_heads(heads: dict[str, SupportHead], path: Path = WEIGHTS) -> None:
    path.write_text(json.dumps({name: head.to_dict() for name, head in heads.items()}, indent=1) + "\n",
                    encoding="utf-8")
