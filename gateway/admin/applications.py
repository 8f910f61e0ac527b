"""Admin API for applications created at run time (central tokens only).

A stored application is {"id", "stages", "allow_request_stages", "key_hashes"}: its keys are kept
only as SHA-256 digests; a new key is shown once, in the answer that created it. Config applications
are read-only here and win on an id clash (creating one with a config id is a 409).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from gateway.admin.auth import AdminAuth, Role
from gateway.admin.common import dry_run, ok, read_json, wrap
from gateway.policies.registry import Registry
from gateway.proxy.auth import key_digest
from gateway.proxy.limits import expires
from gateway.errors import VersionConflict
from gateway.wire import OpenAIError, RawResponse
from gateway.store import Version


def _view(doc: Version) -> dict[str, Any]:
    return {"id": doc.id, "object": "application", "source": "store", "version": doc.version,
            "stages": doc.body.get("stages", []), "allow_request_stages": doc.body.get("allow_request_stages", True),
            "keys": len(doc.body.get("key_hashes", [])), "models": doc.body.get("models", []),
            "rpm": doc.body.get("rpm"), "tpm": doc.body.get("tpm"),
            "key_rules": list(doc.body.get("key_rules", {}).values()), "key_list": _key_list(doc.body)}


_CHANGE_TRIES = 32  # re-reads of an application another write changed meanwhile, then a 409
KEY_ID_CHARS = 16  # a key's public id: the first hex digits of its SHA-256 (never the key itself)


def _key_list(body: dict[str, Any]) -> list[dict[str, Any]]:
    """G17: each key, oldest first: its id, when it was made (null for keys made before it was kept) and
    its own limits."""
    rules, created = body.get("key_rules", {}), body.get("key_created", {})
    return [{"id": h[:KEY_ID_CHARS], "created": created.get(h), **(rules.get(h) or {})}
            for h in body.get("key_hashes", [])]


def _with_key(body: dict[str, Any], digest: str, rule: dict[str, Any] | None) -> dict[str, Any]:
    """`body` with one more key (its hash, its limits and when it was made)."""
    return {**body, "key_hashes": [*body.get("key_hashes", []), digest],
            "key_rules": {**body.get("key_rules", {}), **({digest: rule} if rule else {})},
            "key_created": {**body.get("key_created", {}), digest: round(time.time(), 3)}}


def _without_keys(body: dict[str, Any], kept: list[str]) -> dict[str, Any]:
    """`body` keeping only the keys whose hashes are in `kept` (and their limits and times)."""
    return {**body, "key_hashes": kept,
            "key_rules": {h: r for h, r in body.get("key_rules", {}).items() if h in kept},
            "key_created": {h: t for h, t in body.get("key_created", {}).items() if h in kept}}


_APP_FIELDS = frozenset({"id", "stages", "allow_request_stages", "models", "rpm", "tpm", "key"})
_KEY_FIELDS = frozenset({"models", "rpm", "tpm", "expires_at"})


def refuse_unknown(body: dict[str, Any], known: frozenset[str], where: str = "") -> None:
    """Unknown fields are refused (400 naming them), never dropped."""
    unknown = sorted(set(body) - known)
    if unknown:
        raise OpenAIError(400, f"Unknown field(s) {', '.join(where + u for u in unknown)}; known: "
                               f"{', '.join(sorted(known))}.", code="unknown_field", param=where + unknown[0])


def limits(body: dict[str, Any], doc: dict[str, Any], code: str, where: str = "") -> dict[str, Any]:
    """models (a list of globs), rpm and tpm (whole numbers >= 1, or null), checked; unchanged when absent."""
    out: dict[str, Any] = {}
    models = body.get("models", doc.get("models", []))
    if not isinstance(models, list) or not all(isinstance(m, str) and m for m in models):
        raise OpenAIError(400, f"{where}models: a list of model names or globs.", code=code, param=where + "models")
    out["models"] = models
    for name in ("rpm", "tpm"):
        value = body.get(name, doc.get(name))
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise OpenAIError(400, f"{where}{name}: a whole number >= 1, or null.", code=code, param=where + name)
        out[name] = value
    return out


def key_settings(body: Any) -> dict[str, Any] | None:
    """A new key's own limits and expiry ({models, rpm, tpm, expires_at}); None when it has none."""
    if body is None or body == {}:
        return None
    if not isinstance(body, dict):
        raise OpenAIError(400, "key: an object {models, rpm, tpm, expires_at}.", code="invalid_key", param="key")
    refuse_unknown(body, _KEY_FIELDS, "key.")
    out = limits(body, {}, "invalid_key", "key.")
    expires_at = body.get("expires_at")
    if expires_at is not None:
        try:
            expires(expires_at)
        except (TypeError, ValueError, AssertionError):
            raise OpenAIError(400, "key.expires_at: an ISO 8601 time, e.g. 2030-01-01T00:00:00Z.",
                              code="invalid_key", param="key.expires_at") from None
    out["expires_at"] = expires_at
    return out


