"""Training a policy: a new version made from its definition and its stored training data, by a
background job that every replica can see.

Trainable types: `classifier` (a head on the shared encoder, with held-out metrics and a calibrated
threshold) and `similar` (the stored rows become the version's examples). Synthetic training data comes
from a generator model (`GENERATE_PROMPT`, `parse_generated`).

Training jobs live in the store, so every replica answers for them and only one trains a policy at a
time; the replica running one refreshes `updated` every HEARTBEAT_S, and a job silent for STALE_AFTER_S
(its replica died) no longer blocks a new training. `TrainingJobs.jobs` keeps this replica's own jobs
for when the store is unreachable. The model code loads with the first training, not with this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import time
from typing import Any

from gateway.guard.policy_types import TRAINABLE
from gateway.policies.registry import Registry
from gateway.scoring.runtime import ScoringRuntime
from gateway.store import Example, Store, StoreError, Version
from gateway.store.base import ACTIVE_JOB
from gateway.tasks import cancel_and_wait

HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0


def train_version(body: dict[str, Any], stored: list[Example], runtime: ScoringRuntime) -> dict[str, Any]:
    """The next version of a policy trained on its definition and its stored training data (blocking).

    classifier: a head (logistic regression on the shared encoder) with held-out (5-fold) metrics and
    its calibrated threshold, stored in the version. similar: the stored examples become the version's
    examples. Either way the version records how many rows and which data (hash) it was made from."""
    from gateway.config.guard_schema import PolicySpec
    from gateway.metrics.policy_head import head_to_dict, policy_examples, train_policy_head

    definition = {k: v for k, v in body.items() if k not in ("owner", "head", "trained", "training_examples")}
    spec = PolicySpec.model_validate(definition)
    texts, labels = policy_examples(spec)
    for e in stored:  # feedback rows are the cases the policy got wrong: they count three times
        copies = 3 if e.source == "feedback" else 1
        texts += [e.text] * copies
        labels += [1 if e.label == "FAIL" else 0] * copies
    if sum(labels) == 0:
        raise ValueError("no FAIL examples: add training data first")
    data_sha = hashlib.sha256("\n".join(f"{y}\t{t}" for t, y in zip(texts, labels)).encode()).hexdigest()[:16]
    out = dict(body)
    if body.get("type") == "classifier":
        started = time.perf_counter()
        head = train_policy_head(spec.id, texts, labels, runtime)
        out["head"] = head_to_dict(head)
        out["head"]["meta"]["train_seconds"] = round(time.perf_counter() - started, 2)
    else:
        out["training_examples"] = [{"example": e.text, "compliance": e.label} for e in stored]
    out["trained"] = {"rows": len(texts), "fail": int(sum(labels)), "data_sha": data_sha, "time": time.time(),
                      "stored_sha": stored_fingerprint(stored)}
    return out


def stored_fingerprint(rows: list[Example]) -> str:
    """Which stored training rows (added, generated, feedback) a version was trained on: rows added or
    applied since make the policy need training again."""
    lines = sorted(f"{e.label}\t{e.source}\t{e.text}" for e in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


async def training_state(store: Store, doc: Version) -> dict[str, Any]:
    """G7: the training state of a stored policy for the registry list. `needs_training`: trainable and
    never trained, its current version is not the one the last training wrote (edited since), or its
    stored training rows changed since (data added, generated or feedback applied)."""
    if doc.body.get("type") not in TRAINABLE:
        return {"training": None, "needs_training": False}
    job = await store.job(doc.id)
    if job is None:
        return {"training": None, "needs_training": True}
    status = job.get("status")
    age = float(job.get("age_s", time.time() - float(job.get("updated", 0))))
    if status in ACTIVE_JOB and age > STALE_AFTER_S:
        status = "failed"
    training = {"status": status, "version": job.get("version"), "finished": job.get("finished"),
                "error": job.get("error")}
    needs = status != "ready" or job.get("version") != doc.version
    trained_on = (doc.body.get("trained") or {}).get("stored_sha")
    if not needs and trained_on is not None:  # data added (or feedback applied) since the training
        needs = trained_on != stored_fingerprint(await store.examples(doc.id))
    return {"training": training, "needs_training": needs}


GENERATE_PROMPT = """You write training data for a content policy classifier.
Policy: {rule}
Disallowed (FAIL): {disallowed}
Allowed (PASS): {allowed}
Write {count} realistic, varied user messages: about half that violate the policy (FAIL) and half that
are close to it but compliant (PASS). Answer with a JSON array only, each item
{{"example": "<message>", "compliance": "PASS" or "FAIL"}}."""


def generate_prompt(doc: Version, count: int) -> str:
    """What the generator model is asked for `count` examples of the stored policy `doc`."""
    d = doc.body
    return GENERATE_PROMPT.format(rule=d.get("rule") or doc.id, count=count,
                                  disallowed="; ".join(d.get("disallowed_behaviors", [])) or "-",
                                  allowed="; ".join(d.get("allowed_behaviors", [])) or "-")


def parse_generated(answer: str, limit: int) -> list[Example]:
    """The generator's JSON array of {example, compliance}; ValueError if there is none usable."""
    from gateway.metrics.judge import extract_json

    items = extract_json(answer, "array", "generator")
    out = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        text, status = item.get("example"), str(item.get("compliance", "")).upper()
        if isinstance(text, str) and text.strip() and status in ("PASS", "FAIL"):
            out.append(Example(text.strip(), status, synthetic=True, source="synthetic"))
    if not out:
        raise ValueError("the generator's answer held no {example, compliance} items")
    return out[:limit]


