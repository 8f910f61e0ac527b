"""Admin API endpoints the web console needs (console-spec section 3).

- G1 `GET /v1/admin/whoami`: the token's role and, for `app:<id>` tokens, its application.
- G5 `GET /v1/admin/models`: the model names (globs) each upstream serves, from the config.
- G6 `GET /v1/admin/stages/{name}/pins`: which applications are pinned to which version of a central
  stage (application tokens see their own pin only).

These take no body; an unknown query parameter is refused with 400 naming it (`param`), so a typo is
not silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.requests import Request
from starlette.routing import Route

from gateway.admin.auth import AdminAuth, Role
from gateway.admin.common import ok, wrap
from gateway.admin.registry import Registry
from gateway.wire import OpenAIError, RawResponse


def refuse_unknown_query(request: Request, allowed: Iterable[str] = ()) -> None:
    known = set(allowed)
    for name in request.query_params:
        if name not in known:
            raise OpenAIError(400, f"{name}: unknown parameter" + (f"; known: {', '.join(sorted(known))}." if known
                                                                   else "; this endpoint takes none."),
                              code="unknown_parameter", param=name)


def console_api_routes(admin: AdminAuth, registry: Registry) -> list[Route]:
    store = registry.store

    async def whoami(request: Request, role: Role) -> RawResponse:
        """The calling admin token's role: central, or application with its application id."""
        refuse_unknown_query(request)
        return ok({"object": "whoami", "role": "central" if role.central else "application",
                   "application": role.application})

    async def models(request: Request, role: Role) -> RawResponse:
        """The model names each upstream serves (config globs, first matching upstream wins)."""
        refuse_unknown_query(request)
        data = [{"upstream": u.name, "models": list(u.models)} for u in registry.config.upstreams]
        return ok({"object": "list", "data": data})

    async def pins(request: Request, role: Role) -> RawResponse:
        """Which applications are pinned to which version of a central stage."""
        refuse_unknown_query(request)
        name = request.path_params["name"]
        doc = await store.get("stage", name)
        if doc is None or doc.body.get("spec", {}).get("scope") != "central":
            raise OpenAIError(404, f"No stored central stage '{name}'.", code="stage_not_found")
        data = []
        for pin in await store.list("pin"):
            body = pin.body
            if body.get("stage") != name or not role.may_see(body.get("application", "")):
                continue
            version = int(body.get("version", 0))
            data.append({"application": body.get("application"), "version": version,
                         "behind": doc.version - version, "author": pin.author, "updated": pin.created})
        data.sort(key=lambda p: str(p["application"]))
        return ok({"object": "list", "stage": name, "latest": doc.version, "data": data})

    return [Route("/v1/admin/whoami", wrap(admin, whoami), methods=["GET"]),
            Route("/v1/admin/models", wrap(admin, models), methods=["GET"]),
            Route("/v1/admin/stages/{name}/pins", wrap(admin, pins), methods=["GET"])]
