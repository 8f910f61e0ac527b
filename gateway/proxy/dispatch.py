"""Sending one request through its model group (proxy/routing.py resolves it): attempts on its deployments,
retries before the first byte within the retry budget and the deadline, then the group's fallbacks."""

from __future__ import annotations

import asyncio
import email.utils
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.proxy.routing import Deployment, Group, Routing, Target
from gateway.proxy.upstream import (Upstream, UpstreamResponse, UpstreamTimeout, UpstreamTooLarge,
                                    UpstreamUnreachable)


@dataclass(slots=True)
class Attempts:
    """What one request's attempts did, for its access-log line."""

    attempts: int = 0
    retries: int = 0
    fallbacks: int = 0
    group: str = ""
    upstream: str = ""
    failures: list[str] = field(default_factory=list)  # "upstream:reason" per failed attempt


class Counters:
    """The Prometheus counters routing moves (see gateway/telemetry.py)."""

    def __init__(self, attempts, retries, fallbacks, ejections, budget_exhausted, upstream_errors) -> None:
        self.attempts, self.retries, self.fallbacks = attempts, retries, fallbacks
        self.ejections, self.budget_exhausted, self.upstream_errors = ejections, budget_exhausted, upstream_errors


Headers = Callable[[Upstream], list[tuple[str, str]]]
Body = Callable[[str | None], bytes]
_RETRIED_TIMEOUTS = frozenset({"connect", "first_byte"})


@dataclass(slots=True)
class _Try:
    """One attempt's outcome: an answer to relay (`final`), or a failure, why, and whether it may be retried."""

    outcome: BaseException | UpstreamResponse
    final: bool = False
    reason: str = ""
    retryable: bool = False
    retry_after: float | None = None  # the deployment's Retry-After, in seconds


