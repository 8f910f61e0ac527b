"""Admin API for policies (seed 000's registry, seed 002's threshold endpoint).

Bearer admin tokens: `central` may do everything; `app:<id>` may create policies (owned by its
application), edit and delete only those, and apply policies only to its own application. Policies
from the config file are read-only here. Errors are OpenAI-shaped: 400 names the field, 401/403/404,
409 for an id that exists, 503 when the store is unreachable.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from gateway.admin.examples import labelled_row
from gateway.admin.auth import AdminAuth, Role
from gateway.admin.console_api import refuse_unknown_query
from gateway.admin.common import (Handler, acting_on, dry_run, ok, owner, read_json, refuse_unknown, revert_to,
                                  take_expected, take_note, versions_of, wrap)
from gateway.policies.registry import Registry
from gateway.guard.monitor import MonitorLog
from gateway.scoring.runtime import ScoringRuntime
from gateway.wire import OpenAIError, RawResponse
from gateway.store import Example, StoreError, Version
from gateway.store.base import ACTIVE_JOB, record_key
from gateway.tasks import cancel_and_wait

TRAINABLE = ("classifier", "similar")
HEARTBEAT_S = 5.0
STALE_AFTER_S = 60.0


def train_version(body: dict[str, Any], stored: list[Example], runtime: ScoringRuntime) -> dict[str, Any]:
    """The next version of a policy trained on its definition and its stored training data (blocking).

    classifier: a head (logistic regression on the shared encoder) with held-out (5-fold) metrics and
    its calibrated threshold, stored in the version. similar: the stored examples become the version's
    examples. Either way the version records how many rows and which data (hash) it was made from."""
    import hashlib

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
    import hashlib

    lines = sorted(f"{e.label}\t{e.source}\t{e.text}" for e in rows)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def _view(doc: Version, source: str = "store") -> dict[str, Any]:
    return {"id": doc.id, "object": "policy", "source": source, "version": doc.version, "updated": doc.created,
            "author": doc.author, **{k: v for k, v in doc.body.items() if k != "id"}}


def _light(view: dict[str, Any]) -> dict[str, Any]:
    """G11: a policy view without its head's weights (about 400 numbers); the head keeps its threshold
    and held-out figures. `?include=head` asks for the weights."""
    head = view.get("head")
    if isinstance(head, dict) and "w" in head:
        return {**view, "head": {k: v for k, v in head.items() if k != "w"}}
    return view


GENERATE_PROMPT = """You write training data for a content policy classifier.
Policy: {rule}
Disallowed (FAIL): {disallowed}
Allowed (PASS): {allowed}
Write {count} realistic, varied user messages: about half that violate the policy (FAIL) and half that
are close to it but compliant (PASS). Answer with a JSON array only, each item
{{"example": "<message>", "compliance": "PASS" or "FAIL"}}."""


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


SOURCES = ("manual", "synthetic", "feedback")


def _row(e: Example) -> dict[str, Any]:
    """A training row as the API shows it (G9); rows from before rows had times show created/author null."""
    return {"id": e.seq, "object": "training_row", "example": e.text, "compliance": e.label,
            "synthetic": e.synthetic, "source": e.source, "created": e.created or None, "author": e.author or None}


def _source(value: str | None) -> str | None:
    if value is not None and value not in SOURCES:
        raise OpenAIError(400, f"source: one of {', '.join(SOURCES)}.", code="invalid_request", param="source")
    return value


def _whole(value: str | None, name: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or not low <= int(value) <= high:
        raise OpenAIError(400, f"{name}: a whole number from {low} to {high}.", code="invalid_request", param=name)
    return int(value)


def _row_id(request: Request) -> int:
    raw = request.path_params["row"]
    if not raw.isdigit() or int(raw) >= 2**62:
        raise OpenAIError(404, f"No training row {raw!r}: row ids are whole numbers.", code="row_not_found",
                          param="row")
    return int(raw)


def _apply_id(policy_id: str, app: str | None, on: str) -> str:
    return f"apply-{policy_id}-{app}-{on}" if app else f"apply-{policy_id}-models-{on}"


class PolicyAdmin:
    """What every policy endpoint shares: the registry (and its store), the monitoring log, the
    generator client; `stored` finds a stored policy the role may read (or write)."""

    def __init__(self, registry: Registry, monitor: MonitorLog, complete: Any = None) -> None:
        self.registry = registry
        self.store = registry.store
        self.monitor = monitor
        self.complete = complete

    async def stored(self, policy_id: str, role: Role, write: bool) -> Version:
        if policy_id in self.registry.config_policy_ids:
            if write:
                raise OpenAIError(403, f"Policy '{policy_id}' is defined in the config file; change it there.",
                                  code="config_policy")
        doc = await self.store.get("policy", policy_id)
        if doc is None:
            raise OpenAIError(404, f"No policy '{policy_id}' in the store.", code="policy_not_found")
        if write and not role.central and doc.body.get("owner") != owner(role):
            raise OpenAIError(403, f"Policy '{policy_id}' belongs to {doc.body.get('owner')}.", code="forbidden")
        return doc


class PolicyRecords(PolicyAdmin):
    """The policy records: list, create, read, edit, delete, versions, revert, the threshold."""

    async def list_policies(self, request: Request, role: Role) -> RawResponse:
        data = [{"id": p.id, "object": "policy", "source": "config", "type": p.type, "rule": p.rule,
                 "threshold": p.threshold} for p in self.registry.config.policies]
        applied: dict[str, int] = {}
        for stage in await self.store.list("stage"):  # G7: how many apply-* stages run each policy
            rules = [r.get("metric") for rs in stage.body.get("spec", {}).get("rulesets", []) for r in rs.get("rules", [])]
            if stage.id.startswith("apply-") and len(rules) == 1:
                applied[rules[0]] = applied.get(rules[0], 0) + 1
        for item in data:
            item.update(owner="config", applied=applied.get(str(item["id"]), 0))
        for doc in await self.store.list("policy"):
            data.append({**_light(_view(doc)), **await self._state(doc), "applied": applied.get(doc.id, 0)})
        return ok({"object": "list", "data": data})

    async def _state(self, doc: Version) -> dict[str, Any]:
        """G7: the training state of a stored policy for the registry list. `needs_training`: trainable and
        never trained, its current version is not the one the last training wrote (edited since), or its
        stored training rows changed since (data added, generated or feedback applied)."""
        if doc.body.get("type") not in TRAINABLE:
            return {"training": None, "needs_training": False}
        job = await self.store.job(doc.id)
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
            needs = trained_on != stored_fingerprint(await self.store.examples(doc.id))
        return {"training": training, "needs_training": needs}

    async def create(self, request: Request, role: Role) -> RawResponse:
        """Create a policy; `?dry_run=true` validates it and answers what would be stored, writing nothing."""
        trial = dry_run(request)
        body = await read_json(request)
        note = take_note(body)
        policy_id = body.get("id")
        if not isinstance(policy_id, str) or not policy_id:
            raise OpenAIError(400, "id: required, a non-empty string.", code="invalid_policy", param="id")
        if policy_id in self.registry.config_policy_ids or await self.store.get("policy", policy_id) is not None:
            raise OpenAIError(409, f"A policy '{policy_id}' exists already.", code="policy_exists", param="id")
        doc = await self.registry.write("policy", {**body, "owner": owner(role)}, owner(role), note, dry_run=trial)
        return ok({**_light(_view(doc)), "note": doc.note, "dry_run": True} if trial else _view(doc),
                  200 if trial else 201)

    async def read(self, request: Request, role: Role) -> RawResponse:
        """A policy; a trained head comes without its weights unless `?include=head`."""
        refuse_unknown_query(request, ("include",))
        include = request.query_params.get("include")
        if include not in (None, "head"):
            raise OpenAIError(400, "include: head (the trained head's weights) or nothing.",
                              code="invalid_request", param="include")
        policy_id = request.path_params["id"]
        for p in self.registry.config.policies:
            if p.id == policy_id:
                return ok({"object": "policy", "source": "config", **p.model_dump(mode="json")})
        view = _view(await self.stored(policy_id, role, write=False))
        return ok(view if include == "head" else _light(view))

    async def edit(self, request: Request, role: Role) -> RawResponse:
        """Change a policy (a new version). `note` labels the version; `expected_version` (or If-Match)
        refuses the change with 409 version_conflict if the policy moved on; `?dry_run=true` validates only."""
        trial = dry_run(request)
        doc = await self.stored(request.path_params["id"], role, write=True)
        changes = await read_json(request)
        note, expected = take_note(changes), take_expected(request, changes)
        for key in ("id", "owner"):
            if key in changes and changes[key] != doc.body.get(key):
                raise OpenAIError(400, f"{key}: cannot be changed.", code="invalid_policy", param=key)
        new = await self.registry.write("policy", {**doc.body, **changes}, owner(role), note, expected=expected,
                                        dry_run=trial)
        return ok({**_light(_view(new)), "note": new.note, "dry_run": True} if trial else _view(new))

    async def delete(self, request: Request, role: Role) -> RawResponse:
        doc = await self.stored(request.path_params["id"], role, write=True)
        await self.registry.remove("policy", doc.id, owner(role))
        return ok({"id": doc.id, "object": "policy", "deleted": True})

    async def versions(self, request: Request, role: Role) -> RawResponse:
        doc = await self.stored(request.path_params["id"], role, write=False)
        return await versions_of(self.store, "policy", doc, _view, request)

    async def revert(self, request: Request, role: Role) -> RawResponse:
        doc = await self.stored(request.path_params["id"], role, write=True)
        return await revert_to(self.registry, "policy", doc, request, role, _view)

    async def update_threshold(self, request: Request, role: Role) -> RawResponse:
        doc = await self.stored(request.path_params["id"], role, write=True)
        body = await read_json(request)
        refuse_unknown(body, ("classification_threshold", "note", "expected_version"),
                       "{classification_threshold, note?, expected_version?}")
        note, expected = take_note(body), take_expected(request, body)
        value = body.get("classification_threshold")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise OpenAIError(400, "classification_threshold: required, a number from 0 to 1.",
                              code="invalid_request", param="classification_threshold")
        new = await self.registry.write("policy", {**doc.body, "threshold": float(value)}, owner(role), note,
                                        expected=expected)
        return ok({"id": new.id, "classification_threshold": float(value), "version": new.version,
                   "note": new.note})


class PolicyData(PolicyAdmin):
    """A policy's training data: rows added, listed, edited and deleted, feedback on monitoring records
    and its application, synthetic rows from a generator model."""

    async def add_data(self, request: Request, role: Role) -> RawResponse:
        doc = await self.stored(request.path_params["id"], role, write=True)
        body = await read_json(request)
        rows = body.get("data")
        if not isinstance(rows, list) or not rows:
            raise OpenAIError(400, "data: required, a list of {example, compliance} (or {type, "
                                   "output_example}).", code="invalid_request", param="data")
        for key in body:
            if key != "data":
                raise OpenAIError(400, f"{key}: unknown field; the body is {{data: [...]}}.",
                                  code="invalid_request", param=key)
        examples = [Example(*labelled_row(row, f"data[{i}]"), author=owner(role)) for i, row in enumerate(rows)]
        added = await self.store.add_examples(doc.id, examples)
        return ok({"id": doc.id, "added": added, "total": len(await self.store.examples(doc.id))}, 201)

    async def list_data(self, request: Request, role: Role) -> RawResponse:
        """Training rows, oldest first: filters source= and label=, pages of limit= rows after= a row id."""
        doc = await self.stored(request.path_params["id"], role, write=False)
        refuse_unknown_query(request, ("source", "label", "limit", "after"))
        q = request.query_params
        source, label = _source(q.get("source")), q.get("label")
        if label is not None and label.upper() not in ("PASS", "FAIL"):
            raise OpenAIError(400, "label: PASS or FAIL.", code="invalid_request", param="label")
        limit = _whole(q.get("limit"), "limit", 1, 1000)
        after = _whole(q.get("after"), "after", 0, 2**62)
        rows = await self.store.examples(doc.id, source, label, after, None if limit is None else limit + 1)
        more = limit is not None and len(rows) > limit
        rows = rows[:limit] if limit is not None else rows
        every = await self.store.examples(doc.id)
        counts: dict[str, int] = {"rows": len(every), "FAIL": 0, "PASS": 0, "manual": 0, "synthetic": 0, "feedback": 0}
        for e in every:
            counts[e.label] = counts.get(e.label, 0) + 1
            counts[e.source] = counts.get(e.source, 0) + 1
        return ok({"object": "list", "data": [_row(e) for e in rows], "has_more": more,
                   "first_id": rows[0].seq if rows else None, "last_id": rows[-1].seq if rows else None,
                   "counts": counts})

    async def edit_row(self, request: Request, role: Role) -> RawResponse:
        """Change a training row's example text or compliance label."""
        doc = await self.stored(request.path_params["id"], role, write=True)
        seq = _row_id(request)
        body = await read_json(request)
        for key in body:
            if key not in ("example", "compliance"):
                raise OpenAIError(400, f"{key}: unknown field; a row's editable fields are example and compliance.",
                                  code="invalid_request", param=key)
        if not body:
            raise OpenAIError(400, "example or compliance: say what to change.", code="invalid_request",
                              param="example")
        text, label = body.get("example"), body.get("compliance")
        if "example" in body and (not isinstance(text, str) or not text.strip()):
            raise OpenAIError(400, "example: a non-empty string.", code="invalid_request", param="example")
        if "compliance" in body and (not isinstance(label, str) or label.upper() not in ("PASS", "FAIL")):
            raise OpenAIError(400, "compliance: PASS or FAIL.", code="invalid_request", param="compliance")
        row = await self.store.update_example(doc.id, seq, text.strip() if isinstance(text, str) else None,
                                              label.upper() if isinstance(label, str) else None)
        if row is None:
            raise OpenAIError(404, f"Policy '{doc.id}' has no training row {seq}.", code="row_not_found", param="row")
        return ok(_row(row))

    async def delete_row(self, request: Request, role: Role) -> RawResponse:
        """Delete one training row."""
        doc = await self.stored(request.path_params["id"], role, write=True)
        seq = _row_id(request)
        refuse_unknown_query(request)
        if not await self.store.delete_examples(doc.id, [seq]):
            raise OpenAIError(404, f"Policy '{doc.id}' has no training row {seq}.", code="row_not_found", param="row")
        return ok({"id": seq, "object": "training_row", "deleted": True})

    async def delete_data(self, request: Request, role: Role) -> RawResponse:
        """Delete every training row of one source (?source=manual|synthetic|feedback)."""
        doc = await self.stored(request.path_params["id"], role, write=True)
        refuse_unknown_query(request, ("source",))
        source = _source(request.query_params.get("source"))
        if source is None:
            raise OpenAIError(400, "source: required (manual, synthetic or feedback): which rows to delete.",
                              code="invalid_request", param="source")
        deleted = await self.store.delete_examples(doc.id, source=source)
        return ok({"object": "list", "id": doc.id, "source": source, "deleted": deleted,
                   "total": len(await self.store.examples(doc.id))})

    async def feedback(self, request: Request, role: Role) -> RawResponse:
        """Feedback: the correct label for a named policy on a monitoring record."""
        body = await read_json(request)
        for key in body:
            if key not in ("record_id", "policy_id", "label", "compliance", "on"):
                raise OpenAIError(400, f"{key}: unknown field; the body is {{record_id, policy_id, label, on}}.",
                                  code="invalid_request", param=key)
        record_id, policy_id = body.get("record_id"), body.get("policy_id")
        label = str(body.get("label", body.get("compliance", ""))).upper()  # Add Data's word for it, too
        on = body.get("on", "input")
        if not isinstance(record_id, str) or not record_id:
            raise OpenAIError(400, "record_id: required (a monitoring record's id).", code="invalid_request",
                              param="record_id")
        if label not in ("PASS", "FAIL"):
            raise OpenAIError(400, "label: PASS or FAIL.", code="invalid_request", param="label")
        if on not in ("input", "output"):
            raise OpenAIError(400, "on: input or output (which of the request's records).", code="invalid_request",
                              param="on")
        if not isinstance(policy_id, str) or (policy_id not in self.registry.config_policy_ids
                                              and await self.store.get("policy", policy_id) is None):
            raise OpenAIError(400, "policy_id: required, an existing policy.", code="invalid_request",
                              param="policy_id")
        record = self.monitor.get(record_id, on)
        seq = 0
        if record is None:  # another replica's, or older than this one's buffer: the shared log has it
            found = await self.store.record_by_id(record_id, on)
            record, seq = (found.body, found.seq) if found else (None, 0)
        if record is None:
            raise OpenAIError(404, f"No monitoring record {record_id!r} ({on}).", code="record_not_found",
                              param="record_id")
        if not role.may_see(record["application"]):
            raise OpenAIError(403, "This token may only give feedback on its own application's records.",
                              code="forbidden", param="record_id")
        text = "\n\n".join(record["texts"])  # PII-redacted, as the log shows it
        item = await self.store.add_feedback(seq, policy_id, label, text, record_key(record_id, on))
        return ok({"object": "feedback", "id": item.seq, "record_id": record_id, "policy_id": policy_id,
                    "label": label, "text": text}, 201)

    async def list_feedback(self, request: Request, role: Role) -> RawResponse:
        doc = await self.stored(request.path_params["id"], role, write=False)
        items = await self.store.feedback(doc.id)
        return ok({"object": "list", "data": [{"id": f.seq, "label": f.label, "text": f.text,
                                                "applied": f.applied} for f in items]})

    async def apply_feedback(self, request: Request, role: Role) -> RawResponse:
        """Turn unapplied feedback into training data for the next training."""
        doc = await self.stored(request.path_params["id"], role, write=True)
        items = await self.store.feedback(doc.id, applied=False)
        if items:
            await self.store.add_examples(doc.id, [Example(f.text, f.label, source="feedback", author=owner(role))
                                                   for f in items])
            await self.store.mark_applied([f.seq for f in items])
        return ok({"id": doc.id, "applied": len(items), "total_examples": len(await self.store.examples(doc.id))})

    async def generate(self, request: Request, role: Role) -> RawResponse:
        """Synthetic training data: a generator model writes examples from the policy definition."""
        doc = await self.stored(request.path_params["id"], role, write=True)
        body = await read_json(request)
        model = body.get("model") or self.registry.config.guard.generator_model
        if not isinstance(model, str) or not model:
            raise OpenAIError(400, "model: required (or set guard.generator_model in the config).",
                              code="invalid_request", param="model")
        count = body.get("count", 20)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 200:
            raise OpenAIError(400, "count: a whole number from 1 to 200.", code="invalid_request", param="count")
        if self.complete is None:
            raise OpenAIError(503, "No upstream client to ask the generator.", code="generator_unavailable")
        d = doc.body
        prompt = GENERATE_PROMPT.format(rule=d.get("rule") or doc.id, count=count,
                                        disallowed="; ".join(d.get("disallowed_behaviors", [])) or "-",
                                        allowed="; ".join(d.get("allowed_behaviors", [])) or "-")
        try:
            answer = await asyncio.wait_for(self.complete(model, [{"role": "user", "content": prompt}]), 120)
            examples = parse_generated(answer, count)
        except (ValueError, LookupError, RuntimeError, TimeoutError) as exc:
            raise OpenAIError(502, f"The generator model failed: {exc}", code="generator_failed") from None
        await self.store.add_examples(doc.id, [dataclasses.replace(e, author=owner(role)) for e in examples])
        return ok({"id": doc.id, "added": len(examples), "synthetic": True,
                    "data": [{"example": e.text, "compliance": e.label} for e in examples]}, 201)


