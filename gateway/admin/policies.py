"""Admin API for policies (seed 000's registry, seed 002's threshold endpoint).

Bearer admin tokens: `central` may do everything; `app:<id>` may create policies (owned by its
application), edit and delete only those, and apply policies only to its own application. Policies
from the config file are read-only here. Errors are OpenAI-shaped: 400 names the field, 401/403/404,
409 for an id that exists, 503 when the store is unreachable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.routing import Route

from gateway.admin.auth import AdminAuth, Role
from gateway.admin.registry import InvalidChange, Registry
from gateway.proxy.openai import OpenAIError
from gateway.proxy.responses import JSON, RawResponse
from gateway.store import Example, StoreError, Version

_MAX_BODY = 4 * 1024 * 1024
Handler = Callable[[Request, Role], Awaitable[Any]]


def _ok(payload: Any, status: int = 200) -> RawResponse:
    return RawResponse(status, [JSON], orjson.dumps(payload))


def _owner(role: Role) -> str:
    return "central" if role.central else f"app:{role.application}"


def _view(doc: Version, source: str = "store") -> dict[str, Any]:
    return {"id": doc.id, "object": "policy", "source": source, "version": doc.version, "updated": doc.created,
            "author": doc.author, **{k: v for k, v in doc.body.items() if k != "id"}}


async def _json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > _MAX_BODY:
        raise OpenAIError(413, "The request body is too large.", code="request_too_large")
    try:
        parsed = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise OpenAIError(400, f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(parsed, dict):
        raise OpenAIError(400, "The request body must be a JSON object.", code="invalid_request")
    return parsed


def policy_routes(admin: AdminAuth, registry: Registry) -> list[Route]:
    store = registry.store

    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[RawResponse]]:
        async def run(request: Request) -> RawResponse:
            try:
                role = admin.role(request.headers.get("authorization"))
                return await handler(request, role)
            except OpenAIError as err:
                return RawResponse(err.status, [JSON], err.body())
            except InvalidChange as err:
                e = OpenAIError(400, f"{err.param}: {err.message}", code="invalid_policy", param=err.param)
                return RawResponse(400, [JSON], e.body())
            except StoreError:
                e = OpenAIError(503, "The policy store is unreachable; the gateway keeps enforcing its last good "
                                     "plan. Retry later.", code="store_unavailable")
                return RawResponse(503, [JSON], e.body())
        return run

    async def stored(policy_id: str, role: Role, write: bool) -> Version:
        if policy_id in registry.config_policy_ids:
            if write:
                raise OpenAIError(403, f"Policy '{policy_id}' is defined in the config file; change it there.",
                                  code="config_policy")
        doc = await store.get("policy", policy_id)
        if doc is None:
            raise OpenAIError(404, f"No policy '{policy_id}' in the store.", code="policy_not_found")
        if write and not role.central and doc.body.get("owner") != _owner(role):
            raise OpenAIError(403, f"Policy '{policy_id}' belongs to {doc.body.get('owner')}.", code="forbidden")
        return doc

    async def list_policies(request: Request, role: Role) -> RawResponse:
        data = [{"id": p.id, "object": "policy", "source": "config", "type": p.type, "rule": p.rule,
                 "threshold": p.threshold} for p in registry.config.policies]
        data += [_view(d) for d in await store.list("policy")]
        return _ok({"object": "list", "data": data})

    async def create(request: Request, role: Role) -> RawResponse:
        body = await _json(request)
        policy_id = body.get("id")
        if not isinstance(policy_id, str) or not policy_id:
            raise OpenAIError(400, "id: required, a non-empty string.", code="invalid_policy", param="id")
        if policy_id in registry.config_policy_ids or await store.get("policy", policy_id) is not None:
            raise OpenAIError(409, f"A policy '{policy_id}' exists already.", code="policy_exists", param="id")
        doc = await registry.write("policy", {**body, "owner": _owner(role)}, _owner(role))
        return _ok(_view(doc), 201)

    async def read(request: Request, role: Role) -> RawResponse:
        policy_id = request.path_params["id"]
        for p in registry.config.policies:
            if p.id == policy_id:
                return _ok({"object": "policy", "source": "config", **p.model_dump(mode="json")})
        return _ok(_view(await stored(policy_id, role, write=False)))

    async def edit(request: Request, role: Role) -> RawResponse:
        doc = await stored(request.path_params["id"], role, write=True)
        changes = await _json(request)
        for key in ("id", "owner"):
            if key in changes and changes[key] != doc.body.get(key):
                raise OpenAIError(400, f"{key}: cannot be changed.", code="invalid_policy", param=key)
        new = await registry.write("policy", {**doc.body, **changes}, _owner(role))
        return _ok(_view(new))

    async def delete(request: Request, role: Role) -> RawResponse:
        doc = await stored(request.path_params["id"], role, write=True)
        await registry.remove("policy", doc.id, _owner(role))
        return _ok({"id": doc.id, "object": "policy", "deleted": True})

    async def versions(request: Request, role: Role) -> RawResponse:
        doc = await stored(request.path_params["id"], role, write=False)
        history = await store.versions("policy", doc.id)
        return _ok({"object": "list", "data": [{**_view(v), "note": v.note, "current": v.version == doc.version}
                                               for v in history]})

    async def revert(request: Request, role: Role) -> RawResponse:
        doc = await stored(request.path_params["id"], role, write=True)
        body = await _json(request)
        version = body.get("version")
        if isinstance(version, bool) or not isinstance(version, int):
            raise OpenAIError(400, "version: required, a whole number.", code="invalid_request", param="version")
        old = await store.get("policy", doc.id, version)
        if old is None:
            raise OpenAIError(404, f"Policy '{doc.id}' has no version {version}.", code="version_not_found",
                              param="version")
        new = await registry.write("policy", old.body, _owner(role))
        return _ok({**_view(new), "reverted_to": version})

    async def update_threshold(request: Request, role: Role) -> RawResponse:
        doc = await stored(request.path_params["id"], role, write=True)
        body = await _json(request)
        value = body.get("classification_threshold")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise OpenAIError(400, "classification_threshold: required, a number from 0 to 1.",
                              code="invalid_request", param="classification_threshold")
        new = await registry.write("policy", {**doc.body, "threshold": float(value)}, _owner(role))
        return _ok({"id": new.id, "classification_threshold": float(value), "version": new.version})

    async def add_data(request: Request, role: Role) -> RawResponse:
        doc = await stored(request.path_params["id"], role, write=True)
        body = await _json(request)
        rows = body.get("data")
        if not isinstance(rows, list) or not rows:
            raise OpenAIError(400, "data: required, a list of {example, compliance}.", code="invalid_request",
                              param="data")
        examples = []
        for i, row in enumerate(rows):
            text = row.get("example") if isinstance(row, dict) else None
            status = str(row.get("compliance", "")).upper() if isinstance(row, dict) else ""
            if not isinstance(text, str) or not text.strip():
                raise OpenAIError(400, f"data[{i}].example: required, a non-empty string.", code="invalid_request",
                                  param=f"data[{i}].example")
            if status not in ("PASS", "FAIL"):
                raise OpenAIError(400, f"data[{i}].compliance: PASS or FAIL.", code="invalid_request",
                                  param=f"data[{i}].compliance")
            examples.append(Example(text, status))
        added = await store.add_examples(doc.id, examples)
        return _ok({"id": doc.id, "added": added, "total": len(await store.examples(doc.id))}, 201)

    async def list_data(request: Request, role: Role) -> RawResponse:
        doc = await stored(request.path_params["id"], role, write=False)
        rows = await store.examples(doc.id)
        return _ok({"object": "list", "data": [{"example": e.text, "compliance": e.label, "synthetic": e.synthetic,
                                                "source": e.source} for e in rows]})

    async def apply(request: Request, role: Role) -> RawResponse:
        """Seed 000's 'Apply Policy': enforce it on an application's input or output (a stored stage)."""
        policy_id = request.path_params["id"]
        if policy_id not in registry.config_policy_ids:
            await stored(policy_id, role, write=False)
        body = await _json(request)
        app = body.get("application")
        if not isinstance(app, str) or app not in {a.id for a in registry.config.applications}:
            raise OpenAIError(400, "application: required, a configured application id.", code="invalid_request",
                              param="application")
        if not role.central and app != role.application:
            raise OpenAIError(403, "This token may only apply policies to its own application.", code="forbidden",
                              param="application")
        on = body.get("on", "input")
        if on not in ("input", "output"):
            raise OpenAIError(400, "on: input or output.", code="invalid_request", param="on")
        action = body.get("action", {"type": "block"})
        name = f"apply-{policy_id}-{app}-{on}"
        spec = {"name": name, "on": on, "timeout_ms": body.get("timeout_ms", 1000),
                "rulesets": [{"name": policy_id, "rules": [{"metric": policy_id}], "action": action}]}
        doc = await registry.write("stage", {"id": name, "spec": spec, "applications": [app],
                                             "owner": _owner(role)}, _owner(role))
        return _ok({"object": "stage", "id": doc.id, "version": doc.version, "policy": policy_id,
                    "application": app, "on": on}, 201)

    async def unapply(request: Request, role: Role) -> RawResponse:
        body = await _json(request)
        app, on = body.get("application"), body.get("on", "input")
        if not role.central and app != role.application:
            raise OpenAIError(403, "This token may only change its own application.", code="forbidden",
                              param="application")
        name = f"apply-{request.path_params['id']}-{app}-{on}"
        if await store.get("stage", name) is None:
            raise OpenAIError(404, f"Policy '{request.path_params['id']}' is not applied to {app} ({on}).",
                              code="not_applied")
        await registry.remove("stage", name, _owner(role))
        return _ok({"object": "stage", "id": name, "deleted": True})

    base = "/v1/admin/policies"
    return [
        Route(base, endpoint(list_policies), methods=["GET"]),
        Route(base, endpoint(create), methods=["POST"]),
        Route(base + "/{id}", endpoint(read), methods=["GET"]),
        Route(base + "/{id}", endpoint(edit), methods=["PATCH"]),
        Route(base + "/{id}", endpoint(delete), methods=["DELETE"]),
        Route(base + "/{id}/versions", endpoint(versions), methods=["GET"]),
        Route(base + "/{id}/revert", endpoint(revert), methods=["POST"]),
        Route(base + "/{id}/data", endpoint(add_data), methods=["POST"]),
        Route(base + "/{id}/data", endpoint(list_data), methods=["GET"]),
        Route(base + "/{id}/apply", endpoint(apply), methods=["POST"]),
        Route(base + "/{id}/apply", endpoint(unapply), methods=["DELETE"]),
        Route("/v1/moderation/policy/{id}/update-threshold", endpoint(update_threshold), methods=["PUT"]),
    ]
