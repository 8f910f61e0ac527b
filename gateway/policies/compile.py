"""The config file's policies and stages plus the store's documents -> one guard plan.

Store documents: `policy` bodies are seed-001 policy specs (plus `owner`: "central" or "app:<id>");
`stage` bodies are {"spec": <stage spec>, "applications": [ids], "owner": ..., "paused"?}; `pin` bodies
are {"application", "stage", "version"}: an application that stays on an older version of a central stage.

Compiled policies are cached by content (`PolicyCache`): a write compiles only the policy it changes;
the stored policies that did not change are reused as they are. Issues name stored documents by id
(`store.policies.<id>...`, `store.stages.<name>...`), not by their place in the merged lists.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from dataclasses import replace as dc_replace
from typing import Any

from pydantic import ValidationError

from gateway.config.errors import ConfigIssue, format_path
from gateway.config.guard_schema import PolicySpec, StageSpec
from gateway.config.schema import ApplicationConfig, GatewayConfig, KeyRule
from gateway.guard.plan import GuardPlan, Stage, compile_plan, compile_stages
from gateway.guard.policy import Policy, compile_policy, host_access
from gateway.metrics.model import known_params_only
from gateway.scoring.runtime import ScoringRuntime
from gateway.store import Store, Version


class PolicyCache:
    """Compiled policies by content: the same spec (id, type, parameters, threshold...) compiles once.

    Compiled policies are immutable and thread-safe, so one object serves every plan that holds the
    spec. Bounded (least recently used first out); failures are not cached."""

    def __init__(self, runtime: ScoringRuntime, size: int = 1024) -> None:
        self.runtime = runtime  # what model-based policies score with
        self.size = size
        self._items: OrderedDict[str, Policy] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(spec: PolicySpec) -> str:
        return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()

    def __call__(self, spec: PolicySpec) -> Policy:
        key = self.key(spec)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return found
        policy = compile_policy(spec, self.runtime)  # outside the lock: another compile may run beside it
        with self._lock:
            self.misses += 1
            self._items[key] = policy
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return policy


@dataclass(frozen=True)
class Snapshot:
    policies: tuple[Version, ...]
    stages: tuple[Version, ...]
    applications: tuple[Version, ...] = ()
    pins: tuple[Version, ...] = ()                  # {"application", "stage", "version"}
    pinned: tuple[Version, ...] = ()                # the pinned stage versions themselves

    def replaced(self, kind: str, doc_id: str, doc: Version | None = None) -> Snapshot:
        """This snapshot with the `kind` document `doc_id` taken out, and `doc` (if any) put in."""
        field = {"policy": "policies", "stage": "stages", "application": "applications", "pin": "pins"}[kind]
        docs = tuple(d for d in getattr(self, field) if d.id != doc_id)
        return dc_replace(self, **{field: docs + ((doc,) if doc is not None else ())})

    def keys(self) -> frozenset[tuple[str, str]]:
        """(kind, id) of every document in it (the pinned versions are the stages' own)."""
        return frozenset((d.kind, d.id) for docs in (self.policies, self.stages, self.applications, self.pins)
                         for d in docs)


async def read_snapshot(store: Store) -> Snapshot:
    """Every document the plan is built from, as the store holds them now."""
    pins = tuple(await store.list("pin"))
    pinned = []
    for pin in pins:
        doc = await store.get("stage", pin.body["stage"], int(pin.body["version"]))
        if doc is not None:
            pinned.append(doc)
    return Snapshot(tuple(await store.list("policy")), tuple(await store.list("stage")),
                    tuple(await store.list("application")), pins, tuple(pinned))


def stored_application(doc: Version) -> ApplicationConfig:
    """A stored application (its keys are only hashes: see KeyRing.set_stored)."""
    rules = tuple(KeyRule.model_construct(key=None, key_sha256=h, models=tuple(r.get("models") or ()),
                                          rpm=r.get("rpm"), tpm=r.get("tpm"), expires_at=r.get("expires_at"))
                  for h, r in (doc.body.get("key_rules") or {}).items())
    return ApplicationConfig.model_construct(id=doc.id, keys=(), stages=tuple(doc.body.get("stages", [])),
                                             allow_request_stages=bool(doc.body.get("allow_request_stages", True)),
                                             models=tuple(doc.body.get("models") or ()), rpm=doc.body.get("rpm"),
                                             tpm=doc.body.get("tpm"), key_rules=rules)


def policy_spec(body: dict[str, Any]) -> PolicySpec:
    """A stored policy's spec; a model-based one without keys its type does not have (stored by a release
    that accepted any key: dropped here so the store still loads; writes are refused them)."""
    return known_params_only(PolicySpec.model_validate({k: v for k, v in body.items() if k != "owner"}))


def compile_snapshot(config: GatewayConfig, snapshot: Snapshot, runtime: ScoringRuntime,
                     cache: PolicyCache) -> tuple[GuardPlan, list[ConfigIssue]]:
    """Config + store documents -> plan; issues name `store.policies.<id>...` for stored ones."""
    issues: list[ConfigIssue] = []
    policies = [*config.policies, *_stored_policies(config, snapshot, issues)]
    stages = list(config.stages)
    app_stages = {a.id: list(a.stages) for a in config.applications}
    for doc in snapshot.applications:
        app_stages.setdefault(doc.id, list(doc.body.get("stages", [])))
    for doc, stage in _stored_stages(snapshot, issues):
        stages.append(stage)
        for app in doc.body.get("applications", []):
            app_stages.setdefault(app, []).append(stage.name)
    cache.size = max(1024, 2 * len(policies))
    plan, more = compile_plan(policies, stages, app_stages, runtime, cache)
    more = _named_by_id(more, policies[len(config.policies):], stages[len(config.stages):],
                        len(config.policies), len(config.stages))
    if snapshot.pins and not more:
        plan = _with_pins(plan, snapshot, runtime, more)
    return plan, issues + more


def _stored_policies(config: GatewayConfig, snapshot: Snapshot, issues: list[ConfigIssue]) -> list[PolicySpec]:
    """The stored policies that may join the plan; an issue for each one that may not."""
    config_ids = {p.id for p in config.policies}
    specs = []
    for doc in snapshot.policies:
        if doc.id in config_ids:
            issues.append(ConfigIssue(f"store.policies.{doc.id}", "a policy with this id is defined in the "
                                                                   "config file too; rename one of them"))
            continue
        try:
            spec = policy_spec(doc.body)
        except ValidationError as exc:
            err = exc.errors()[0]
            issues.append(ConfigIssue(format_path(("store", "policies", doc.id, *err["loc"])), err["msg"]))
            continue
        denied = host_access(spec)
        if denied is not None:  # refused on write; one stored by an earlier version is refused here
            issues.append(ConfigIssue(format_path(("store", "policies", doc.id, *denied.path)), denied.message))
            continue
        specs.append(spec)
    return specs


def _stored_stages(snapshot: Snapshot, issues: list[ConfigIssue]) -> list[tuple[Version, StageSpec]]:
    """The stored stages that are enforced (not paused) and valid; an issue for each invalid one."""
    found = []
    for doc in snapshot.stages:
        if doc.body.get("paused"):
            continue  # kept, not enforced
        try:
            found.append((doc, StageSpec.model_validate(doc.body["spec"])))
        except ValidationError as exc:  # the field that failed, as the admin API's `param` names it
            err = exc.errors()[0]
            issues.append(ConfigIssue(format_path(("store", "stages", doc.id, *err["loc"])), err["msg"]))
        except (KeyError, TypeError) as exc:
            issues.append(ConfigIssue(f"store.stages.{doc.id}", str(exc).splitlines()[0]))
    return found


def _named_by_id(issues: list[ConfigIssue], stored_policies: list[PolicySpec], stored_stages: list[StageSpec],
                 config_policies: int, config_stages: int) -> list[ConfigIssue]:
    """Issues of stored documents named by id (`store.policies.<id>`), not by index in the merged lists."""
    names = {f"policies[{config_policies + i}]": f"store.policies.{p.id}" for i, p in enumerate(stored_policies)}
    names.update({f"stages[{config_stages + i}]": f"store.stages.{st.name}" for i, st in enumerate(stored_stages)})
    named = []
    for issue in issues:
        head, dot, rest = issue.path.partition(".")
        named.append(ConfigIssue(names[head] + dot + rest, issue.message) if head in names else issue)
    return named


def _with_pins(plan: GuardPlan, snapshot: Snapshot, runtime: ScoringRuntime,
               issues: list[ConfigIssue]) -> GuardPlan:
    """Per-application central lists where an application pinned a central stage's older version."""
    versions = {(d.id, d.version): d for d in snapshot.pinned}
    central_by_app: dict[str, dict[str, tuple[Stage, ...]]] = {}
    for pin in snapshot.pins:
        app, stage, version = pin.body["application"], pin.body["stage"], int(pin.body["version"])
        doc = versions.get((stage, version))
        if doc is None or doc.body.get("paused"):
            continue
        spec = StageSpec.model_validate(doc.body["spec"])
        compiled = compile_stages([spec], plan.policies, ("store", "pins", pin.id), issues, runtime)
        if not compiled:
            continue
        [old] = compiled
        lists = central_by_app.setdefault(app, {on: tuple(plan.central.get(on, ())) for on in ("input", "output")})
        lists[old.on] = tuple(old if s.name == stage else s for s in lists[old.on])
    return dc_replace(plan, central_by_app=central_by_app)