class PolicyApplying(PolicyAdmin):
    """Where policies run: `apply-*` stages for an application, models, or an application's models."""

    def _where(self, body: dict[str, Any], role: Role) -> tuple[str | None, list[str] | None, str]:
        """Where an apply/unapply body points: (application or None for every application, models or
        None for every model, on). Application tokens always mean their own application."""
        app = body.get("application")
        models = body.get("models")
        if models is not None and (not isinstance(models, list) or not models
                                   or not all(isinstance(m, str) and m for m in models)):
            raise OpenAIError(400, "models: a non-empty list of model names.", code="invalid_request",
                              param="models")
        if app is None and not role.central:
            app = role.application
        if app is None and models is None:
            raise OpenAIError(400, "application or models: say where to apply the policy.",
                              code="invalid_request", param="application")
        if app is not None:
            app = acting_on(self.registry, role, app, "an application id", "change its own application")
        on = body.get("on", "input")
        if on not in ("input", "output"):
            raise OpenAIError(400, "on: input or output.", code="invalid_request", param="on")
        return app, sorted(set(models)) if models is not None else None, on


    async def apply(self, request: Request, role: Role) -> RawResponse:
        """Apply a policy: to an application, to models, or to an application's models.

        With `models` alone (central tokens) it runs on every application's requests for them; with
        `application` on that application's requests, for every model or the listed ones. Applying
        again adds models."""
        policy_id = request.path_params["id"]
        if policy_id not in self.registry.config_policy_ids:
            await self.stored(policy_id, role, write=False)
        body = await read_json(request)
        app, models, on = self._where(body, role)
        name = _apply_id(policy_id, app, on)
        existing = await self.store.get("stage", name)
        if existing is not None and models is not None:
            before = existing.body["spec"].get("models")
            if before is None and app is not None:
                models = None  # already applied to every model of the application
            elif before:
                models = sorted({*before, *models})
        action = body.get("action", existing.body["spec"]["rulesets"][0]["action"] if existing else {"type": "block"})
        spec: dict[str, Any] = {"name": name, "on": on, "timeout_ms": body.get("timeout_ms", 1000),
                                "scope": "application" if app else "central",
                                "rulesets": [{"name": policy_id, "rules": [{"metric": policy_id}], "action": action}]}
        if models is not None:
            spec["models"] = models
        doc = await self.registry.write("stage", {"id": name, "spec": spec, "applications": [app] if app else [],
                                                  "owner": owner(role)}, owner(role))
        return ok({"object": "stage", "id": doc.id, "version": doc.version, "policy": policy_id,
                    "application": app, "models": models, "on": on}, 201)

    async def unapply(self, request: Request, role: Role) -> RawResponse:
        """Remove a policy from an application or from some models (the rest stay applied)."""
        policy_id = request.path_params["id"]
        body = await read_json(request)
        app, models, on = self._where(body, role)
        name = _apply_id(policy_id, app, on)
        doc = await self.store.get("stage", name)
        if doc is None:
            raise OpenAIError(404, f"Policy '{policy_id}' is not applied to {app or 'models'} ({on}).",
                              code="not_applied")
        before = doc.body["spec"].get("models")
        if models is not None and before is not None:
            if not set(models) & set(before):
                raise OpenAIError(404, f"Policy '{policy_id}' is not applied to {', '.join(models)} ({on}).",
                                  code="not_applied", param="models")
            remaining = sorted(set(before) - set(models))
            if remaining:
                spec = {**doc.body["spec"], "models": remaining}
                new = await self.registry.write("stage", {**doc.body, "spec": spec}, owner(role))
                return ok({"object": "stage", "id": name, "version": new.version, "models": remaining})
        elif models is not None:
            raise OpenAIError(400, f"models: policy '{policy_id}' is applied to every model of {app}; remove it "
                                   "from the application (no `models`).", code="invalid_request", param="models")
        await self.registry.remove("stage", name, owner(role))
        return ok({"object": "stage", "id": name, "deleted": True})

    async def applied(self, request: Request, role: Role) -> RawResponse:
        """Where the policy is applied through this API (its `apply-*` stages)."""
        policy_id = request.path_params["id"]
        if policy_id not in self.registry.config_policy_ids:
            await self.stored(policy_id, role, write=False)
        data = []
        for doc in await self.store.list("stage"):
            spec = doc.body.get("spec", {})
            rules = [r.get("metric") for rs in spec.get("rulesets", []) for r in rs.get("rules", [])]
            if not doc.id.startswith(f"apply-{policy_id}-") or rules != [policy_id]:
                continue
            apps = doc.body.get("applications", [])
            if not role.central and apps != [role.application]:
                continue
            data.append({"stage": doc.id, "application": apps[0] if apps else None,
                         "models": spec.get("models"), "on": spec.get("on"), "paused": bool(doc.body.get("paused"))})
        return ok({"object": "list", "data": data})

    async def model_policies(self, request: Request, role: Role) -> RawResponse:
        """The list of policies for a model, as one application's requests for it see them
        (every stage that runs: central and the application's, in order)."""
        model = request.path_params["model"]
        app = request.query_params.get("application") or role.application
        if app is None:
            raise OpenAIError(400, "application: required with a central token (whose requests?).",
                              code="invalid_request", param="application")
        if app not in self.registry.application_ids:
            raise OpenAIError(404, f"No application '{app}'.", code="application_not_found", param="application")
        if not role.may_see(app):
            raise OpenAIError(403, "This token may only read its own application.", code="forbidden",
                              param="application")
        plan = self.registry.flow.plan
        data = []
        for on in ("input", "output"):
            for stage in plan.stages_for(app, on, model=model):
                for rs in stage.rulesets:
                    for rule in rs.rules:
                        data.append({"policy": rule.metric, "stage": stage.name, "scope": stage.scope, "on": on,
                                     "ruleset": rs.name, "source": "policy" if rule.metric in plan.policies
                                     else "builtin"})
        return ok({"object": "list", "model": model, "application": app, "data": data})


