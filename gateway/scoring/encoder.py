"""The shared text encoder at run time: onnxruntime + tokenizers + numpy, nothing else.

`Encoder` is synchronous and thread-safe (one ORT session; ORT releases the GIL). Long texts are
split into windows of the model's 256 tokens; a text's embedding is one row per window, which heads
pool into their normalised mean. Beyond `max_windows`, the first windows and the last one are kept.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from gateway.scoring.heads import SentenceFeatures


@dataclass(frozen=True)
class EncoderOptions:
    precision: str = "int8"        # int8 | fp32 (int8 runs each window alone: see `run`)
    intra_threads: int = 0         # 0: min(usable cores, 4)
    spin_wait: bool = False        # ORT's threads busy-wait between operators (see ScoringConfig.spin_wait)
    max_windows: int = 4           # windows of 256 tokens scored per text
    max_chars: int = 32_000        # characters tokenised per text (the rest is not scored by models)
    layers: int = 0                # 0: the whole model; else its first `layers` layers (built-in detectors)


CGROUP_ROOT = "/sys/fs/cgroup"  # a container's own cgroup, as its namespace shows it


def usable_cores(cgroup: str | Path = CGROUP_ROOT) -> int:
    """The cores this process may run on: its CPU affinity, cut to its container's CPU quota (cgroup v2
    `cpu.max`, else v1 `cpu/cpu.cfs_quota_us` and `cpu.cfs_period_us`, under `cgroup`), rounded down
    and at least 1: a container limited to 2 CPUs on a 64-core host has 2, though os.cpu_count() says
    64. Quotas set on a parent cgroup, or on a process's cgroup outside a cgroup namespace, are not read."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    root = Path(cgroup)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        try:
            quota = (root / "cpu" / "cpu.cfs_quota_us").read_text().strip()
            period = (root / "cpu" / "cpu.cfs_period_us").read_text().strip()
        except OSError:
            return max(1, cores)
    try:
        if quota not in ("max", "-1") and int(period) > 0:
            cores = min(cores, max(1, int(quota) // int(period)))
    except ValueError:
        pass
    return max(1, cores)


def session_options(intra_threads: int, spin_wait: bool = False) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = intra_threads or min(usable_cores(), 4)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_cpu_mem_arena = True
    opts.log_severity_level = 3
    # Spinning threads hold their cores after each operator and call, which the event loop, the other
    # detectors' first tier and other workers need on a small or shared machine (see ScoringConfig).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin_wait else "0")
    return opts


def load_tokenizer(path: Path) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer


class Encoder:
    def __init__(self, model_path: Path, tokenizer_path: Path, version: str, hidden: int, max_tokens: int,
                 options: EncoderOptions = EncoderOptions()) -> None:
        self.version = version
        self.hidden = hidden
        self.max_tokens = max_tokens
        self.options = options
        # ORT's SkipLayerNormalization fusion makes this graph slower on CPU (measured on the int8 model:
        # 19 -> 15 ms for 201 tokens on one thread with the fusion off; fp32 does not fuse it).
        self.session = ort.InferenceSession(str(model_path), session_options(options.intra_threads, options.spin_wait),
                                            providers=["CPUExecutionProvider"],
                                            disabled_optimizers=["SkipLayerNormFusion"])
        # int8 quantises activations with one scale per call: windows batched together would move each
        # other's vectors. Running each window alone keeps a text's score independent of its neighbours.
        self.one_window_per_call = options.precision == "int8"
        self.tokenizer = load_tokenizer(tokenizer_path)
        cls, sep = self.tokenizer.token_to_id("[CLS]"), self.tokenizer.token_to_id("[SEP]")
        if cls is None or sep is None:
            raise ValueError("the tokenizer has no [CLS] or [SEP] token")
        self._cls, self._sep = cls, sep
        static = Path(model_path).parent / "static-fp16.npy"
        self.static_table = _static_table(static) if static.is_file() else None
        self._static_path = static
        _LOADED.add(self)

    @classmethod
    def load(cls, cache_dir: Path | None = None, options: EncoderOptions = EncoderOptions()) -> Encoder:
        from gateway.scoring.build import ModelError, encoder_files  # builds on first use when missing

        files = encoder_files(cache_dir)
        path = files.path(options.precision, options.layers)
        if not path.is_file():  # a cache compiled elsewhere, without this model, and no weights to build it
            raise ModelError(f"{path} is missing: run `guardrail-gateway models build` with the encoder's "
                             "weights installed")
        depth = f"-l{options.layers}" if options.layers else ""
        return cls(path, files.tokenizer, f"{files.version}{depth}-{options.precision}", files.hidden,
                   files.max_tokens, options)

    def key(self, text: str) -> bytes:
        """Cache key: the text's hash and the model version (a rebuilt model never serves stale vectors)."""
        return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16,
                               person=self.version.encode()[:16]).digest()

    def windows(self, texts: Sequence[str]) -> list[list[list[int]]]:
        """Token id windows per text, each with [CLS] ... [SEP] and at most max_tokens ids."""
        return [self.windows_of(ids) for ids in self.token_ids(texts)]

    def windows_of(self, ids: Sequence[int] | np.ndarray) -> list[list[int]]:
        """One text's token ids (no special tokens) cut into windows."""
        ids = [int(i) for i in ids]
        width = self.max_tokens - 2
        keep = self.options.max_windows
        chunks = [ids[i:i + width] for i in range(0, len(ids), width)] or [[]]
        if len(chunks) > keep:
            chunks = chunks[:keep - 1] + chunks[-1:] if keep > 1 else chunks[:1]
        return [[self._cls, *c, self._sep] for c in chunks]

    def static(self, token_ids: Sequence[np.ndarray]) -> np.ndarray:
        """Static embeddings: the normalised mean of each text's token rows in the distilled table."""
        if self.static_table is None:
            raise RuntimeError("the static token table is missing: run `guardrail-gateway models build`")
        out = np.zeros((len(token_ids), self.hidden), np.float32)
        for row, ids in enumerate(token_ids):
            if len(ids):
                mean = self.static_table[ids].mean(axis=0)
                out[row] = mean / max(float(np.linalg.norm(mean)), 1e-9)
        return out

    def sentence_features(self, text: str) -> SentenceFeatures:
        """Each sentence of `text` (`sentence_spans`) alone: its static embedding and lexical indices,
        for heads with `sentences` (see heads.py)."""
        return self.tokens_and_sentences(text)[1]

    def tokens_and_sentences(self, text: str) -> tuple[np.ndarray, SentenceFeatures]:
        """`token_ids` of `text` and its `sentence_features`, from one tokenisation: a sentence's
        tokens are the text's tokens that start inside it (WordPiece splits at whitespace, so they
        are the tokens of the sentence alone)."""
        if self.static_table is None:
            raise RuntimeError("the static token table is missing: run `guardrail-gateway models build`")
        text = text[:self.options.max_chars]
        enc = self.tokenizer.encode(text, add_special_tokens=False)
        ids = np.asarray(enc.ids, np.int64)
        starts = np.fromiter((o[0] for o in enc.offsets), np.int64, len(ids))
        bounds = np.searchsorted(starts, [a for span in sentence_spans(text) for a in span])
        parts = [ids[a:b] for a, b in zip(bounds[::2], bounds[1::2])]
        return ids, SentenceFeatures.from_ids(parts, self.static_table, self.tokenizer.get_vocab_size())

    def token_ids(self, texts: Sequence[str]) -> list[np.ndarray]:
        limit = self.options.max_chars
        # encode_batch_fast: no character offsets (nothing here reads them), ~25% less time.
        return [np.asarray(e.ids, np.int64)
                for e in self.tokenizer.encode_batch_fast([t[:limit] for t in texts], add_special_tokens=False)]

    def run(self, windows: Sequence[Sequence[int]]) -> np.ndarray:
        """Embed token windows in one batch, padded to the longest: [len(windows), hidden] float32
        (int8: one call per window)."""
        if not windows:
            return np.zeros((0, self.hidden), np.float32)
        if self.one_window_per_call and len(windows) > 1:
            return np.concatenate([self.run([w]) for w in windows])
        longest = max(len(w) for w in windows)
        ids = np.zeros((len(windows), longest), np.int64)
        mask = np.zeros((len(windows), longest), np.int64)
        for row, window in enumerate(windows):
            ids[row, :len(window)] = window
            mask[row, :len(window)] = 1
        return self.session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]

    def embed(self, texts: Sequence[str], batch_size: int = 32) -> list[np.ndarray]:
        """Synchronous batch embedding (training, the score CLI): one [windows, hidden] array per text."""
        per_text = self.windows(texts)
        flat = [(i, w) for i, ws in enumerate(per_text) for w in ws]
        flat.sort(key=lambda item: len(item[1]))  # similar lengths together: less padding
        rows: list[list[np.ndarray]] = [[] for _ in texts]
        order: list[list[int]] = [[] for _ in texts]
        position = {id(w): j for ws in per_text for j, w in enumerate(ws)}
        for start in range(0, len(flat), batch_size):
            part = flat[start:start + batch_size]
            vectors = self.run([w for _, w in part])
            for (i, w), vec in zip(part, vectors):
                rows[i].append(vec)
                order[i].append(position[id(w)])
        return [np.stack([r for _, r in sorted(zip(o, rs), key=lambda x: x[0])]) for o, rs in zip(order, rows)]


