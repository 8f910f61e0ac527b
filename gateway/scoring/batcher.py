"""Async access to the encoder: score cache, in-flight de-duplication and dynamic micro-batching.

All state is touched only on the event loop; the encoder runs on one dedicated thread (ORT uses its
own intra-op threads inside it), so inference never blocks the loop.

Batching is adaptive: when the encoder is idle and nothing else is queued, a lone text runs at once
(waiting would only add latency at low load); when other texts are queued or the encoder is busy,
the batcher collects for at most `max_wait_ms` or until `max_batch` windows, runs them in one call,
and fans the rows back out.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from gateway.scoring.encoder import Encoder
from gateway.scoring.heads import SentenceFeatures, lexical_from_ids


FEATURES_BUDGET = 64 << 20  # bytes of first-tier features kept (tokens, lexical indices, static embeddings)


@dataclass(frozen=True)
class TextFeatures:
    """What every head's first tier reads of a text, computed once however many heads ask."""

    ids: np.ndarray                 # token ids, no special tokens
    lexical: np.ndarray             # lexical feature indices
    static: np.ndarray | None       # static embedding (None without the distilled table)
    # each sentence's static embedding and lexical indices (Encoder.sentence_features), when a head
    # with `sentences` asked
    sentences: SentenceFeatures | None = None

    @property
    def nbytes(self) -> int:
        parts = [self.ids, self.lexical, self.static]
        if self.sentences is not None:
            parts += [self.sentences.static, self.sentences.lexical, self.sentences.sentence]
        return sum(a.nbytes for a in parts if a is not None)


@dataclass
class BatchStats:
    """Counters for Prometheus (read by the telemetry collector)."""

    batches: int = 0
    windows: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    queued: int = 0
    batch_sizes: list[int] = field(default_factory=list)  # drained by the collector
    inference_seconds: float = 0.0