class PolicyTraining(PolicyAdmin):
    """Training jobs live in the store, so every replica answers for them and only one trains a policy
    at a time; the replica running one refreshes `updated` every HEARTBEAT_S, and a job silent for
    STALE_AFTER_S (its replica died) no longer blocks a new training. `jobs` keeps this replica's own
    jobs for when the store is unreachable."""

    def __init__(self, registry: Registry, monitor: MonitorLog, complete: Any = None) -> None:
        super().__init__(registry, monitor, complete)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.replica = f"{socket.gethostname()}:{os.getpid()}"

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

    async def run_training(self, policy_id: str, author: str, note: str = "") -> None:
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

    async def train(self, request: Request, role: Role) -> RawResponse:
        doc = await self.stored(request.path_params["id"], role, write=True)
        body = await read_json(request)
        refuse_unknown(body, ("note",), "{note?}")
        note = take_note(body)
        if doc.body.get("type") not in TRAINABLE:
            raise OpenAIError(400, f"A {doc.body.get('type')} policy has nothing to train; trainable types: "
                                   f"{', '.join(TRAINABLE)}.", code="not_trainable", param="type")
        now = time.time()
        job = {"policy": doc.id, "status": "training_queued", "started": now, "updated": now, "replica": self.replica}
        running = await self.store.claim_job(doc.id, job, STALE_AFTER_S)
        if running is not None:
            raise OpenAIError(409, f"Policy '{doc.id}' is already training (on {running.get('replica')}).",
                              code="training_in_progress")
        self.jobs[doc.id] = job
        task = asyncio.get_running_loop().create_task(self.run_training(doc.id, owner(role), note))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return ok(job, 202)

    async def training_status(self, request: Request, role: Role) -> RawResponse:
        doc = await self.stored(request.path_params["id"], role, write=False)
        try:
            job = await self.store.job(doc.id)
        except StoreError:
            job = self.jobs.get(doc.id)
        if job is None:
            raise OpenAIError(404, f"Policy '{doc.id}' has not been trained.", code="no_training")
        # `age_s` is by the store's clock (this replica's may disagree with the one that trains); this
        # replica's own copy, read when the store is unreachable, is by its clock.
        age = float(job.pop("age_s")) if "age_s" in job else time.time() - float(job.get("updated", 0))
        if job.get("status") in ACTIVE_JOB and age > STALE_AFTER_S:
            job = {**job, "status": "failed", "error": f"replica {job.get('replica')} stopped reporting on "
                                                      "this training; train again"}
        return ok(job)


