"""Admin API for policies (seed 000's registry, seed 002's threshold endpoint): the records and their
training. The lifecycle itself (the registry, versions, training jobs) is gateway/policies/; these
endpoints read the request, check the role, call it and shape the answer. Training data and feedback
are admin/policy_data.py, Apply Policy admin/policy_apply.py, what they share admin/policy_admin.py;
`policy_routes` lists them all.

Bearer admin tokens: `central` may do everything; `app:<id>` may create policies (owned by its
application), edit and delete only those, and apply policies only to its own application. Policies
from the config file are read-only here. Errors are OpenAI-shaped: 400 names the field, 401/403/404,
409 for an id that exists, 503 when the store is unreachable.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from gateway.admin.auth import AdminAuth, Role
from gateway.admin.console_api import refuse_unknown_query
from gateway.admin.common import dry_run, ok, owner, read_json, refuse_unknown, take_expected, take_note, wrap
from gateway.admin.policy_admin import PolicyAdmin, light, view
from gateway.admin.policy_apply import PolicyApplying
from gateway.admin.policy_data import PolicyData
from gateway.guard.monitor import MonitorLog
from gateway.policies.applying import applied_counts
from gateway.policies.registry import Registry
from gateway.guard.policy_types import TRAINABLE
from gateway.policies.training import TrainingJobs, training_state
from gateway.store.changelog import change_owner
from gateway.config.guard_schema import PolicySpec
from gateway.errors import InvalidChange, VersionConflict
from gateway.metrics.model import accepts, unknown_params
from gateway.wire import OpenAIError, RawResponse


def _is_field(key: str) -> bool:
    """A policy's own field (id, type, rule, examples...) or its owner, not a parameter of its type."""
    return key in PolicySpec.model_fields or key == "owner"


def _refuse_unknown_params(body: dict[str, Any]) -> None:
    """A model-based policy's keys its type does not have: 400 naming the first (stored versions written
    before this check keep loading without them: policies/compile.policy_spec)."""
    problem = unknown_params(str(body.get("type")), [k for k in body if not _is_field(k)])
    if problem is not None:
        raise InvalidChange(str(problem.path[0]), problem.message)


