"""`onnx_classifier`: any user-supplied ONNX sequence classifier with its Hugging Face `tokenizer.json`.

Params:
  model:          path to the .onnx file (required). Inputs: `input_ids` (required), `attention_mask`
                  and `token_type_ids` (fed when present: all ones / all zeros), int64 or int32.
                  The chosen output (`logits` if present, else the first) is [batch, labels]
                  (unit dimensions before the labels, as in [batch, 1, labels], are accepted).
  tokenizer:      path to the tokenizer.json (required); special tokens come from its post-processor.
  labels:         label names in logit order (required, at least 2, unique).
  positive_label: the label whose probability is the value (required, one of `labels`).
  max_tokens:     tokens per text, special tokens included (default 512); the rest is not scored.
  threads:        ORT intra-op threads (default 0: min(cores, 4)).

Relative paths resolve against the working directory at load. The model is checked at load time
(its inputs, and one tiny dummy run whose logits must have len(labels) columns).

Value: float in [0,1], softmax(logits)[positive_label]. No spans (`max_span_chars` = 0).
`measure_async` runs inference on one dedicated thread owned by the metric, never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from gateway.metrics.context import EvalContext
from gateway.metrics.types import MetricValue, ParamError
from gateway.scoring.encoder import session_options

_ALLOWED = ("model", "tokenizer", "labels", "positive_label", "max_tokens", "threads")
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_INT_TYPES = {"tensor(int64)": np.int64, "tensor(int32)": np.int32}
# Characters tokenised per text, per token of `max_tokens`: bounds tokenisation cost on huge texts
# while leaving far more text than the truncated window needs (ordinary text is 3-6 chars a token).
CHARS_PER_TOKEN = 64


def _file(params: Mapping[str, Any], key: str) -> Path:
    value = params.get(key)
    if value is None:
        raise ParamError((key,), "required: a file path")
    if not isinstance(value, str | os.PathLike) or not str(value):
        raise ParamError((key,), "must be a file path")
    path = Path(value).expanduser().absolute()
    if not path.is_file():
        raise ParamError((key,), f"file not found: {path}")
    return path


def _int(params: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ParamError((key,), f"must be an integer >= {minimum}")
    return value


class OnnxClassifierMetric:
    """An ONNX sequence classifier's probability of one label; thread-safe."""

    max_span_chars = 0
    blocking = False

    def __init__(self, model: Path, tokenizer: Path, labels: Sequence[str], positive_label: str,
                 max_tokens: int = 512, threads: int = 0) -> None:
        """Load and check the model and tokenizer; a problem is a ParamError naming the parameter."""
        self.model_path = model
        self.labels = tuple(labels)
        self.positive_label = positive_label
        self.max_tokens = max_tokens
        self._positive = self.labels.index(positive_label)
        self._max_chars = max_tokens * CHARS_PER_TOKEN

        try:
            self.tokenizer = Tokenizer.from_file(str(tokenizer))
        except Exception as exc:
            raise ParamError(("tokenizer",), f"cannot load tokenizer {tokenizer}: {exc}") from exc
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=max_tokens)
        processor = self.tokenizer.post_processor
        special = processor.num_special_tokens_to_add(False) if processor is not None else 0
        if max_tokens <= special:
            raise ParamError(("max_tokens",), f"must exceed the {special} special tokens the tokenizer adds")

        try:
            self.session = ort.InferenceSession(str(model), session_options(threads),
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ParamError(("model",), f"cannot load ONNX model {model}: {exc}") from exc
        inputs = {inp.name: inp.type for inp in self.session.get_inputs()}
        if "input_ids" not in inputs:
            raise ParamError(("model",), f"model has no 'input_ids' input (inputs: {', '.join(inputs)})")
        unknown = [name for name in inputs if name not in _INPUTS]
        if unknown:
            raise ParamError(("model",), f"unsupported model input {unknown[0]!r}; supported: {', '.join(_INPUTS)}")
        bad = [name for name, kind in inputs.items() if kind not in _INT_TYPES]
        if bad:
            raise ParamError(("model",), f"input {bad[0]!r} is {inputs[bad[0]]}, expected int64 or int32")
        self._inputs = {name: _INT_TYPES[kind] for name, kind in inputs.items()}
        outputs = [out.name for out in self.session.get_outputs()]
        self._output = "logits" if "logits" in outputs else outputs[0]

        try:
            logits = self._run(self._encode("hello"))
        except Exception as exc:
            raise ParamError(("model",), f"test inference failed: {exc}") from exc
        if logits.ndim < 2 or any(size != 1 for size in logits.shape[:-1]):  # [1, labels] or [1, 1, labels]
            raise ParamError(("model",), f"output {self._output!r} has shape {list(logits.shape)} for one text; "
                                         "expected [batch, labels] logits of a sequence classifier")
        if logits.shape[-1] != len(self.labels):
            raise ParamError(("labels",), f"{len(self.labels)} labels, but the model outputs "
                                          f"{logits.shape[-1]} logits")
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="onnx-classifier")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> OnnxClassifierMetric:
        unknown = [key for key in params if key not in _ALLOWED]
        if unknown:
            raise ParamError((unknown[0],), f"unknown parameter; allowed: {', '.join(_ALLOWED)}")
        model = _file(params, "model")
        tokenizer = _file(params, "tokenizer")
        labels = params.get("labels")
        if not isinstance(labels, Sequence) or isinstance(labels, str) or len(labels) < 2:
            raise ParamError(("labels",), "required: a list of at least 2 label names, in logit order")
        for i, label in enumerate(labels):
            if not isinstance(label, str) or not label:
                raise ParamError(("labels", i), "must be a non-empty string")
            if label in labels[:i]:
                raise ParamError(("labels", i), f"duplicate label {label!r}")
        positive = params.get("positive_label")
        if not isinstance(positive, str):
            raise ParamError(("positive_label",), f"required: one of {', '.join(labels)}")
        if positive not in labels:
            raise ParamError(("positive_label",), f"{positive!r} is not in labels ({', '.join(labels)})")
        return cls(model, tokenizer, labels, positive,
                   _int(params, "max_tokens", 512, 1), _int(params, "threads", 0, 0))

    def _encode(self, text: str) -> list[int]:
        ids = self.tokenizer.encode(text[:self._max_chars]).ids
        return ids or [0]  # a tokenizer without special tokens gives nothing for empty text

    def _run(self, ids: list[int]) -> np.ndarray:
        feed = {}
        for name, dtype in self._inputs.items():
            if name == "input_ids":
                feed[name] = np.asarray([ids], dtype)
            elif name == "attention_mask":
                feed[name] = np.ones((1, len(ids)), dtype)
            else:
                feed[name] = np.zeros((1, len(ids)), dtype)
        return np.asarray(self.session.run([self._output], feed)[0])

    def measure(self, text: str) -> MetricValue:
        logits = self._run(self._encode(text)).reshape(-1).astype(np.float64)
        if not np.all(np.isfinite(logits)):
            raise ValueError(f"model returned non-finite logits: {logits.tolist()}")
        exp = np.exp(logits - logits.max())
        return MetricValue(float(exp[self._positive] / exp.sum()))

    async def measure_async(self, text: str, context: EvalContext | None = None) -> MetricValue:
        """`measure` on the metric's own inference thread (a classifier reads no context)."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.measure, text)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def __repr__(self) -> str:
        return (f"OnnxClassifierMetric(model={str(self.model_path)!r}, positive_label={self.positive_label!r}, "
                f"max_tokens={self.max_tokens})")
