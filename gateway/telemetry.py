"""Prometheus collectors on an app-owned registry, and structured JSON logs without secrets."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Latency buckets from 0.5 ms (gateway overhead) to 10 min (long generations).
_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0, 120.0, 300.0, 600.0)


class Telemetry:
    """Every collector the gateway exports. Label values come from config, never from clients."""

    def __init__(self, scoring: Callable[[], Any] = lambda: None) -> None:
        """`scoring` returns the app's scoring runtime, or None while it has none (see ScorerCollector)."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._request_metrics(r)
        self._upstream_metrics(r)
        self._usage_metrics(r)
        self._guard_metrics(r)
        self._server_metrics(r)
        r.register(ScorerCollector(scoring))
        self.started.set(time.time())

    def _request_metrics(self, r: CollectorRegistry) -> None:
        """Per request: count, durations (whole, upstream, overhead, first token), in flight."""
        self.requests = Counter("gateway_requests", "Requests answered, by route, application, model and status.",
                                ["route", "application", "model", "status"], registry=r)
        self.duration = Histogram("gateway_request_duration_seconds",
                                  "Time from request received to last byte sent.",
                                  ["route", "application"], buckets=_BUCKETS, registry=r)
        self.upstream_duration = Histogram("gateway_upstream_duration_seconds",
                                           "Time spent waiting on the upstream, to its last byte.",
                                           ["upstream", "route"], buckets=_BUCKETS, registry=r)
        self.overhead = Histogram("gateway_overhead_seconds",
                                  "Request duration minus upstream time, for non-streamed requests.",
                                  ["route"], buckets=_BUCKETS, registry=r)
        self.ttft = Histogram("gateway_time_to_first_token_seconds",
                              "Time from request received to the first streamed event sent to the client.",
                              ["route", "application", "model"], buckets=_BUCKETS, registry=r)
        self.in_flight = Gauge("gateway_in_flight_requests", "Requests being served now.", ["route"], registry=r)

    def _upstream_metrics(self, r: CollectorRegistry) -> None:
        """The upstreams: errors, abandoned calls, attempts, retries, fallbacks, ejections."""
        self.upstream_errors = Counter("gateway_upstream_errors", "Upstream failures by kind.",
                                       ["upstream", "kind"], registry=r)
        self.upstream_abandoned = Counter("gateway_upstream_abandoned", "Upstream calls made beside a parallel input "
                                          "stage and dropped because the stage stopped the request.",
                                          ["upstream"], registry=r)
        self.upstream_attempts = Counter("gateway_upstream_attempts", "Requests sent to an upstream deployment, by "
                                         "model group, upstream and outcome (ok, error, rate_limited, "
                                         "server_error, unreachable, timeout).", ["group", "upstream", "outcome"],
                                         registry=r)
        self.upstream_retries = Counter("gateway_upstream_retries", "Attempts retried before the first byte, by "
                                        "model group and the failure retried.", ["group", "reason"], registry=r)
        self.upstream_fallbacks = Counter("gateway_upstream_fallbacks", "Requests passed to a fallback model group "
                                          "after their own group's attempts failed.", ["group", "to"], registry=r)
        self.upstream_ejections = Counter("gateway_upstream_ejections", "Deployments ejected by passive health "
                                          "checks (consecutive failures).", ["group", "upstream"], registry=r)
        self.retry_budget_exhausted = Counter("gateway_upstream_retry_budget_exhausted", "Retries not made because "
                                              "the model group's retry budget was spent.", ["group"], registry=r)

    def _usage_metrics(self, r: CollectorRegistry) -> None:
        """Per application: tokens used and requests refused by its limits."""
        self.tokens = Counter("gateway_tokens", "Tokens used, by application, model (group or glob) and kind "
                              "(prompt, completion): the upstream's usage, estimated for a stream without it.",
                              ["application", "model", "kind"], registry=r)
        self.rate_limited = Counter("gateway_rate_limited", "Requests refused with a 429 by an application's or "
                                    "key's limits, by application and limit kind (requests, tokens).",
                                    ["application", "kind"], registry=r)

    def _guard_metrics(self, r: CollectorRegistry) -> None:
        """The guard: rulesets triggered, metric time, metric failures, fail-open passes, texts not scanned, values
        a stream guard found only in text already sent."""
        self.guard_triggers = Counter("gateway_guard_triggers", "Rulesets whose action applied (or would have, in "
                                      "monitor mode), by stage, ruleset, action and mode.",
                                      ["stage", "ruleset", "action", "mode"], registry=r)
        self.guard_metric_seconds = Histogram("gateway_guard_metric_seconds", "Time to measure one metric on one text.",
                                              ["metric"], buckets=_BUCKETS, registry=r)
        self.guard_errors = Counter("gateway_guard_errors", "Metric failures and timeouts, by stage and metric.",
                                    ["stage", "metric", "kind"], registry=r)
        self.guard_fail_open = Counter("gateway_guard_fail_open", "Content passed unchecked because a metric failed or "
                                       "timed out under on_error: allow, by stage and metric.",
                                       ["stage", "metric"], registry=r)
        self.guard_not_scanned = Counter("gateway_guard_not_scanned", "Stage runs that found no text they could read.",
                                         ["stage"], registry=r)
        self.guard_stream_late = Counter("gateway_guard_stream_late_finds", "Redactions a stream guard's check found "
                                         "wholly in text it had already sent (left as it was; the stream goes on), "
                                         "by application.", ["application"], registry=r)

    def _server_metrics(self, r: CollectorRegistry) -> None:
        """The server: start time, connections refused by the HTTP limits, overload and admission."""
        self.started = Gauge("gateway_start_time_seconds", "Unix time the gateway started.", registry=r)
        self.http_rejected = Counter("gateway_http_rejected", "Connections refused by the HTTP limits: headers too "
                                     "large or too many (431), headers or body too slow (408).", ["reason"],
                                     registry=r)
        self.shed = Counter("gateway_overload_rejected", "Proxied requests refused with a 503 because the gateway "
                            "was at max_concurrent_requests: the pending queue was full, or the wait timed out.",
                            ["reason"], registry=r)
        self.admitted = Gauge("gateway_admission_in_flight", "Proxied requests holding an admission slot.",
                              registry=r)
        self.pending = Gauge("gateway_admission_pending", "Proxied requests waiting for an admission slot.",
                             registry=r)


class AccessLog:
    """One JSON line per request written straight to a file descriptor.

    Going through `logging` (record, formatter, handler lock) cost about 10% of the gateway's
    throughput under load; access lines need none of its routing, so they skip it.
    """

    def __init__(self, fd: int = 2) -> None:
        self._fd = fd

    def write(self, fields: dict[str, Any]) -> None:
        line = orjson.dumps({"ts": round(time.time(), 3), "level": "info", "logger": "gateway.access",
                             "msg": "request", **fields}, default=str)
        try:
            os.write(self._fd, line + b"\n")
        except OSError:
            pass  # a closed or full log pipe must never fail a request


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's `fields` extra."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class ScorerCollector:
    """The scoring runtime's counters, read at scrape time (nothing is exported until models load).

    `runtime` returns the app's scoring runtime or None (telemetry sits below scoring and never imports
    it: the app passes this in)."""

    def __init__(self, runtime: Callable[[], Any] = lambda: None) -> None:
        self.runtime = runtime

    def describe(self) -> list:
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        runtime = self.runtime()
        if runtime is None or not runtime.loaded:
            return
        every = [service.stats for service in runtime.services()]  # the shared encoder (+ the detectors' own)

        def total(field: str) -> float:
            return sum(getattr(stats, field) for stats in every)

        yield CounterMetricFamily("gateway_scorer_batches", "Encoder calls.", value=total("batches"))
        yield CounterMetricFamily("gateway_scorer_windows", "256-token windows embedded.", value=total("windows"))
        yield CounterMetricFamily("gateway_scorer_cache_hits", "Texts served from the embedding cache or a "
                                  "concurrent request's run.", value=total("cache_hits"))
        yield CounterMetricFamily("gateway_scorer_cache_misses", "Texts that needed the encoder.",
                                  value=total("cache_misses"))
        yield CounterMetricFamily("gateway_scorer_inference_seconds", "Time spent in the encoder.",
                                  value=total("inference_seconds"))
        yield GaugeMetricFamily("gateway_scorer_queue_windows", "Windows waiting for the encoder.",
                                value=total("queued"))
        decisions = CounterMetricFamily("gateway_scorer_detector_texts", "Texts a built-in detector scored, by the "
                                        "tier that decided: first (lexical + static, no encoder) or encoder.",
                                        labels=["detector", "tier"])
        for name, (first, encoder) in sorted(runtime.decisions.items()):
            decisions.add_metric([name, "first"], first)
            decisions.add_metric([name, "encoder"], encoder)
        yield decisions
        sizes = [size for stats in every for size in stats.batch_sizes]
        for stats in every:
            stats.batch_sizes = []
        runtime.batch_histogram.observe_all(sizes)
        buckets = runtime.batch_histogram.buckets()
        yield HistogramMetricFamily("gateway_scorer_batch_size", "Windows per encoder call.", buckets=buckets,
                                    sum_value=runtime.batch_histogram.total)


class RegistryCollector:
    """The store link and the monitoring log's way to it: degraded flag, backlog, writes, drops."""

    def __init__(self, registry, monitor) -> None:
        self.registry = registry
        self.monitor = monitor

    def describe(self) -> list:
        return []

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield GaugeMetricFamily("gateway_store_degraded", "1 while the store is unreachable (the last good plan "
                                "is enforced).", value=1.0 if self.registry.degraded else 0.0)
        yield GaugeMetricFamily("gateway_store_regressed", "1 while the store holds less than the enforced plan was "
                                "built from (revision went back, documents vanished): the last good plan is "
                                "enforced until the store moves past it or an admin adopts it.",
                                value=1.0 if self.registry.regressed else 0.0)
        yield GaugeMetricFamily("gateway_store_loaded", "1 once the store was read; 0 before (not ready, guarded "
                                "requests refused).", value=1.0 if self.registry.loaded else 0.0)
        yield CounterMetricFamily("gateway_store_not_loaded_refusals", "Guarded requests refused (503) because the "
                                  "store had not been loaded yet.", value=self.registry.refused)
        yield GaugeMetricFamily("gateway_monitoring_backlog", "Monitoring records waiting to be written to the "
                                "store.", value=self.monitor.backlog)
        yield CounterMetricFamily("gateway_monitoring_written", "Monitoring records written to the store.",
                                  value=self.monitor.written)
        yield CounterMetricFamily("gateway_monitoring_dropped", "Monitoring records dropped because the buffer "
                                  "was full while the store was down.", value=self.monitor.dropped)
        yield CounterMetricFamily("gateway_plan_swaps", "Guard plans swapped in after a change in the store.",
                                  value=self.registry.swaps)