def _edited(stored: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A PATCH's new body. A key the type does not have is refused when the request sets it (a new key or
    a new value); one that is only carried over (stored by an earlier release, sent back unchanged, or a
    parameter of the type the policy is leaving) is dropped, so such a policy stays editable."""
    merged = {**stored, **changes}
    kind = str(merged.get("type"))
    _refuse_unknown_params({"type": kind, **{k: v for k, v in changes.items()
                                             if k not in stored or stored[k] != v}})
    return {k: v for k, v in merged.items() if _is_field(k) or accepts(kind, k)}


def _exists(policy_id: str) -> OpenAIError:
    return OpenAIError(409, f"A policy '{policy_id}' exists already.", code="policy_exists", param="id")


class PolicyRecords(PolicyAdmin):
    """The policy records: list, create, read, edit, the threshold (delete, versions, revert: Resource's)."""

    async def list_policies(self, request: Request, role: Role) -> RawResponse:
        data = [{"id": p.id, "object": "policy", "source": "config", "type": p.type, "rule": p.rule,
                 "threshold": p.threshold} for p in self.registry.config.policies]
        applied = applied_counts(await self.store.list("stage"))
        for item in data:
            item.update(owner="config", applied=applied.get(str(item["id"]), 0))
        for doc in await self.store.list("policy"):
            data.append({**light(view(doc)), **await training_state(self.store, doc), "applied": applied.get(doc.id, 0)})
        return ok({"object": "list", "data": data})

    async def create(self, request: Request, role: Role) -> RawResponse:
        """Create a policy; `?dry_run=true` validates it and answers what would be stored, writing nothing."""
        trial = dry_run(request)
        body = await read_json(request)
        note = take_note(body)
        policy_id = body.get("id")
        if not isinstance(policy_id, str) or not policy_id:
            raise OpenAIError(400, "id: required, a non-empty string.", code="invalid_policy", param="id")
        if policy_id in self.registry.config_policy_ids or await self.store.get("policy", policy_id) is not None:
            raise _exists(policy_id)
        _refuse_unknown_params(body)
        try:  # create only: of two racing creates of one id, the store lets one land (compare-and-set on 0)
            doc = await self.registry.write("policy", {**body, "owner": owner(role)}, owner(role), note,
                                            expected=(0, "id"), dry_run=trial)
        except VersionConflict:
            raise _exists(policy_id) from None
        return self.written(doc, trial, 201)

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
        found = view(await self.stored(policy_id, role, write=False))
        return ok(found if include == "head" else light(found))

    async def edit(self, request: Request, role: Role) -> RawResponse:
        """Change a policy (a new version). `note` labels the version; `expected_version` (or If-Match)
        refuses the change with 409 version_conflict if the policy moved on; `?dry_run=true` validates only."""
        trial = dry_run(request)
        doc = await self.named(request, role, write=True)
        changes = await read_json(request)
        note, expected = take_note(changes), take_expected(request, changes)
        for key in ("id", "owner"):
            if key in changes and changes[key] != doc.body.get(key):
                raise OpenAIError(400, f"{key}: cannot be changed.", code="invalid_policy", param=key)
        new = await self.registry.write("policy", _edited(doc.body, changes), owner(role), note, expected=expected,
                                        dry_run=trial)
        return self.written(new, trial)

    async def update_threshold(self, request: Request, role: Role) -> RawResponse:
        doc = await self.named(request, role, write=True)
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


class PolicyTraining(PolicyAdmin):
    """Training a policy in the background (policies/training.py's TrainingJobs) and its status."""

    def __init__(self, registry: Registry, monitor: MonitorLog, complete: Any = None) -> None:
        super().__init__(registry, monitor, complete)
        self.jobs = TrainingJobs(registry)

    async def train(self, request: Request, role: Role) -> RawResponse:
        doc = await self.named(request, role, write=True)
        body = await read_json(request)
        refuse_unknown(body, ("note",), "{note?}")
        note = take_note(body)
        if doc.body.get("type") not in TRAINABLE:
            raise OpenAIError(400, f"A {doc.body.get('type')} policy has nothing to train; trainable types: "
                                   f"{', '.join(TRAINABLE)}.", code="not_trainable", param="type")
        job, running = await self.jobs.start(doc.id, owner(role), note, change_owner("policy", doc.id, doc.body))
        if running is not None:
            raise OpenAIError(409, f"Policy '{doc.id}' is already training (on {running.get('replica')}).",
                              code="training_in_progress")
        return ok(job, 202)

    async def training_status(self, request: Request, role: Role) -> RawResponse:
        doc = await self.named(request, role, write=False)
        job = await self.jobs.status(doc.id)
        if job is None:
            raise OpenAIError(404, f"Policy '{doc.id}' has not been trained.", code="no_training")
        return ok(job)


def policy_routes(admin: AdminAuth, registry: Registry, monitor: MonitorLog, complete: Any = None) -> list[Route]:
    p, d = PolicyRecords(registry, monitor, complete), PolicyData(registry, monitor, complete)
    a, t = PolicyApplying(registry, monitor, complete), PolicyTraining(registry, monitor, complete)
    base = "/v1/admin/policies"
    table = [
        (base, p.list_policies, "GET"), (base, p.create, "POST"),
        (base + "/{id}", p.read, "GET"), (base + "/{id}", p.edit, "PATCH"), (base + "/{id}", p.delete, "DELETE"),
        (base + "/{id}/versions", p.versions, "GET"), (base + "/{id}/revert", p.revert, "POST"),
        (base + "/{id}/data", d.add_data, "POST"), (base + "/{id}/data", d.list_data, "GET"),
        (base + "/{id}/data", d.delete_data, "DELETE"),
        (base + "/{id}/data/{row}", d.edit_row, "PATCH"), (base + "/{id}/data/{row}", d.delete_row, "DELETE"),
        (base + "/{id}/generate", d.generate, "POST"),
        (base + "/{id}/apply", a.apply, "POST"), (base + "/{id}/apply", a.unapply, "DELETE"),
        (base + "/{id}/apply", a.applied, "GET"),
        ("/v1/admin/models/{model}/policies", a.model_policies, "GET"),
        (base + "/{id}/train", t.train, "POST"), (base + "/{id}/train", t.training_status, "GET"),
        (base + "/{id}/feedback", d.list_feedback, "GET"), (base + "/{id}/apply-feedback", d.apply_feedback, "POST"),
        ("/v1/admin/feedback", d.feedback, "POST"), ("/v1/admin/feedback", d.record_feedback, "GET"),
        ("/v1/admin/feedback/{item}", d.delete_feedback, "DELETE"),
        ("/v1/moderation/policy/{id}/update-threshold", p.update_threshold, "PUT"),
    ]
    return [Route(path, wrap(admin, handler), methods=[method]) for path, handler, method in table]
