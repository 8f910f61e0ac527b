"""Resilient routing: model groups of several deployments, retries before the first byte, fallbacks, passive
health, aliases.

A request's model resolves (alias first) to a `Group`: a configured model group (`routing.groups`), or
the implicit one-deployment group of the first upstream whose glob matches (the behaviour of configs
without `routing:`: one attempt, no retries). `Dispatcher.send` makes the attempts:

- a deployment is picked by weight or by fewest in flight per weight, preferring one not yet tried by
  this request and never an ejected one while another is healthy;
- a connection failure or reset, a first-byte timeout, or a status in `retry.on_status` is retried,
  after a full-jitter exponential backoff (or the deployment's Retry-After, up to a cap), while the
  group's retry budget allows and one overall deadline (`deadline_s`) has time left;
- then the group's fallbacks are tried in order, each with its own group's retries, inside the same
  deadline;
- the answer that came (a stream's headers included) is returned as is: nothing is retried after it,
  so a stream that sent bytes is never retried.

Passive health: `consecutive_failures` failures in a row eject a deployment for `ejection_s`, doubled
on each ejection that follows without a success between (up to `max_ejection_s`); when the interval
ends the deployment takes traffic again (the re-probe) and its next failure ejects it again. The last
healthy deployment of a group is never ejected.
"""

from __future__ import annotations

import asyncio
import email.utils
import fnmatch
import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from gateway.config.schema import HealthConfig, ModelGroupConfig, RetryConfig, RoutingConfig
from gateway.proxy.upstream import (Upstream, UpstreamResponse, UpstreamTimeout, UpstreamTooLarge,
                                    UpstreamUnreachable)

log = logging.getLogger("gateway.routing")
_CACHE_SIZE = 4096
_NO_RETRY = RetryConfig(max_retries=0, budget_ratio=0.0, budget_burst=0.0)
_NO_EJECTION = HealthConfig(consecutive_failures=0)
_RETRIED_TIMEOUTS = frozenset({"connect", "first_byte"})
_GLOB_CHARS = frozenset("*?[")


@dataclass(slots=True, eq=False)
class Deployment:
    upstream: Upstream
    weight: float = 1.0
    model: str | None = None  # the name sent to this upstream, if not the request's
    in_flight: int = 0
    failures: int = 0  # consecutive
    ejections: int = 0  # in a row, without a success between
    ejected_until: float = 0.0

    def ejected(self, now: float) -> bool:
        return now < self.ejected_until


class RetryBudget:
    """A token bucket: each request earns `ratio` retries, a retry spends one; at most `burst` held."""

    __slots__ = ("ratio", "burst", "balance")

    def __init__(self, ratio: float, burst: float) -> None:
        self.ratio, self.burst, self.balance = ratio, burst, burst

    def deposit(self) -> None:
        self.balance = min(self.burst, self.balance + self.ratio)

    def withdraw(self) -> bool:
        if self.balance >= 1.0:
            self.balance -= 1.0
            return True
        return False


@dataclass(slots=True, eq=False)
class Group:
    name: str  # metric label: the group's name, or the upstream glob that matched
    deployments: list[Deployment]
    models: tuple[str, ...] = ()
    strategy: str = "weighted"
    retry: RetryConfig = _NO_RETRY
    health: HealthConfig = _NO_EJECTION
    fallbacks: tuple[str, ...] = ()
    deadline_s: float | None = None
    budget: RetryBudget = field(default_factory=lambda: RetryBudget(0.0, 0.0))

    def pick(self, tried: set[Deployment], now: float) -> Deployment:
        healthy = [d for d in self.deployments if not d.ejected(now)] or self.deployments
        fresh = [d for d in healthy if d not in tried] or healthy
        if len(fresh) == 1:
            return fresh[0]
        if self.strategy == "least_in_flight":
            load = min(d.in_flight / d.weight for d in fresh)
            return random.choice([d for d in fresh if d.in_flight / d.weight == load])
        return random.choices(fresh, weights=[d.weight for d in fresh])[0]

    def failed(self, dep: Deployment, now: float) -> bool:
        """Count a failure of `dep`; True when it got ejected by it."""
        dep.failures += 1
        n = self.health.consecutive_failures
        if not n or dep.failures < n or dep.ejected(now):
            return False
        if not any(d is not dep and not d.ejected(now) for d in self.deployments):
            return False  # the last healthy deployment keeps serving
        interval = min(self.health.ejection_s * 2 ** dep.ejections, self.health.max_ejection_s)
        dep.ejections += 1
        dep.ejected_until = now + interval
        log.warning("deployment ejected", extra={"fields": {"group": self.name, "upstream": dep.upstream.name,
                                                            "failures": dep.failures, "for_s": interval}})
        return True

    @staticmethod
    def succeeded(dep: Deployment) -> None:
        dep.failures = 0
        dep.ejections = 0