class EmbeddingService:
    def __init__(self, encoder: Encoder, max_batch: int = 32, max_wait_ms: float = 1.0,
                 cache_entries: int = 4096, batching: bool = True) -> None:
        self.encoder = encoder
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max(0.0, max_wait_ms) / 1000.0
        self.batching = batching
        self.cache_entries = cache_entries
        # set when a head that reads sentence features is served here: every text's features then
        # include them, from the one tokenisation (not a second one when that head asks after another)
        self.sentences = False
        self.stats = BatchStats()
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self._features: OrderedDict[bytes, TextFeatures] = OrderedDict()
        self._features_bytes = 0
        self._inflight: dict[bytes, asyncio.Future[np.ndarray]] = {}
        self._queue: list[tuple[list[list[int]], asyncio.Future[np.ndarray]]] = []
        self._busy = False
        self._scheduled = False
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="encoder")

    @property
    def version(self) -> str:
        return self.encoder.version

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def features(self, text: str, sentences: bool = False) -> TextFeatures:
        """Tokens, lexical indices and static embedding of `text` (LRU-cached like embeddings): the
        detectors on a stage all read them, and the encoder reuses the tokens. `sentences` (or the
        service's `sentences`): also each sentence's (with the distilled table only)."""
        enc = self.encoder
        sentences = sentences or self.sentences
        key = enc.key(text)
        feats = self._features.get(key)
        if feats is not None:
            self._features.move_to_end(key)
            if sentences and feats.sentences is None and feats.static is not None:
                self._keep(key, replace(feats, sentences=enc.sentence_features(text)))
            return self._features[key]
        parts = None
        if sentences and enc.static_table is not None:
            ids, parts = enc.tokens_and_sentences(text)
        else:
            ids = enc.token_ids([text])[0]
        static = enc.static([ids])[0] if enc.static_table is not None else None
        feats = TextFeatures(ids, lexical_from_ids(ids, enc.tokenizer.get_vocab_size()), static, parts)
        self._keep(key, feats)
        return feats

    def _keep(self, key: bytes, feats: TextFeatures) -> None:
        """Cache `feats` as the newest entry; the oldest go while there are more than `cache_entries`
        (at least 64) or they hold more than FEATURES_BUDGET bytes (a 32,000-character text's
        features take about 0.5 MB). The newest entry always stays."""
        old = self._features.pop(key, None)
        if old is not None:
            self._features_bytes -= old.nbytes
        self._features[key] = feats
        self._features_bytes += feats.nbytes
        while len(self._features) > 1 and (len(self._features) > max(self.cache_entries, 64)
                                           or self._features_bytes > FEATURES_BUDGET):
            self._features_bytes -= self._features.popitem(last=False)[1].nbytes

    async def embed(self, text: str) -> np.ndarray:
        """[windows, hidden] for `text`, from the cache, a request already computing it, or a batch."""
        key = self.encoder.key(text)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            self.stats.cache_hits += 1
            return hit
        pending = self._inflight.get(key)
        if pending is not None:
            self.stats.cache_hits += 1
            return await asyncio.shield(pending)
        self.stats.cache_misses += 1
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._inflight[key] = future
        try:
            known = self._features.get(key)
            windows = self.encoder.windows_of(known.ids) if known is not None else self.encoder.windows([text])[0]
            self._queue.append((windows, future))
            self.stats.queued += len(windows)
            self._kick(loop)
            vectors = await asyncio.shield(future)
        finally:
            self._inflight.pop(key, None)
        self._store(key, vectors)
        return vectors

    def _store(self, key: bytes, vectors: np.ndarray) -> None:
        if self.cache_entries <= 0:
            return
        self._cache[key] = vectors
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_entries:
            self._cache.popitem(last=False)

    def _kick(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._busy or self._scheduled:
            return  # the running batch drains the queue when it finishes
        queued = sum(len(w) for w, _ in self._queue)
        if not self.batching or queued >= self.max_batch or self.max_wait_s == 0 or len(self._queue) == 1:
            self._start(loop)
        else:
            self._scheduled = True
            loop.call_later(self.max_wait_s, self._start, loop)

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        if self._busy or not self._queue:
            return
        take: list[tuple[list[list[int]], asyncio.Future[np.ndarray]]] = []
        windows = 0
        limit = self.max_batch if self.batching else 1
        while self._queue and (not take or windows + len(self._queue[0][0]) <= self.max_batch) and len(take) < limit:
            item = self._queue.pop(0)
            take.append(item)
            windows += len(item[0])
        self.stats.queued -= windows
        self._busy = True
        flat = [w for ws, _ in take for w in ws]
        task = loop.run_in_executor(self._executor, self._run, flat)
        task.add_done_callback(lambda done: self._finish(loop, take, done))

    def _run(self, windows: list[list[int]]) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        order = sorted(range(len(windows)), key=lambda i: len(windows[i]))
        out = np.empty((len(windows), self.encoder.hidden), np.float32)
        # Similar lengths share a call so padding stays small; split where lengths jump.
        for group in _length_groups(order, lambda i: len(windows[i])):
            out[group] = self.encoder.run([windows[i] for i in group])
        return out, time.perf_counter() - start

    def _finish(self, loop: asyncio.AbstractEventLoop, take, done) -> None:
        self._busy = False
        try:
            vectors, seconds = done.result()
        except BaseException as exc:  # the encoder failed: every caller of this batch gets the error
            for _, future in take:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(str(exc)))
        else:
            self.stats.batches += 1
            self.stats.windows += len(vectors)
            self.stats.inference_seconds += seconds
            if len(self.stats.batch_sizes) < 10_000:
                self.stats.batch_sizes.append(len(vectors))
            row = 0
            for windows, future in take:
                if not future.done():
                    future.set_result(vectors[row:row + len(windows)])
                row += len(windows)
        if self._queue:
            self._start(loop)  # what queued meanwhile has waited a whole batch already


def _length_groups(order: list[int], length: Callable[[int], int]) -> list[list[int]]:
    """Split indices (sorted by length) where the next length is over 1.5x the group's first."""
    groups: list[list[int]] = []
    for i in order:
        if groups and length(i) <= max(16, int(length(groups[-1][0]) * 1.5)):
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups
