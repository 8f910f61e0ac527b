"""finish, the last phase of every request: its metrics, its access-log line, its token debit; and the
work a response leaves running after it (`drain` waits for it at shutdown)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Coroutine
from typing import Any

from gateway.proxy.exchange import Exchange
from gateway.proxy.limits import Limiter
from gateway.proxy.openai import OpenAIError
from gateway.proxy.responses import JSON, RawResponse
from gateway.telemetry import AccessLog, Telemetry


class Finisher:
    """Closes requests: counts them, logs them, debits their tokens."""

    def __init__(self, telemetry: Telemetry, limiter: Limiter, access_log: bool) -> None:
        self._telemetry = telemetry
        self._limiter = limiter
        self._access_log = AccessLog() if access_log else None
        self._background: set[asyncio.Task[None]] = set()

    def in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` after the response that started it; `drain` waits for it at shutdown."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for the work responses left running (monitoring checks of streams cut
        short), so what they record reaches the monitoring log before the store closes."""
        if self._background:
            await asyncio.wait(tuple(self._background), timeout=timeout_s)

    def count_tokens(self, ex: Exchange, prompt: int, completion: int) -> None:
        """Token usage per application and model, and the token limits' debit (off the response's path)."""
        if prompt:
            self._telemetry.tokens.labels(ex.application, ex.model, "prompt").inc(prompt)
        if completion:
            self._telemetry.tokens.labels(ex.application, ex.model, "completion").inc(completion)
        if ex.cells:  # settle the reservation made at admission: debit the rest, or credit the excess
            reserved, ex.reserved_tokens = ex.reserved_tokens, 0
            until = ex.verdict.reserved_until if ex.verdict is not None else None
            self.in_background(self._limiter.settle(ex.cells, reserved, prompt + completion, until))

    def error(self, ex: Exchange, err: OpenAIError) -> RawResponse:
        return self.done(ex, RawResponse(err.status, [JSON, rid(ex)], err.body()))

    def done(self, ex: Exchange, response: RawResponse) -> RawResponse:
        """finish: the request's metrics and access-log line; its response returned as it is."""
        self.finish(ex, response.status)
        return response

    def finish(self, ex: Exchange, status: int) -> None:
        if ex.cells and ex.reserved_tokens:  # no usage was counted (refused, failed, cut): credit it back
            reserved, ex.reserved_tokens = ex.reserved_tokens, 0
            until = ex.verdict.reserved_until if ex.verdict is not None else None
            self.in_background(self._limiter.settle(ex.cells, reserved, 0, until))
        t = self._telemetry
        elapsed = time.perf_counter() - ex.start
        t.in_flight.labels(ex.route).dec()
        t.requests.labels(ex.route, ex.application, ex.model, str(status)).inc()
        t.duration.labels(ex.route, ex.application).observe(elapsed)
        if ex.upstream_s is not None:
            t.upstream_duration.labels(ex.upstream, ex.route).observe(ex.upstream_s)
            if not ex.relayed:
                t.overhead.labels(ex.route).observe(max(elapsed - ex.upstream_s, 0.0))
        if ex.ttft_s is not None:
            t.ttft.labels(ex.route, ex.application, ex.model).observe(ex.ttft_s)
        if self._access_log is not None:
            self._access_log.write(_access_fields(ex, status, elapsed))


def _access_fields(ex: Exchange, status: int, elapsed: float) -> dict[str, object]:
    fields: dict[str, object] = {
        "request_id": ex.request_id, "route": ex.route, "application": ex.application, "model": ex.model,
        "upstream": ex.upstream, "status": status, "stream": ex.stream, "duration_ms": round(elapsed * 1000, 3),
    }
    if ex.upstream_s is not None:
        fields["upstream_ms"] = round(ex.upstream_s * 1000, 3)
    if ex.ttft_s is not None:
        fields["ttft_ms"] = round(ex.ttft_s * 1000, 3)
    if ex.guard is not None:
        fields["guard"] = ex.guard
    tries = ex.attempts
    if tries is not None and (tries.attempts > 1 or tries.fallbacks):
        fields["attempts"] = tries.attempts
        fields["retries"] = tries.retries
        fields["fallbacks"] = tries.fallbacks
        fields["routed_group"] = tries.group
        fields["failed_attempts"] = tries.failures
    return fields


def request_id() -> str:
    return "gw-" + os.urandom(8).hex()


def rid(ex: Exchange) -> tuple[bytes, bytes]:
    """The header that names the request (its id in the access log and the monitoring log)."""
    return (b"x-guardrail-request-id", ex.request_id.encode())
