"""Built-in detectors (prompt_injection, harmful, toxicity), as served: their shipped heads and the
batch scoring that scores a text exactly as the gateway does.

The shipped heads (`gateway/scoring/weights/*.npz`) need only numpy at run time. How they are made is in
three modules beside this one: `detector_data.py` (each detector's data recipe and its fixed
train / held-out split), `detector_training.py` (`guardrail-gateway models train-detectors`: fitting,
then the gate and threshold chosen on the held-out 20% of train/, never on test/) and
`detector_eval.py` (`guardrail-gateway models evaluate`: the report on test/).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gateway.scoring.detector_data import RECIPES
from gateway.scoring.encoder import Encoder
from gateway.scoring.heads import Head, lexical_from_ids, pooled
from gateway.text.views import detector_views

WEIGHTS_DIR = Path(__file__).parent / "weights"
DETECTORS = tuple(RECIPES)


def detector_file(name: str, layers: int = 0) -> str:
    """`prompt_injection.npz`, or `prompt_injection-l3.npz` for the heads on the first 3 layers."""
    return f"{name}-l{layers}.npz" if layers else f"{name}.npz"


def load_detector(name: str, directory: Path = WEIGHTS_DIR, layers: int = 0) -> Head:
    return Head.load(directory / detector_file(name, layers))


def sentence_logit(head: Head, encoder: Encoder, text: str) -> float | None:
    return head.sentence_logit(encoder.sentence_features(text)) if head.sentences else None


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