_LOADED: weakref.WeakSet[Encoder] = weakref.WeakSet()


def attach_static_tables(path: Path) -> int:
    """A static table built after encoders were loaded (in the background): the loaded encoders of its
    directory use it from now on. Returns how many."""
    attached = 0
    for encoder in list(_LOADED):
        if encoder.static_table is None and encoder._static_path == path and path.is_file():
            encoder.static_table = _static_table(path)
            attached += 1
    return attached


@functools.lru_cache(maxsize=4)
def _static_table(path: Path) -> np.ndarray:
    """The distilled token table, loaded once per file: the whole encoder and the detectors' shorter one
    read the same table (47 MB as float32), never write it."""
    table = np.load(path).astype(np.float32)
    table.flags.writeable = False
    return table


_SENTENCE_END = re.compile(r"(?<=[.!?\u3002\uff01\uff1f])\s+|\n+")
MIN_SENTENCE_CHARS = 12


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence or line of `text`, stripped; a piece shorter than 12 characters
    is joined to the next one. A text without any gives one span of the whole text."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for cut in [*(m.span() for m in _SENTENCE_END.finditer(text)), (len(text), len(text))]:
        piece = text[pos:cut[0]]
        stripped = piece.strip()
        if stripped:
            a = pos + len(piece) - len(piece.lstrip())
            b = a + len(stripped)
            if spans and spans[-1][1] - spans[-1][0] < MIN_SENTENCE_CHARS:
                spans[-1] = (spans[-1][0], b)
            else:
                spans.append((a, b))
        pos = cut[1]
    return spans or [(0, len(text))]
