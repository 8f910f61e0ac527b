"""The live guard plan: the config file's policies and stages plus what the admin API stored.

Every replica serves from an immutable compiled plan and swaps it atomically (one attribute
assignment on the GuardFlow). A background task compares the store's revision with the plan's every
`poll_interval_s` and rebuilds on change, so a change made through any replica reaches every replica
sharing the store. A candidate that does not compile never replaces the running plan. The request
path never calls the store.

A store that comes back with less than the plan was built from is not a new truth (Redis restarted
without persistence, a failover to a replica that lags or is empty, a flush): when the store's revision
goes backwards, or more documents vanished than writes happened since (every put and delete bumps the
revision by one), the registry keeps enforcing its last good plan, reports `regressed` (on /readyz, in
`gateway_store_regressed`) and refuses admin writes, until the revision moves past the plan's with the
documents consistent, or an admin adopts the store as it is (`POST /v1/admin/store/adopt`, `adopt`).
A replica that has never read the store is not `loaded`: it answers /readyz 503 and refuses guarded
traffic (see gateway/app.py) while `follow` keeps retrying with bounded backoff.

Compiled policies are cached by content (`PolicyCache`): a write compiles only the policy it changes,
off the event loop; the stored policies that did not change are reused as they are.

Store documents: `policy` bodies are seed-001 policy specs (plus `owner`: "central" or
"app:<id>"); `stage` bodies are {"spec": <stage spec>, "applications": [ids], "owner": ...}.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from dataclasses import replace as dc_replace
from typing import Any

from pydantic import ValidationError

from gateway.admin import limits
from gateway.config.errors import ConfigIssue, format_path
from gateway.config.guard_schema import PolicySpec, StageSpec
from gateway.config.schema import ApplicationConfig, GatewayConfig, KeyRule
from gateway.guard.plan import GuardPlan, compile_plan
from gateway.guard.policy import Policy, compile_policy, host_access
from gateway.scoring.runtime import ScoringRuntime
from gateway.store import NotFound, Store, StoreError, Version
from gateway.store.base import revert_note
from gateway.tasks import cancel_and_wait
from gateway.errors import InvalidChange, StoreRegressed, VersionConflict  # noqa: F401  (re-exported; defined there)

log = logging.getLogger("gateway.registry")

# Retrying a store that does not answer: from `store.poll_interval_s`, doubling, at most this.
MAX_RETRY_BACKOFF_S = 5.0


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


Expected = tuple[int, str] | None  # (version, the param that named it: If-Match or expected_version)


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


def stored_application(doc: Version) -> ApplicationConfig:
    """A stored application (its keys are only hashes: see KeyRing.set_stored)."""
    rules = tuple(KeyRule.model_construct(key=None, key_sha256=h, models=tuple(r.get("models") or ()),
                                          rpm=r.get("rpm"), tpm=r.get("tpm"), expires_at=r.get("expires_at"))
                  for h, r in (doc.body.get("key_rules") or {}).items())
    return ApplicationConfig.model_construct(id=doc.id, keys=(), stages=tuple(doc.body.get("stages", [])),
                                             allow_request_stages=bool(doc.body.get("allow_request_stages", True)),
                                             models=tuple(doc.body.get("models") or ()), rpm=doc.body.get("rpm"),
                                             tpm=doc.body.get("tpm"), key_rules=rules)


def _policy_spec(body: dict[str, Any]) -> PolicySpec:
    return PolicySpec.model_validate({k: v for k, v in body.items() if k != "owner"})


class Registry:
    def __init__(self, config: GatewayConfig, store: Store, flow: Any, runtime: ScoringRuntime | None = None) -> None:
        # what model-based policies score with: the app's (default: a new one with the config's settings)
        self.runtime = runtime if runtime is not None else ScoringRuntime(config.scoring)
        self.config = config
        self.store = store
        self.flow = flow
        self.revision = -1
        self.degraded: str | None = None       # why the store is unreachable, if it is
        self.loaded = False                    # read the store at least once (else: not ready, fail closed)
        self.regressed: str | None = None      # why the store's content is not adopted, if it is not
        self.refused = 0                       # guarded requests refused before the store was loaded
        self.unloadable: str | None = None     # why a first read of the store could not be enforced
        self._documents: frozenset[tuple[str, str]] = frozenset()  # (kind, id) in the adopted snapshot
        self._rejected = -1                    # the regressed store's revision last looked at
        self.cache = PolicyCache(self.runtime)
        self.last_sync = 0.0
        self.swaps = 0
        self._lock = asyncio.Lock()
        self.keyring: Any = None               # the proxy's KeyRing: stored applications' key hashes go there
        self._stored_apps: frozenset[str] = frozenset()
        self._config_apps = frozenset(a.id for a in config.applications)
        self._task: asyncio.Task[None] | None = None
        self._flush: asyncio.Task[None] | None = None
        self._listen: asyncio.Task[None] | None = None

    @property
    def config_policy_ids(self) -> frozenset[str]:
        return frozenset(p.id for p in self.config.policies)

    @property
    def config_stage_names(self) -> frozenset[str]:
        return frozenset(s.name for s in self.config.stages)

    def compile(self, snapshot: Snapshot) -> tuple[GuardPlan, list[ConfigIssue]]:
        """Config + store documents -> plan; issues name `store.policies.<id>...` for stored ones."""
        issues: list[ConfigIssue] = []
        policies = list(self.config.policies)
        for doc in snapshot.policies:
            if doc.id in self.config_policy_ids:
                issues.append(ConfigIssue(f"store.policies.{doc.id}", "a policy with this id is defined in the "
                                                                       "config file too; rename one of them"))
                continue
            try:
                spec = _policy_spec(doc.body)
            except ValidationError as exc:
                err = exc.errors()[0]
                issues.append(ConfigIssue(format_path(("store", "policies", doc.id, *err["loc"])), err["msg"]))
                continue
            denied = host_access(spec)
            if denied is not None:  # refused on write; one stored by an earlier version is refused here
                issues.append(ConfigIssue(format_path(("store", "policies", doc.id, *denied.path)), denied.message))
                continue
            policies.append(spec)
        stages = list(self.config.stages)
        app_stages = {a.id: list(a.stages) for a in self.config.applications}
        for doc in snapshot.applications:
            app_stages.setdefault(doc.id, list(doc.body.get("stages", [])))
        for doc in snapshot.stages:
            if doc.body.get("paused"):
                continue  # kept, not enforced
            try:
                stage = StageSpec.model_validate(doc.body["spec"])
            except ValidationError as exc:  # the field that failed, as the admin API's `param` names it
                err = exc.errors()[0]
                issues.append(ConfigIssue(format_path(("store", "stages", doc.id, *err["loc"])), err["msg"]))
                continue
            except (KeyError, TypeError) as exc:
                issues.append(ConfigIssue(f"store.stages.{doc.id}", str(exc).splitlines()[0]))
                continue
            stages.append(stage)
            for app in doc.body.get("applications", []):
                app_stages.setdefault(app, []).append(stage.name)
        self.cache.size = max(1024, 2 * len(policies))
        plan, more = compile_plan(policies, stages, app_stages, self.runtime, self.cache)
        # Name stored documents by id, not by their index in the merged lists.
        names = {f"policies[{i}]": f"store.policies.{p.id}" for i, p in enumerate(policies)
                 if i >= len(self.config.policies)}
        names.update({f"stages[{i}]": f"store.stages.{st.name}" for i, st in enumerate(stages)
                      if i >= len(self.config.stages)})
        for n, issue in enumerate(more):
            head, dot, rest = issue.path.partition(".")
            if head in names:
                more[n] = ConfigIssue(names[head] + dot + rest, issue.message)
        if snapshot.pins and not more:
            plan = self._with_pins(plan, snapshot, policies, more)
        return plan, issues + more

    def _with_pins(self, plan: GuardPlan, snapshot: Snapshot, policies: list[PolicySpec],
                   issues: list[ConfigIssue]) -> GuardPlan:
        """Per-application central lists where an application pinned a central stage's older version."""
        from gateway.guard.plan import compile_stages

        versions = {(d.id, d.version): d for d in snapshot.pinned}
        compiled_policies = plan.policies
        central_by_app: dict[str, dict[str, tuple]] = {}
        for pin in snapshot.pins:
            app, stage, version = pin.body["application"], pin.body["stage"], int(pin.body["version"])
            doc = versions.get((stage, version))
            if doc is None or doc.body.get("paused"):
                continue
            spec = StageSpec.model_validate(doc.body["spec"])
            compiled = compile_stages([spec], compiled_policies, ("store", "pins", pin.id), issues, self.runtime)
            if not compiled:
                continue
            [old] = compiled
            lists = central_by_app.setdefault(app, {on: tuple(plan.central.get(on, ())) for on in ("input", "output")})
            lists[old.on] = tuple(old if s.name == stage else s for s in lists[old.on])
        return dc_replace(plan, central_by_app=central_by_app)

    async def snapshot(self) -> Snapshot:
        pins = tuple(await self.store.list("pin"))
        pinned = []
        for pin in pins:
            doc = await self.store.get("stage", pin.body["stage"], int(pin.body["version"]))
            if doc is not None:
                pinned.append(doc)
        return Snapshot(tuple(await self.store.list("policy")), tuple(await self.store.list("stage")),
                        tuple(await self.store.list("application")), pins, tuple(pinned))

    @property
    def application_ids(self) -> frozenset[str]:
        return frozenset(a.id for a in self.config.applications) | self._stored_apps

    async def check(self, snapshot: Snapshot) -> GuardPlan:
        """Compile off the event loop (a classifier policy trains here); raise InvalidChange on issues."""
        plan, issues = await asyncio.to_thread(self.compile, snapshot)
        if issues:
            raise InvalidChange(issues[0].path, issues[0].message)
        return plan

    @staticmethod
    def _keys(snapshot: Snapshot) -> frozenset[tuple[str, str]]:
        return frozenset((d.kind, d.id) for docs in (snapshot.policies, snapshot.stages, snapshot.applications,
                                                     snapshot.pins) for d in docs)

    def _regression(self, revision: int, snapshot: Snapshot) -> str | None:
        """Why this store is not a newer truth than the adopted one, or None when it is."""
        if not self.loaded:
            return None  # nothing to compare with: a first read is adopted as it is
        if revision <= self.revision:
            return (f"the store's revision went back from {self.revision} to {revision} (restarted without "
                    "persistence, flushed, or failed over to a replica that lags)")
        vanished = self._documents - self._keys(snapshot)
        if len(vanished) > revision - self.revision:
            return (f"{len(vanished)} documents vanished from the store with {revision - self.revision} writes "
                    f"since revision {self.revision} (restarted without persistence, flushed, or failed over)")
        return None

    async def load(self, adopt: bool = False) -> bool:
        """Rebuild from the store if its revision moved; True if the plan was swapped. A store that went
        back (see the module docstring) is not adopted unless `adopt` (an admin asked); InvalidChange is
        raised only then, for a store that does not compile."""
        async with self._lock:
            revision = await self.store.revision()
            if not adopt and revision == (self._rejected if self.regressed else self.revision):
                return False
            snapshot = await self.snapshot()
            problem = None if adopt else self._regression(revision, snapshot)
            if problem is not None:
                if self.regressed is None:
                    log.error("store regressed; enforcing the last good plan until it moves past it or an admin "
                              "adopts it (POST /v1/admin/store/adopt)",
                              extra={"fields": {"error": problem, "revision": revision,
                                                "plan_revision": self.revision}})
                self.regressed = f"{problem}; enforcing the plan of revision {self.revision}"
                self._rejected = revision
                self.loaded = True
                return False
            try:
                plan = await self.check(snapshot)
            except InvalidChange as err:  # keep enforcing the last good plan
                if adopt:
                    raise
                log.error("stored policies do not compile; keeping the running plan",
                          extra={"fields": {"param": err.param, "error": err.message}})
                if not self.loaded:  # no plan of the store's to keep: stay not loaded (fail closed), say why
                    self.unloadable = f"the stored policies do not compile ({err.param}: {err.message})"
                    return False
                self.revision = revision
                self._documents = self._keys(snapshot)
                self.regressed = None
                self.loaded = True
                return False
            self.flow.plan = plan  # the atomic swap: requests already running keep their stages
            if self.keyring is not None:
                self.keyring.set_stored((stored_application(d), d.body.get("key_hashes", []))
                                        for d in snapshot.applications if d.id not in self._config_apps)
            self._stored_apps = frozenset(d.id for d in snapshot.applications)
            if self.regressed is not None:
                log.warning("store adopted", extra={"fields": {"revision": revision, "by": "admin" if adopt
                                                               else "newer revision"}})
            self.revision = revision
            self._documents = self._keys(snapshot)
            self.regressed = None
            self.unloadable = None
            self.loaded = True
            self.swaps += 1
            return True

    async def adopt(self) -> dict[str, Any]:
        """An admin's explicit action: enforce the store as it is now, even if it holds less than before."""
        was = self.regressed
        await asyncio.wait_for(self.load(adopt=True), timeout=max(30.0, self.config.store.timeout_s * 8))
        self.degraded = None
        return {"object": "store", "adopted": True, "revision": self.revision, "was_regressed": was,
                "documents": len(self._documents)}

    def status(self) -> dict[str, Any]:
        return {"object": "store", "loaded": self.loaded, "revision": self.revision,
                "regressed": self.regressed, "degraded": self.degraded, "last_sync": self.last_sync,
                "documents": len(self._documents)}

    async def follow(self) -> None:
        """Poll the store's revision; while it does not answer, retry with bounded exponential backoff."""
        interval = self.config.store.poll_interval_s
        failures = 0
        while True:
            try:
                await asyncio.wait_for(self.load(), timeout=max(5.0, interval * 4))
                if self.degraded is not None:
                    log.warning("store reachable again", extra={"fields": {"revision": self.revision}})
                self.degraded = None
                self.last_sync = time.time()
                failures = 0
            except (StoreError, TimeoutError) as exc:
                if self.degraded is None:
                    log.warning("store unreachable; enforcing the last good plan" if self.loaded else
                                "store unreachable and never loaded: refusing guarded traffic; retrying",
                                extra={"fields": {"error": str(exc)}})
                self.degraded = str(exc) or type(exc).__name__
                failures += 1
            delay = interval if not failures else min(MAX_RETRY_BACKOFF_S, interval * 2 ** min(failures, 16))
            await asyncio.sleep(max(interval, delay))

    async def listen(self) -> None:
        """Pub/sub where the store has it (Redis): reload as soon as another replica publishes a change.
        The revision poll in `follow` still catches whatever this misses while disconnected."""
        while True:
            try:
                async for revision in self.store.changes():  # type: ignore[attr-defined]
                    if revision != self.revision:
                        await self.load()
            except (StoreError, TimeoutError, ValueError):
                pass
            await asyncio.sleep(1.0)

    async def flush_monitoring(self, monitor: Any, interval: float = 0.2) -> None:
        """Write the monitoring log's outbox to the store in batches; keep it while the store is down."""
        while True:
            batch = monitor.take()
            if batch:
                try:
                    bodies = [monitor.stored_form(r) for r in batch]
                    await asyncio.wait_for(self.store.append_records(bodies), timeout=max(2.0, interval * 10))
                    monitor.written += len(batch)
                    continue  # more may be waiting
                except (StoreError, TimeoutError):
                    monitor.put_back(batch)
            await asyncio.sleep(interval)

    def start(self, monitor: Any = None) -> None:
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self.follow(), name="registry-follow")
        if hasattr(self.store, "changes"):
            self._listen = loop.create_task(self.listen(), name="registry-listen")
        if monitor is not None:
            self._flush = loop.create_task(self.flush_monitoring(monitor), name="monitoring-flush")

    async def stop(self) -> None:
        for task in (self._task, self._flush, self._listen):
            if task is not None:
                await cancel_and_wait(task)
        await self.store.close()

    def _writable(self) -> None:
        if self.regressed is not None:
            raise StoreRegressed(self.regressed)
        if not self.loaded and self.unloadable is None:  # (a store read but not compiling may be healed)
            raise StoreError("the store has not been loaded yet")

    async def current_version(self, kind: str, doc_id: str) -> int:
        doc = await self.store.get(kind, doc_id)
        return doc.version if doc is not None else 0

    async def expect(self, kind: str, doc_id: str, expected: Expected) -> None:
        """G19: raise VersionConflict unless the document is at the expected version (None: no check)."""
        if expected is not None:
            current = await self.current_version(kind, doc_id)
            if current != expected[0]:
                raise VersionConflict(kind, doc_id, expected[0], current, expected[1])

    async def write(self, kind: str, body: dict[str, Any], author: str, note: str = "", *,
                    expected: Expected = None, dry_run: bool = False) -> Version:
        """Validate the store with this document in it, then write it and swap the plan at once.

        `expected` (version, param): refuse with VersionConflict unless the document is at that version,
        checked before compiling and again just before the write (a write landing between that check
        and the store's put is not caught: the store has no compare-and-set). `dry_run`: validate only
        and return the version it would become, writing nothing (G16)."""
        self._writable()
        await self.expect(kind, body["id"], expected)
        problem = limits.policy_problem(body) if kind == "policy" else None
        if problem is not None:
            raise InvalidChange(*problem)
        snapshot = await self.snapshot()
        candidate = Version(kind, body["id"], 0, body, time.time(), author)
        trial = snapshot.replaced(kind, body["id"], candidate)
        if kind == "policy" and limits.entries(body) > sum(limits.entries(d.body) for d in snapshot.policies
                                                           if d.id == body["id"]):
            problem = limits.store_problem((d.body for d in trial.policies), limits.CAPPED.get(str(body.get("type")), ""))
            if problem is not None:  # only a write that adds entries is refused (a store over the cap may shrink)
                raise InvalidChange(*problem)
        if kind == "pin":  # the pinned stage version compiles into the application's central list
            pinned = await self.store.get("stage", body["stage"], int(body["version"]))
            trial = dc_replace(trial, pinned=(*snapshot.pinned, *([pinned] if pinned else [])))
        try:
            await self.check(trial)
        except InvalidChange as err:  # a field of the document being written: name it as the caller sent it
            own = f"store.{'policies' if kind == 'policy' else 'stages'}.{body['id']}."
            if err.param.startswith(own):
                raise InvalidChange(err.param.removeprefix(own), err.message) from None
            raise
        if dry_run:
            return dc_replace(candidate, version=await self.current_version(kind, body["id"]) + 1, note=note)
        await self.expect(kind, body["id"], expected)
        written = await self.store.put(kind, body, author, note)
        await self.load()
        return written

    async def revert(self, kind: str, doc_id: str, version: int, author: str, note: str = "", *,
                     expected: Expected = None) -> Version:
        """Make an old version current again (as a new version), validated like any write."""
        self._writable()
        old = await self.store.get(kind, doc_id, version)
        if old is None:
            raise NotFound(f"{kind} {doc_id!r} has no version {version}")
        full = revert_note(version) + (f": {note}" if note else "")
        return await self.write(kind, old.body, author, full, expected=expected)

    async def remove(self, kind: str, doc_id: str, author: str) -> bool:
        """Delete a document unless that breaks the store (a stage still names the policy). Problems the
        store had before do not count: deleting is how a document it cannot compile is got rid of."""
        self._writable()
        snapshot = await self.snapshot()
        _, after = await asyncio.to_thread(self.compile, snapshot.replaced(kind, doc_id))
        if after:  # compiled again only then: a store without problems had none before either
            _, before = await asyncio.to_thread(self.compile, snapshot)
            new = [issue for issue in after if issue not in before]
            if new:
                raise InvalidChange(new[0].path, new[0].message)
        removed = await self.store.delete(kind, doc_id, author)
        await self.load()
        return removed
