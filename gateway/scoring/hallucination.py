"""The hallucination heads (consistency, factual, input and response relevance): logistic regressions or
gradient-boosted trees on support features (support.py) plus, for relevance, the encoder cosine; shipped
in weights/hallucination.json.

Trained by `tools/train_hallucination.py` on the train side of the labelled hallucination data, each
with the threshold of best balanced accuracy on out-of-fold scores (groups kept on one side), moved to
0.5 by the bias; numpy at run time. Scores are compliance: higher means consistent, correct or relevant.
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
    """P(compliant) from a feature vector: a logistic regression on standardised features, or (`trees`)
    gradient-boosted trees on the raw ones, each tree rows of [feature (-1: leaf), threshold, left,
    right, value], a value going left when at or below the threshold (scikit-learn's convention)."""

    name: str
    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    w: np.ndarray
    b: float
    threshold: float
    meta: dict[str, Any] = field(default_factory=dict)
    trees: tuple[np.ndarray, ...] = ()
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
        z = self.b + (float(((x - self.mean) / self.scale) @ self.w) if len(self.w) else 0.0)
        for tree in self.trees:
            node = tree[0]
            while node[0] >= 0:
                node = tree[int(node[2] if x[int(node[0])] <= node[1] else node[3])]
            z += float(node[4])
        return float(1.0 / (1.0 + np.exp(-np.clip(z, -30, 30))))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"features": list(self.features), "mean": _rounded(self.mean),
                               "scale": _rounded(self.scale), "w": _rounded(self.w), "b": round(self.b, 7),
                               "threshold": round(self.threshold, 4), "meta": self.meta}
        if self.trees:
            out["trees"] = [[[int(f), float(t), int(a), int(c), round(float(v), 7)] for f, t, a, c, v in tree]
                            for tree in self.trees]
        return out

    @classmethod
    def from_dict(cls, name: str, raw: dict[str, Any]) -> SupportHead:
        return cls(name, tuple(raw["features"]), np.asarray(raw["mean"]), np.asarray(raw["scale"]),
                   np.asarray(raw["w"]), float(raw["b"]), float(raw["threshold"]), dict(raw.get("meta", {})),
                   tuple(np.asarray(t, np.float64) for t in raw.get("trees", ())))


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 7) for v in values]


def load_heads(path: Path = WEIGHTS) -> dict[str, SupportHead]:
    raw = json.loads(path.read_text(encoding="utf-8"))
    return {name: SupportHead.from_dict(name, raw[name]) for name in HEADS if name in raw}


def all_features(head: str) -> tuple[str, ...]:
    """The feature vector computed for a head; it may read only some of it (`SupportHead.features`)."""
    return {"relevance_input": RELEVANCE_FEATURES, "relevance_output": RESPONSE_FEATURES}.get(head, FEATURES)


def save_heads(heads: dict[str, SupportHead], path: Path = WEIGHTS) -> None:
    """One line per head and key (a tree per line): small diffs without a line per number."""
    parts = []
    for name, head in heads.items():
        fields = []
        for key, value in head.to_dict().items():
            if key == "trees":
                body = ",\n   ".join(json.dumps(tree, separators=(",", ":")) for tree in value)
                fields.append(f'  "trees": [\n   {body}]')
            else:
                fields.append(f"  {json.dumps(key)}: {json.dumps(value)}")
        parts.append(f"{json.dumps(name)}: {{\n" + ",\n".join(fields) + "\n}")
    path.write_text("{" + ",\n".join(parts) + "}\n", encoding="utf-8")
