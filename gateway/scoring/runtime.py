"""The scoring runtime: the shared encoder's embedding service (and the detectors' 3-layer one, when a
detector uses it), loaded heads.

No module holds one: the app builds one from the config's `scoring` section (`create_app`) and passes
it to the plan, whose model-based metrics load what they need at compile time (at startup, never on a
request), so the first request is not slow. CLI commands and tests build their own.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.config.schema import ScoringConfig

if TYPE_CHECKING:  # onnxruntime and numpy load with the first model, not with this module
    from gateway.scoring.batcher import EmbeddingService
    from gateway.scoring.encoder import Encoder
    from gateway.scoring.hallucination import SupportHead
    from gateway.scoring.heads import Head


class BatchHistogram:
    """Cumulative batch-size histogram for Prometheus (fed from the service's drained sample list)."""

    BOUNDS = (1, 2, 4, 8, 16, 32, 64)

    def __init__(self) -> None:
        self.counts = [0] * (len(self.BOUNDS) + 1)
        self.total = 0.0

    def observe_all(self, sizes: list[int]) -> None:
        for size in sizes:
            self.total += size
            index = next((i for i, b in enumerate(self.BOUNDS) if size <= b), len(self.BOUNDS))
            self.counts[index] += 1

    def buckets(self) -> list[tuple[str, float]]:
        out, running = [], 0
        for bound, count in zip([*map(str, self.BOUNDS), "+Inf"], self.counts):
            running += count
            out.append((bound, float(running)))
        return out


class ScoringRuntime:
    def __init__(self, config: ScoringConfig = ScoringConfig()) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._service: EmbeddingService | None = None
        self._detector_service: EmbeddingService | None = None
        self._heads: dict[str, Head] = {}
        self._hallucination: dict[str, SupportHead] | None = None
        self.batch_histogram = BatchHistogram()
        # detector -> [decided by the first tier, needed the encoder]; kept across plan swaps
        self.decisions: dict[str, list[int]] = {}

    def count_decision(self, detector: str, first_tier: bool) -> None:
        counts = self.decisions.get(detector)
        if counts is None:
            counts = self.decisions.setdefault(detector, [0, 0])
        counts[0 if first_tier else 1] += 1

    @property
    def loaded(self) -> bool:
        return self._service is not None or self._detector_service is not None

    def _load(self, layers: int = 0) -> EmbeddingService:
        from gateway.scoring.batcher import EmbeddingService
        from gateway.scoring.encoder import Encoder, EncoderOptions

        c = self.config
        encoder = Encoder.load(Path(c.model_dir) if c.model_dir else None,
                               EncoderOptions(precision=c.precision, intra_threads=c.threads, spin_wait=c.spin_wait,
                                              max_windows=c.max_windows, layers=layers))
        return EmbeddingService(encoder, c.max_batch, c.max_wait_ms, c.cache_entries)

    @property
    def service(self) -> EmbeddingService:
        if self._service is None:
            with self._lock:
                if self._service is None:
                    self._service = self._load()
        return self._service

    @property
    def encoder(self) -> Encoder:
        return self.service.encoder

    def detector_service(self, name: str) -> EmbeddingService:
        """What the built-in detector `name` embeds with: the shared encoder, or at `detector_layers` 3
        a second service on the model's first 3 layers (about twice as fast), shared by the detectors
        that use it."""
        layers = self.config.layers_for(name)
        if not layers:
            return self.service
        if self._detector_service is None:
            with self._lock:
                if self._detector_service is None:
                    self._detector_service = self._load(layers)
        return self._detector_service

    def services(self) -> list[EmbeddingService]:
        """The loaded embedding services (for the telemetry collector)."""
        return [s for s in (self._service, self._detector_service) if s is not None]

    def detector(self, name: str) -> Head:
        from gateway.scoring.detectors import load_detector

        with self._lock:
            if name not in self._heads:
                self._heads[name] = load_detector(name, layers=self.config.layers_for(name))
            return self._heads[name]

    def hallucination_heads(self) -> dict[str, SupportHead]:
        """The shipped consistency, factual and relevance heads (weights/hallucination.json), read once."""
        from gateway.scoring.hallucination import load_heads

        with self._lock:
            if self._hallucination is None:
                self._hallucination = load_heads()
            return self._hallucination