def _new_key() -> str:
    return "sk-gg-" + secrets.token_urlsafe(32)


def _central_only(role: Role) -> None:
    if not role.central:
        raise OpenAIError(403, "Only central tokens may manage applications.", code="forbidden")


def _exists(app_id: str) -> OpenAIError:
    return OpenAIError(409, f"An application '{app_id}' exists already.", code="application_exists", param="id")


class ApplicationAdmin:
    """The application endpoints over one registry (and its store); central tokens only."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.store = registry.store

    async def body_fields(self, request: Request, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        body = await read_json(request)
        refuse_unknown(body, _APP_FIELDS)
        doc = doc or {}
        stages = body.get("stages", doc.get("stages", []))
        if not isinstance(stages, list) or not all(isinstance(x, str) for x in stages):
            raise OpenAIError(400, "stages: a list of stage names.", code="invalid_application", param="stages")
        known = set(self.registry.flow.plan.stages)
        for i, name in enumerate(stages):
            if name not in known:
                raise OpenAIError(400, f"stages[{i}]: no stage {name!r}.", code="invalid_application",
                                  param=f"stages[{i}]")
        allow = body.get("allow_request_stages", doc.get("allow_request_stages", True))
        if not isinstance(allow, bool):
            raise OpenAIError(400, "allow_request_stages: true or false.", code="invalid_application",
                              param="allow_request_stages")
        fields = {"stages": stages, "allow_request_stages": allow, "id": body.get("id"),
                  **limits(body, doc, "invalid_application")}
        if "key" in body:
            fields["key"] = key_settings(body["key"])
        return fields

    async def list_apps(self, request: Request, role: Role) -> RawResponse:
        _central_only(role)
        data = [{"id": a.id, "object": "application", "source": "config", "stages": list(a.stages),
                 "keys": len(a.keys)} for a in self.registry.config.applications]
        data += [_view(d) for d in await self.store.list("application")]
        return ok({"object": "list", "data": data})

    async def create(self, request: Request, role: Role) -> RawResponse:
        """Create an application; its first key is in this answer only. `?dry_run=true` validates it and
        answers what would be stored (no key is made), writing nothing."""
        _central_only(role)
        trial = dry_run(request)
        fields = await self.body_fields(request)
        app_id = fields.pop("id")
        rule = fields.pop("key", None)
        if not isinstance(app_id, str) or not app_id:
            raise OpenAIError(400, "id: required, a non-empty string.", code="invalid_application", param="id")
        if app_id in self.registry.application_ids:
            raise _exists(app_id)
        key = _new_key()
        try:  # create only: of two racing creates of one id, the store lets one land (compare-and-set on 0)
            doc = await self.registry.write("application", _with_key({"id": app_id, **fields}, key_digest(key), rule),
                                            "central", expected=(0, "id"), dry_run=trial)
        except VersionConflict:
            raise _exists(app_id) from None
        if trial:
            return ok({**_view(doc), "dry_run": True})
        return ok({**_view(doc), "key": key}, 201)

    async def stored(self, app_id: str) -> Version:
        if app_id in {a.id for a in self.registry.config.applications}:
            raise OpenAIError(403, f"Application '{app_id}' is defined in the config file; change it there.",
                              code="config_application")
        doc = await self.store.get("application", app_id)
        if doc is None:
            raise OpenAIError(404, f"No application '{app_id}' in the store.", code="application_not_found")
        return doc

    async def read(self, request: Request, role: Role) -> RawResponse:
        _central_only(role)
        return ok(_view(await self.stored(request.path_params["id"])))

    async def _change(self, app_id: str, change: Callable[[Version], Awaitable[dict[str, Any]]],
                      trial: bool = False) -> Version:
        """Write `change(current version)` as the application's next version, compare-and-set on the
        version it was computed from; re-read and re-applied when another write landed in between (two
        key changes at once: neither is lost, a revoked key never comes back)."""
        for _ in range(_CHANGE_TRIES):
            doc = await self.stored(app_id)
            body = await change(doc)
            try:
                return await self.registry.write("application", body, "central", expected=(doc.version, "id"),
                                                 dry_run=trial)
            except VersionConflict:  # another change landed first: re-read, re-apply, after a short random pause
                await asyncio.sleep(random.uniform(0, 0.005))
        raise OpenAIError(409, f"Application '{app_id}' kept changing; try again.", code="version_conflict")

    async def edit(self, request: Request, role: Role) -> RawResponse:
        """Change an application's fields; `?dry_run=true` validates only."""
        _central_only(role)
        trial = dry_run(request)

        async def change(doc: Version) -> dict[str, Any]:
            fields = await self.body_fields(request, doc.body)
            fields.pop("id")
            if fields.pop("key", None) is not None:
                raise OpenAIError(400, "key: set a key's limits when adding it (POST .../keys).",
                                  code="invalid_application", param="key")
            return {**doc.body, **fields}
        new = await self._change(request.path_params["id"], change, trial)
        return ok({**_view(new), "dry_run": True} if trial else _view(new))

    async def add_key(self, request: Request, role: Role) -> RawResponse:
        """Add a key (rotation: add, move clients over, then revoke the old ones); shown once."""
        _central_only(role)
        await self.stored(request.path_params["id"])
        rule = key_settings(await read_json(request))
        key = _new_key()

        async def change(doc: Version) -> dict[str, Any]:
            return _with_key(doc.body, key_digest(key), rule)
        new = await self._change(request.path_params["id"], change)
        return ok({**_view(new), "key": key}, 201)

    async def revoke_keys(self, request: Request, role: Role) -> RawResponse:
        """Revoke every key but the newest `keep` (default 1)."""
        _central_only(role)
        await self.stored(request.path_params["id"])
        keep = (await read_json(request)).get("keep", 1)
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise OpenAIError(400, "keep: a whole number >= 0.", code="invalid_request", param="keep")

        async def change(doc: Version) -> dict[str, Any]:
            hashes = doc.body.get("key_hashes", [])
            return _without_keys(doc.body, hashes[len(hashes) - keep:] if keep else [])
        return ok(_view(await self._change(request.path_params["id"], change)))

    async def revoke_key(self, request: Request, role: Role) -> RawResponse:
        """G17: revoke one key, named by its id (`key_list[].id`, or a longer prefix of its SHA-256)."""
        _central_only(role)
        await self.stored(request.path_params["id"])
        key_id = request.path_params["key_id"].lower()
        if len(key_id) < KEY_ID_CHARS or any(c not in "0123456789abcdef" for c in key_id):
            raise OpenAIError(400, f"key_id: the key's id, {KEY_ID_CHARS} or more hex digits of its SHA-256 "
                                   "(key_list[].id).", code="invalid_request", param="key_id")

        async def change(doc: Version) -> dict[str, Any]:
            hashes = doc.body.get("key_hashes", [])
            if not any(h.startswith(key_id) for h in hashes):
                raise OpenAIError(404, f"Application '{doc.id}' has no key '{key_id}'.", code="key_not_found",
                                  param="key_id")
            return _without_keys(doc.body, [h for h in hashes if not h.startswith(key_id)])
        return ok(_view(await self._change(request.path_params["id"], change)))

    async def delete(self, request: Request, role: Role) -> RawResponse:
        _central_only(role)
        doc = await self.stored(request.path_params["id"])
        await self.registry.remove("application", doc.id, "central")
        return ok({"id": doc.id, "object": "application", "deleted": True})


def application_routes(admin: AdminAuth, registry: Registry) -> list[Route]:
    a = ApplicationAdmin(registry)
    base = "/v1/admin/applications"
    return [
        Route(base, wrap(admin, a.list_apps), methods=["GET"]),
        Route(base, wrap(admin, a.create), methods=["POST"]),
        Route(base + "/{id}", wrap(admin, a.read), methods=["GET"]),
        Route(base + "/{id}", wrap(admin, a.edit), methods=["PATCH"]),
        Route(base + "/{id}", wrap(admin, a.delete), methods=["DELETE"]),
        Route(base + "/{id}/keys", wrap(admin, a.add_key), methods=["POST"]),
        Route(base + "/{id}/keys", wrap(admin, a.revoke_keys), methods=["DELETE"]),
        Route(base + "/{id}/keys/{key_id}", wrap(admin, a.revoke_key), methods=["DELETE"]),
    ]
