"""Admin API for the policy store itself (central tokens only).

`GET /v1/admin/store`: this replica's view of the store: `loaded` (read at least once), the `revision`
its plan was built from, `regressed` (why the store's current content is not enforced, or null),
`degraded` (why the store is unreachable, or null) and how many documents the plan was built from.

`POST /v1/admin/store/adopt`: enforce the store as it is now on this replica, even when it holds less
than the running plan was built from (after Redis came back empty, a failover or a flush the gateway
keeps its last good plan and refuses admin writes with 409 `store_regressed` until this is called or
the store's revision moves past the plan's). Adopting an empty store drops every stored policy from
enforcement: that is the point of asking for it explicitly. Each replica keeps its own view: call it on
every replica (or restore the store, after which they follow it by themselves). Answers 400 naming the
document when the store does not compile (the running plan is kept), 503 when it is unreachable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.routing import Route

from gateway.admin.auth import AdminAuth, Role
from gateway.admin.common import Handler, ok, wrap
from gateway.policies.registry import Registry
from gateway.wire import OpenAIError, RawResponse


def store_routes(admin: AdminAuth, registry: Registry) -> list[Route]:
    def endpoint(handler: Handler) -> Callable[[Request], Awaitable[RawResponse]]:
        return wrap(admin, handler)

    def central(role: Role) -> None:
        if not role.central:
            raise OpenAIError(403, "Only central tokens may manage the policy store.", code="forbidden")

    async def store_status(request: Request, role: Role) -> RawResponse:
        """This replica's view of the policy store: loaded, revision, regressed, degraded."""
        central(role)
        return ok(registry.status())

    async def adopt(request: Request, role: Role) -> RawResponse:
        """Enforce the store as it is now, even if it holds less than the running plan (after a regression)."""
        central(role)
        return ok(await registry.adopt())

    return [Route("/v1/admin/store", endpoint(store_status), methods=["GET"]),
            Route("/v1/admin/store/adopt", endpoint(adopt), methods=["POST"])]