def policy_routes(admin: AdminAuth, registry: Registry, monitor: MonitorLog,
                  complete: Any = None) -> list[Route]:
    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[RawResponse]]:
        return wrap(admin, handler)

    p, d = PolicyRecords(registry, monitor, complete), PolicyData(registry, monitor, complete)
    a, t = PolicyApplying(registry, monitor, complete), PolicyTraining(registry, monitor, complete)
    base = "/v1/admin/policies"
    return [
        Route(base, endpoint(p.list_policies), methods=["GET"]),
        Route(base, endpoint(p.create), methods=["POST"]),
        Route(base + "/{id}", endpoint(p.read), methods=["GET"]),
        Route(base + "/{id}", endpoint(p.edit), methods=["PATCH"]),
        Route(base + "/{id}", endpoint(p.delete), methods=["DELETE"]),
        Route(base + "/{id}/versions", endpoint(p.versions), methods=["GET"]),
        Route(base + "/{id}/revert", endpoint(p.revert), methods=["POST"]),
        Route(base + "/{id}/data", endpoint(d.add_data), methods=["POST"]),
        Route(base + "/{id}/data", endpoint(d.list_data), methods=["GET"]),
        Route(base + "/{id}/data", endpoint(d.delete_data), methods=["DELETE"]),
        Route(base + "/{id}/data/{row}", endpoint(d.edit_row), methods=["PATCH"]),
        Route(base + "/{id}/data/{row}", endpoint(d.delete_row), methods=["DELETE"]),
        Route(base + "/{id}/generate", endpoint(d.generate), methods=["POST"]),
        Route(base + "/{id}/apply", endpoint(a.apply), methods=["POST"]),
        Route(base + "/{id}/apply", endpoint(a.unapply), methods=["DELETE"]),
        Route(base + "/{id}/apply", endpoint(a.applied), methods=["GET"]),
        Route("/v1/admin/models/{model}/policies", endpoint(a.model_policies), methods=["GET"]),
        Route(base + "/{id}/train", endpoint(t.train), methods=["POST"]),
        Route(base + "/{id}/train", endpoint(t.training_status), methods=["GET"]),
        Route(base + "/{id}/feedback", endpoint(d.list_feedback), methods=["GET"]),
        Route(base + "/{id}/apply-feedback", endpoint(d.apply_feedback), methods=["POST"]),
        Route("/v1/admin/feedback", endpoint(d.feedback), methods=["POST"]),
        Route("/v1/moderation/policy/{id}/update-threshold", endpoint(p.update_threshold), methods=["PUT"]),
    ]
