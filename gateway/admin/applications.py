"""Admin API for applications created at run time (central tokens only).

A stored application is {"id", "stages", "allow_request_stages", "key_hashes"}: its keys are kept
only as SHA-256 digests; a new key is shown once, in the answer that created it. Config applications
are read-only here and win on an id clash (creating one with a config id is a 409).
"""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from gateway.admin.auth import AdminAuth, Role
from gateway.admin.common import ok, read_json, wrap
from gateway.admin.registry import Registry
from gateway.proxy.auth import key_digest
from gateway.proxy.openai import OpenAIError
from gateway.proxy.responses import RawResponse
from gateway.store import Version


def _view(doc: Version) -> dict[str, Any]:
    return {"id": doc.id, "object": "application", "source": "store", "version": doc.version,
            "stages": doc.body.get("stages", []), "allow_request_stages": doc.body.get("allow_request_stages", True),
            "keys": len(doc.body.get("key_hashes", []))}


def _new_key() -> str:
    return "sk-gg-" + secrets.token_urlsafe(32)


def application_routes(admin: AdminAuth, registry: Registry) -> list[Route]:
    store = registry.store

    def central_only(role: Role) -> None:
        if not role.central:
            raise OpenAIError(403, "Only central tokens may manage applications.", code="forbidden")

    async def body_fields(request: Request) -> dict[str, Any]:
        body = await read_json(request)
        stages = body.get("stages", [])
        if not isinstance(stages, list) or not all(isinstance(x, str) for x in stages):
            raise OpenAIError(400, "stages: a list of stage names.", code="invalid_application", param="stages")
        known = set(registry.flow.plan.stages)
        for i, name in enumerate(stages):
            if name not in known:
                raise OpenAIError(400, f"stages[{i}]: no stage {name!r}.", code="invalid_application",
                                  param=f"stages[{i}]")
        allow = body.get("allow_request_stages", True)
        if not isinstance(allow, bool):
            raise OpenAIError(400, "allow_request_stages: true or false.", code="invalid_application",
                              param="allow_request_stages")
        return {"stages": stages, "allow_request_stages": allow, "id": body.get("id")}

    async def list_apps(request: Request, role: Role) -> RawResponse:
        central_only(role)
        data = [{"id": a.id, "object": "application", "source": "config", "stages": list(a.stages),
                 "keys": len(a.keys)} for a in registry.config.applications]
        data += [_view(d) for d in await store.list("application")]
        return ok({"object": "list", "data": data})

    async def create(request: Request, role: Role) -> RawResponse:
        """Create an application; its first key is in this answer only."""
        central_only(role)
        fields = await body_fields(request)
        app_id = fields.pop("id")
        if not isinstance(app_id, str) or not app_id:
            raise OpenAIError(400, "id: required, a non-empty string.", code="invalid_application", param="id")
        if app_id in registry.application_ids:
            raise OpenAIError(409, f"An application '{app_id}' exists already.", code="application_exists",
                              param="id")
        key = _new_key()
        doc = await registry.write("application", {"id": app_id, **fields, "key_hashes": [key_digest(key)]},
                                   "central")
        return ok({**_view(doc), "key": key}, 201)

    async def stored(app_id: str) -> Version:
        if app_id in {a.id for a in registry.config.applications}:
            raise OpenAIError(403, f"Application '{app_id}' is defined in the config file; change it there.",
                              code="config_application")
        doc = await store.get("application", app_id)
        if doc is None:
            raise OpenAIError(404, f"No application '{app_id}' in the store.", code="application_not_found")
        return doc

    async def read(request: Request, role: Role) -> RawResponse:
        central_only(role)
        return ok(_view(await stored(request.path_params["id"])))

    async def edit(request: Request, role: Role) -> RawResponse:
        central_only(role)
        doc = await stored(request.path_params["id"])
        fields = await body_fields(request)
        fields.pop("id")
        new = await registry.write("application", {**doc.body, **fields}, "central")
        return ok(_view(new))

    async def add_key(request: Request, role: Role) -> RawResponse:
        """Add a key (rotation: add, move clients over, then revoke the old ones); shown once."""
        central_only(role)
        doc = await stored(request.path_params["id"])
        key = _new_key()
        body = {**doc.body, "key_hashes": [*doc.body.get("key_hashes", []), key_digest(key)]}
        new = await registry.write("application", body, "central")
        return ok({**_view(new), "key": key}, 201)

    async def revoke_keys(request: Request, role: Role) -> RawResponse:
        """Revoke every key but the newest `keep` (default 1)."""
        central_only(role)
        doc = await stored(request.path_params["id"])
        keep = (await read_json(request)).get("keep", 1)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise OpenAIError(400, "keep: a whole number >= 0.", code="invalid_request", param="keep")
        hashes = doc.body.get("key_hashes", [])
        new = await registry.write("application", {**doc.body, "key_hashes": hashes[len(hashes) - keep:] if keep
                                                   else []}, "central")
        return ok(_view(new))

    async def delete(request: Request, role: Role) -> RawResponse:
        central_only(role)
        doc = await stored(request.path_params["id"])
        await registry.remove("application", doc.id, "central")
        return ok({"id": doc.id, "object": "application", "deleted": True})

    base = "/v1/admin/applications"
    return [
        Route(base, wrap(admin, list_apps), methods=["GET"]),
        Route(base, wrap(admin, create), methods=["POST"]),
        Route(base + "/{id}", wrap(admin, read), methods=["GET"]),
        Route(base + "/{id}", wrap(admin, edit), methods=["PATCH"]),
        Route(base + "/{id}", wrap(admin, delete), methods=["DELETE"]),
        Route(base + "/{id}/keys", wrap(admin, add_key), methods=["POST"]),
        Route(base + "/{id}/keys", wrap(admin, revoke_keys), methods=["DELETE"]),
    ]
