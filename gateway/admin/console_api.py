"""Admin API endpoints the web console needs (console-spec section 3).

- G1 `GET /v1/admin/whoami`: the token's role and, for `app:<id>` tokens, its application.
- G5 `GET /v1/admin/models`: the model names (globs) each upstream serves, from the config.
- G6 `GET /v1/admin/stages/{name}/pins`: which applications are pinned to which version of a central
  stage (application tokens see their own pin only).
- G2 `POST /v1/admin/session {token}`: a console session cookie (gateway/admin/auth.py); `GET` answers
  whoami with the session's expiry, `DELETE` signs out (clears the cookie).

These take no body; an unknown query parameter is refused with 400 naming it (`param`), so a typo is
not silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from starlette.requests import Request
from starlette.routing import Route

from gateway.admin.auth import SESSION_COOKIE, SESSION_TTL_S, AdminAuth, Role, check_same_origin
from gateway.admin.common import ok, read_json, wrap
from gateway.policies.registry import Registry
from gateway.wire import JSON, OpenAIError, RawResponse


def refuse_unknown_query(request: Request, allowed: Iterable[str] = ()) -> None:
    known = set(allowed)
    for name in request.query_params:
        if name not in known:
            raise OpenAIError(400, f"{name}: unknown parameter" + (f"; known: {', '.join(sorted(known))}." if known
                                                                   else "; this endpoint takes none."),
                              code="unknown_parameter", param=name)


def _json_only(request: Request) -> None:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise OpenAIError(400, "The body must be JSON (Content-Type: application/json).", code="invalid_request",
                          param="Content-Type")


def _cookie(request: Request, value: str, max_age: int) -> tuple[bytes, bytes]:
    secure = "; Secure" if request.url.scheme == "https" else ""
    return (b"set-cookie", f"{SESSION_COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; "
                           f"SameSite=Strict{secure}".encode())


class ConsoleAdmin:
    """The console's own endpoints (session, whoami, models, pins) over one admin auth and registry."""

    def __init__(self, admin: AdminAuth, registry: Registry) -> None:
        self.admin = admin
        self.registry = registry
        self.store = registry.store

    async def whoami(self, request: Request, role: Role) -> RawResponse:
        """The calling admin token's role: central, or application with its application id."""
        refuse_unknown_query(request)
        return ok({"object": "whoami", "role": "central" if role.central else "application",
                   "application": role.application})

    async def models(self, request: Request, role: Role) -> RawResponse:
        """The model names each upstream serves (config globs, first matching upstream wins)."""
        refuse_unknown_query(request)
        data = [{"upstream": u.name, "models": list(u.models)} for u in self.registry.config.upstreams]
        return ok({"object": "list", "data": data})

    async def pins(self, request: Request, role: Role) -> RawResponse:
        """Which applications are pinned to which version of a central stage."""
        refuse_unknown_query(request)
        name = request.path_params["name"]
        doc = await self.store.get("stage", name)
        if doc is None or doc.body.get("spec", {}).get("scope") != "central":
            raise OpenAIError(404, f"No stored central stage '{name}'.", code="stage_not_found")
        data = []
        for pin in await self.store.list("pin"):
            body = pin.body
            if body.get("stage") != name or not role.may_see(body.get("application", "")):
                continue
            version = int(body.get("version", 0))
            data.append({"application": body.get("application"), "version": version,
                         "behind": doc.version - version, "author": pin.author, "updated": pin.created})
        data.sort(key=lambda p: str(p["application"]))
        return ok({"object": "list", "stage": name, "latest": doc.version, "data": data})

    async def open_session(self, request: Request) -> RawResponse:
        """Sign in: an admin token becomes an HttpOnly session cookie for the console (8 hours)."""
        try:
            refuse_unknown_query(request)
            if request.headers.get("origin") or request.headers.get("sec-fetch-site"):  # a browser's
                check_same_origin(request, "a sign-in")  # no login CSRF from another site
            else:
                _json_only(request)
            body = await read_json(request)
            for key in body:
                if key != "token":
                    raise OpenAIError(400, f"{key}: unknown field; the body is {{token}}.", code="invalid_request",
                                      param=key)
            token = body.get("token")
            if not isinstance(token, str) or not token:
                raise OpenAIError(400, "token: required, an admin token.", code="invalid_request", param="token")
            role, value, expires = self.admin.open_session(token)
        except OpenAIError as err:
            return RawResponse(err.status, [JSON], err.body())
        return RawResponse(200, [JSON, _cookie(request, value, SESSION_TTL_S)], orjson.dumps(
            {"object": "session", "role": "central" if role.central else "application",
             "application": role.application, "expires": expires}))

    async def read_session(self, request: Request, role: Role) -> RawResponse:
        """The signed-in role (cookie or bearer token) and, for a session cookie, when it expires."""
        refuse_unknown_query(request)
        found = self.admin.session(request.cookies.get(SESSION_COOKIE, "")) \
            if "authorization" not in request.headers else None
        return ok({"object": "session", "role": "central" if role.central else "application",
                   "application": role.application, "expires": found[1] if found else None})

    async def close_session(self, request: Request, role: Role) -> RawResponse:
        """Sign out: the session cookie is cleared (it is stateless: a copy kept elsewhere lasts until it expires)."""
        refuse_unknown_query(request)
        return RawResponse(200, [JSON, _cookie(request, "", 0)],
                           orjson.dumps({"object": "session", "deleted": True}))


def console_api_routes(admin: AdminAuth, registry: Registry) -> list[Route]:
    c = ConsoleAdmin(admin, registry)
    from gateway.admin.catalogue import catalogue_routes  # G15 pickers; it imports this module

    return [*catalogue_routes(admin, registry),
            Route("/v1/admin/session", c.open_session, methods=["POST"]),
            Route("/v1/admin/session", wrap(admin, c.read_session), methods=["GET"]),
            Route("/v1/admin/session", wrap(admin, c.close_session), methods=["DELETE"]),
            Route("/v1/admin/whoami", wrap(admin, c.whoami), methods=["GET"]),
            Route("/v1/admin/models", wrap(admin, c.models), methods=["GET"]),
            Route("/v1/admin/stages/{name}/pins", wrap(admin, c.pins), methods=["GET"])]