class Dispatcher:
    """Sends one request through a Target's group and fallbacks; returns the first answer that is not
    retried, or raises the last failure (UpstreamTimeout / UpstreamUnreachable)."""

    def __init__(self, routing: Routing, counters: Counters) -> None:
        self.routing = routing
        self.c = counters

    async def send(self, target: Target, method: str, path: str, headers: Headers, body: Body,
                   record: Attempts, model: str | None = None,
                   serves: Callable[[Group], bool] | None = None) -> tuple[UpstreamResponse, Upstream]:
        """`model`: the request's model (an Azure deployment's URL names it). `serves`: whether a fallback's
        group may take this request (pass-through routes: every deployment's upstream passes the path)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + target.group.deadline_s if target.group.deadline_s else math.inf
        chain = [target]
        for fb in target.group.fallbacks:
            resolved = self.routing.resolve(fb)
            if resolved is not None and (serves is None or serves(resolved.group)):
                chain.append(Target(resolved.group, resolved.model or fb))
        last: tuple[BaseException | UpstreamResponse, Upstream, bool] | None = None
        for i, step in enumerate(chain):
            if i:
                if loop.time() >= deadline:
                    break
                if isinstance(last[0], UpstreamResponse):  # type: ignore[index]
                    last[0].close()  # type: ignore[index]
                record.fallbacks += 1
                self.c.fallbacks.labels(target.group.name, step.group.name).inc()
            last = await self._through(step, method, path, headers, body, record, deadline, model)
            if last[2]:
                break
        assert last is not None
        outcome, upstream, _ = last
        if isinstance(outcome, UpstreamResponse):
            return outcome, upstream  # an answer, or the last one of a retried status: the client's answer
        raise outcome

    async def _through(self, target: Target, method: str, path: str, headers: Headers, body: Body,
                       record: Attempts, deadline: float, model: str | None = None
                       ) -> tuple[BaseException | UpstreamResponse, Upstream, bool]:
        """Attempts within one group: (outcome, its upstream, final). Final: an answer to relay; else the
        last failure (a response whose status is retried, or an exception) once retries, budget or
        deadline ran out, and the fallbacks may go on."""
        group, retry = target.group, target.group.retry
        loop = asyncio.get_running_loop()
        group.budget.deposit()
        record.group = group.name
        tried: set[Deployment] = set()
        waits: dict[Deployment, float] = {}  # Retry-After, in loop time, per deployment
        n = 0
        while True:
            now = loop.time()
            dep = group.pick(tried, time.monotonic())
            tried.add(dep)
            record.attempts += 1
            record.upstream = dep.upstream.name
            attempt = await self._attempt(target, dep, method, path, headers, body, deadline - now, model)
            if attempt.final:
                return attempt.outcome, dep.upstream, True
            record.failures.append(f"{dep.upstream.name}:{attempt.reason}")
            if not attempt.retryable or n >= retry.max_retries:
                return attempt.outcome, dep.upstream, False
            delay = self._delay(group, dep, attempt, n, tried, waits, deadline)
            if delay is None:
                return attempt.outcome, dep.upstream, False
            n += 1
            record.retries += 1
            self.c.retries.labels(group.name, attempt.reason).inc()
            if isinstance(attempt.outcome, UpstreamResponse):
                attempt.outcome.close()
            if delay > 0:
                await asyncio.sleep(delay)

    async def _attempt(self, target: Target, dep: Deployment, method: str, path: str, headers: Headers, body: Body,
                       left: float, model: str | None) -> _Try:
        """One attempt on one deployment, counted: its answer (final unless its status is retried) or failure."""
        group = target.group
        dep.in_flight += 1
        try:
            sent = dep.model or target.model  # None: the request's own model
            wire = dep.upstream.body_model(path, sent or model)  # Azure's v1 API: the deployment's name
            response = await dep.upstream.send(method, path, headers(dep.upstream), body(wire or sent),
                                               None if math.isinf(left) else left, sent or model)
        except (UpstreamTimeout, UpstreamUnreachable) as exc:
            dep.in_flight -= 1
            retryable = (not isinstance(exc, UpstreamTooLarge)
                         and (isinstance(exc, UpstreamUnreachable) or exc.phase in _RETRIED_TIMEOUTS))
            reason = "timeout" if isinstance(exc, UpstreamTimeout) else "unreachable"
            self.c.upstream_errors.labels(dep.upstream.name, reason).inc()
            self._failed(group, dep, reason)
            return _Try(exc, reason=reason, retryable=retryable)
        except BaseException:
            dep.in_flight -= 1
            raise
        status = response.status
        response.on_close = _release(dep)
        if status not in group.retry.on_status or status == 200:
            self.c.attempts.labels(group.name, dep.upstream.name, "ok" if status < 500 else "error").inc()
            if status < 500:
                group.succeeded(dep)
            else:
                self._count_failure(group, dep)
            return _Try(response, final=True)
        reason = "rate_limited" if status == 429 else "server_error"
        if status == 429:
            self.c.attempts.labels(group.name, dep.upstream.name, reason).inc()
        else:
            self._failed(group, dep, reason)
        return _Try(response, reason=reason, retryable=True, retry_after=_retry_after(response.headers))

    def _delay(self, group: Group, dep: Deployment, attempt: _Try, n: int, tried: set[Deployment],
               waits: dict[Deployment, float], deadline: float) -> float | None:
        """The wait before retry `n` (full-jitter backoff, or the next deployment's Retry-After), or None
        when there is none: that deployment asked for longer than we wait, the deadline, the retry budget."""
        retry, loop = group.retry, asyncio.get_running_loop()
        delay = min(retry.max_backoff_s, retry.backoff_s * 2 ** n) * random.random()
        if attempt.retry_after is not None:
            if attempt.retry_after > retry.retry_after_cap_s:
                waits[dep] = math.inf  # this deployment asked for longer than we wait
            else:
                waits[dep] = loop.time() + attempt.retry_after
        nxt = group.pick(tried, time.monotonic())
        if nxt in waits:
            if math.isinf(waits[nxt]):
                return None
            delay = max(delay, waits[nxt] - loop.time())
        if loop.time() + delay >= deadline:
            return None
        if not group.budget.withdraw():
            self.c.budget_exhausted.labels(group.name).inc()
            return None
        return delay

    def _failed(self, group: Group, dep: Deployment, reason: str) -> None:
        self.c.attempts.labels(group.name, dep.upstream.name, reason).inc()
        self._count_failure(group, dep)

    def _count_failure(self, group: Group, dep: Deployment) -> None:
        if group.failed(dep, time.monotonic()):
            self.c.ejections.labels(group.name, dep.upstream.name).inc()


def _release(dep: Deployment) -> Callable[[], None]:
    def release() -> None:
        dep.in_flight -= 1
    return release


def _retry_after(headers: list[tuple[bytes, bytes]]) -> float | None:
    """Retry-After (seconds or an HTTP date), or OpenAI's retry-after-ms, in seconds."""
    for name, value in headers:
        if name == b"retry-after-ms":
            try:
                return max(float(value) / 1000.0, 0.0)
            except ValueError:
                continue
    for name, value in headers:
        if name == b"retry-after":
            text = value.decode("latin-1").strip()
            try:
                return max(float(text), 0.0)
            except ValueError:
                pass
            try:
                when = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError):
                return None
            return max(when.timestamp() - time.time(), 0.0)
    return None