def reported(job: dict[str, Any]) -> dict[str, Any]:
    """A job as the API answers it: without `age_s`, and `failed` when its replica stopped reporting.
    `age_s` is by the store's clock (this replica's may disagree with the one that trains); this replica's
    own copy, read when the store is unreachable, has none and is aged by this replica's clock."""
    job = dict(job)
    age = float(job.pop("age_s")) if "age_s" in job else time.time() - float(job.get("updated", 0))
    if job.get("status") in ACTIVE_JOB and age > STALE_AFTER_S:
        job = {**job, "status": "failed", "error": f"replica {job.get('replica')} stopped reporting on "
                                                  "this training; train again"}
    return job


class TrainingJobs:
    """This replica's training jobs: claimed in the store, run in the background, their status saved
    to the store (and kept here) as they go."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.store = registry.store
        self.jobs: dict[str, dict[str, Any]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.replica = f"{socket.gethostname()}:{os.getpid()}"

    async def start(self, policy_id: str, author: str, note: str,
                    owner: str | None = None) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """Claim the policy's training and run it in the background: (the new job, None), or (the job
        that would have run, the other replica's job that is running) when one is. The job names the
        policy's `owner` (GET /v1/admin/jobs lists an application's by it; the store looks it up if None)."""
        now = time.time()
        job = {"policy": policy_id, "status": "training_queued", "started": now, "updated": now,
               "replica": self.replica, "author": author, **({"owner": owner} if owner else {})}
        running = await self.store.claim_job(policy_id, job, STALE_AFTER_S)
        if running is not None:
            return job, running
        self.jobs[policy_id] = job
        task = asyncio.get_running_loop().create_task(self.run(policy_id, author, note))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return job, None

    async def status(self, policy_id: str) -> dict[str, Any] | None:
        """The policy's last training job (this replica's copy when the store is unreachable); a job whose
        replica stopped reporting is `failed`."""
        try:
            job = await self.store.job(policy_id)
        except StoreError:
            job = self.jobs.get(policy_id)
        if job is None:
            return None
        return reported(job)

    async def save(self, policy_id: str, **changes: Any) -> None:
        job = self.jobs[policy_id]
        job.update(changes, updated=time.time())
        try:
            await self.store.put_job(policy_id, dict(job))
        except StoreError:
            pass  # the status stays readable on this replica; the next save or heartbeat retries

    async def heartbeat(self, policy_id: str) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            await self.save(policy_id)

    async def stop(self, beating: asyncio.Task[None]) -> None:
        """End the heartbeat before the final status, so a late beat never writes `training` over it."""
        await cancel_and_wait(beating)

    async def run(self, policy_id: str, author: str, note: str = "") -> None:
        beating = asyncio.get_running_loop().create_task(self.heartbeat(policy_id))
        try:
            await self.save(policy_id, status="training")
            doc = await self.store.get("policy", policy_id)
            if doc is None:
                raise LookupError("the policy was deleted")
            stored_rows = await self.store.examples(policy_id)
            body = await asyncio.to_thread(train_version, doc.body, stored_rows, self.registry.runtime)
            new = await self.registry.write("policy", body, author, note)
            await self.stop(beating)
            head = body.get("head", {})
            metrics = {k: v for k, v in head.get("meta", {}).items() if k != "curve"}  # the curve is in the version
            if "threshold" in head:
                metrics["threshold"] = head["threshold"]
            await self.save(policy_id, status="ready", version=new.version, finished=time.time(), metrics=metrics)
        except Exception as exc:  # the seed's `failed` state, with the reason
            await self.stop(beating)
            await self.save(policy_id, status="failed", error=f"{type(exc).__name__}: {getattr(exc, 'message', exc)}",
                            finished=time.time())
