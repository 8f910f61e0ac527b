"""Resilient routing: model groups of several deployments, retries before the first byte, fallbacks, passive
health, aliases.

A request's model resolves (alias first) to a `Group`: a configured model group (`routing.groups`), or
the implicit one-deployment group of the first upstream whose glob matches (the behaviour of configs
without `routing:`: one attempt, no retries). `Dispatcher.send` (proxy/dispatch.py) makes the attempts:

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

import fnmatch
import logging
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.config.schema import HealthConfig, ModelGroupConfig, RetryConfig, RoutingConfig
from gateway.proxy.upstream import Upstream

log = logging.getLogger("gateway.routing")
_CACHE_SIZE = 4096
_NO_RETRY = RetryConfig(max_retries=0, budget_ratio=0.0, budget_burst=0.0)
_NO_EJECTION = HealthConfig(consecutive_failures=0)
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