@dataclass(frozen=True, slots=True)
class Target:
    """Where a model name goes: its group, and the model name to send when it differs (an alias)."""

    group: Group
    model: str | None = None


class Routing:
    """Model name -> Target: aliases, then model groups, then the upstreams' globs (first match wins)."""

    def __init__(self, upstreams: Iterable[Upstream], config: RoutingConfig | None = None) -> None:
        config = config if config is not None else RoutingConfig()
        by_name = {u.name: u for u in upstreams}
        self.aliases = dict(config.aliases)
        self.groups: list[Group] = []
        self._table: list[tuple[re.Pattern[str], Group]] = []
        for g in config.groups:
            group = self._group(g, by_name)
            self.groups.append(group)
            self._table += [(re.compile(fnmatch.translate(m)), group) for m in g.models]
        for up in by_name.values():
            for glob in up.config.models:
                self._table.append((re.compile(fnmatch.translate(glob)), Group(glob, [Deployment(up)])))
        self._cache: dict[str, Target | None] = {}

    @staticmethod
    def _group(g: ModelGroupConfig, by_name: dict[str, Upstream]) -> Group:
        deployments = [Deployment(by_name[d.upstream], d.weight, d.model) for d in g.deployments]
        return Group(g.name, deployments, g.models, g.strategy, g.retry, g.health, g.fallbacks, g.deadline_s,
                     RetryBudget(g.retry.budget_ratio, g.retry.budget_burst))

    def resolve(self, model: str) -> Target | None:
        try:
            return self._cache[model]
        except KeyError:
            pass
        real = self.aliases.get(model)
        name = real if real is not None else model
        group = next((g for rx, g in self._table if rx.match(name)), None)
        found = None if group is None else Target(group, real)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()  # model names come from clients: never let them grow memory
        self._cache[model] = found
        return found

    def exact_names(self) -> list[tuple[str, str]]:
        """(model, owner) for the names groups and aliases spell out (no globs), for GET /v1/models."""
        out = [(alias, "alias") for alias in self.aliases]
        out += [(m, g.name) for g in self.groups for m in g.models if not _GLOB_CHARS & set(m)]
        return out


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
            left = deadline - now
            dep.in_flight += 1
            outcome: BaseException | UpstreamResponse
            try:
                sent = dep.model or target.model  # None: the request's own model
                wire = dep.upstream.body_model(path, sent or model)  # Azure's v1 API: the deployment's name
                response = await dep.upstream.send(method, path, headers(dep.upstream), body(wire or sent),
                                                   None if math.isinf(left) else left, sent or model)
            except (UpstreamTimeout, UpstreamUnreachable) as exc:
                dep.in_flight -= 1
                outcome = exc
                retryable = (not isinstance(exc, UpstreamTooLarge)
                             and (isinstance(exc, UpstreamUnreachable) or exc.phase in _RETRIED_TIMEOUTS))
                reason = "timeout" if isinstance(exc, UpstreamTimeout) else "unreachable"
                self.c.upstream_errors.labels(dep.upstream.name, reason).inc()
                self._failed(group, dep, reason)
                retry_after = None
            except BaseException:
                dep.in_flight -= 1
                raise
            else:
                status = response.status
                response.on_close = _release(dep)
                if status not in retry.on_status or status == 200:
                    self.c.attempts.labels(group.name, dep.upstream.name, "ok" if status < 500 else "error").inc()
                    if status < 500:
                        group.succeeded(dep)
                    else:
                        self._count_failure(group, dep)
                    return response, dep.upstream, True
                outcome = response
                reason = "rate_limited" if status == 429 else "server_error"
                if status == 429:
                    self.c.attempts.labels(group.name, dep.upstream.name, reason).inc()
                else:
                    self._failed(group, dep, reason)
                retry_after = _retry_after(response.headers)
                retryable = True
            record.failures.append(f"{dep.upstream.name}:{reason}")
            if not retryable or n >= retry.max_retries:
                return outcome, dep.upstream, False
            delay = min(retry.max_backoff_s, retry.backoff_s * 2 ** n) * random.random()
            if retry_after is not None:
                if retry_after > retry.retry_after_cap_s:
                    waits[dep] = math.inf  # this deployment asked for longer than we wait
                else:
                    waits[dep] = loop.time() + retry_after
            nxt = group.pick(tried, time.monotonic())
            if nxt in waits:
                if math.isinf(waits[nxt]):
                    return outcome, dep.upstream, False
                delay = max(delay, waits[nxt] - loop.time())
            if loop.time() + delay >= deadline:
                return outcome, dep.upstream, False
            if not group.budget.withdraw():
                self.c.budget_exhausted.labels(group.name).inc()
                return outcome, dep.upstream, False
            n += 1
            record.retries += 1
            self.c.retries.labels(group.name, reason).inc()
            if isinstance(outcome, UpstreamResponse):
                outcome.close()
            if delay > 0:
                await asyncio.sleep(delay)

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
