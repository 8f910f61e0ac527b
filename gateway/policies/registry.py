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
traffic (see gateway/app.py) while `follow` keeps retrying with bounded backoff. Writes validate the
whole store with the change in it (compile.py, limits.py) first; each is a new version of the document.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace as dc_replace
from typing import Any

from gateway.config.errors import ConfigIssue
from gateway.config.schema import GatewayConfig
from gateway.guard.monitor import MonitorLog
from gateway.guard.plan import GuardPlan
from gateway.policies import limits
from gateway.policies.compile import PolicyCache, Snapshot, compile_snapshot, read_snapshot, stored_application
from gateway.scoring.runtime import ScoringRuntime
from gateway.store import NotFound, Store, StoreError, Version
from gateway.store.base import revert_note
from gateway.tasks import cancel_and_wait
from gateway.errors import InvalidChange, StoreRegressed, VersionConflict  # noqa: F401  (re-exported; defined there)

log = logging.getLogger("gateway.registry")

MAX_RETRY_BACKOFF_S = 5.0  # retrying a store that does not answer: from `poll_interval_s`, doubling, at most this

Expected = tuple[int, str] | None  # (version, the param that named it: If-Match or expected_version)


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
        self._tasks: list[asyncio.Task[None]] = []  # follow, listen, the monitoring log's flush (start)

    @property
    def config_policy_ids(self) -> frozenset[str]:
        return frozenset(p.id for p in self.config.policies)

    @property
    def config_stage_names(self) -> frozenset[str]:
        return frozenset(s.name for s in self.config.stages)

    def compile(self, snapshot: Snapshot) -> tuple[GuardPlan, list[ConfigIssue]]:
        """Config + store documents -> plan; issues name `store.policies.<id>...` for stored ones."""
        return compile_snapshot(self.config, snapshot, self.runtime, self.cache)

    async def snapshot(self) -> Snapshot:
        return await read_snapshot(self.store)

    @property
    def application_ids(self) -> frozenset[str]:
        return frozenset(a.id for a in self.config.applications) | self._stored_apps

    async def check(self, snapshot: Snapshot) -> GuardPlan:
        """Compile off the event loop (a classifier policy trains here); raise InvalidChange on issues."""
        plan, issues = await asyncio.to_thread(self.compile, snapshot)
        if issues:
            raise InvalidChange(issues[0].path, issues[0].message)
        return plan

    def _regression(self, revision: int, snapshot: Snapshot) -> str | None:
        """Why this store is not a newer truth than the adopted one, or None when it is."""
        if not self.loaded:
            return None  # nothing to compare with: a first read is adopted as it is
        if revision <= self.revision:
            return (f"the store's revision went back from {self.revision} to {revision} (restarted without "
                    "persistence, flushed, or failed over to a replica that lags)")
        vanished = self._documents - snapshot.keys()
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
                self._documents = snapshot.keys()
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
            self._documents = snapshot.keys()
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

    def start(self, monitor: MonitorLog | None = None) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.follow(), name="registry-follow"))
        if hasattr(self.store, "changes"):
            self._tasks.append(loop.create_task(self.listen(), name="registry-listen"))
        if monitor is not None:
            self._tasks.append(loop.create_task(monitor.flush(self.store), name="monitoring-flush"))

    async def stop(self) -> None:
        for task in self._tasks:
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
        if expected is not None and (current := await self.current_version(kind, doc_id)) != expected[0]:
            raise VersionConflict(kind, doc_id, expected[0], current, expected[1])

    async def write(self, kind: str, body: dict[str, Any], author: str, note: str = "", *,
                    expected: Expected = None, dry_run: bool = False) -> Version:
        """Validate the store with this document in it, then write it and swap the plan at once.

        `expected` (version, param): refuse with VersionConflict unless the document is at that version,
        checked before compiling (a fast answer) and by the store's put, atomically with the write (a
        compare-and-set across replicas: of concurrent writes based on one version, one lands). `dry_run`:
        validate only and return the version it would become, writing nothing (G16)."""
        self._writable()
        await self.expect(kind, body["id"], expected)
        problem = limits.policy_problem(body) if kind == "policy" else None
        if problem is not None:
            raise InvalidChange(*problem)
        snapshot = await self.snapshot()
        candidate = Version(kind, body["id"], 0, body, time.time(), author)
        trial = snapshot.replaced(kind, body["id"], candidate)
        if kind == "policy":
            problem = limits.growth_problem(body, (d.body for d in snapshot.policies if d.id == body["id"]),
                                            (d.body for d in trial.policies))
            if problem is not None:
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
        try:  # the store's compare-and-set makes `expected` safe: a write may have landed since the check
            written = await self.store.put(kind, body, author, note, expected_version=expected and expected[0])
        except VersionConflict as err:  # name the caller's param (If-Match or expected_version)
            err.param = expected[1] if expected else err.param
            raise
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
