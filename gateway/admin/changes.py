"""G18 of the console spec: `GET /v1/admin/changes`, the change feed across the registry's objects
(policies, stages, applications, pins: every version written and every deletion, newest first), and
`GET /v1/admin/jobs`, the training jobs (one per trained policy, the last).

A change is metadata only: `{seq, kind, id, version, action, author, created, note, owner}`, never a body
(an application's body holds its key hashes). Central tokens see every change and job; an application
token the changes of its own objects (policies and stages it owns, its application, its pins) and the
jobs of the policies it owns. Query: `since` (a Unix time), `limit` (1 to 1000, default 100), `before`
(a change's seq: the page after the one that ended there, as `next_before` says); the jobs take `limit`.
An unknown parameter or a bad value is a 400 naming it. The store answers from its own index of changes
(gateway/store/changelog.py), reading no bodies.
"""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from gateway.admin.auth import AdminAuth, Role
from gateway.admin.common import digits, ok, owner, query_int, wrap
from gateway.admin.console_api import refuse_unknown_query
from gateway.policies.registry import Registry
from gateway.policies.training import reported
from gateway.store.changelog import MAX_CHANGES
from gateway.wire import OpenAIError, RawResponse

DEFAULT_LIMIT = 100


def _limit(request: Request) -> int:
    return query_int(request.query_params.get("limit"), DEFAULT_LIMIT, "limit", MAX_CHANGES)


def _since(request: Request) -> float | None:
    raw = request.query_params.get("since")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise OpenAIError(400, "since: a Unix time in seconds.", code="invalid_value", param="since")
    return value


def _before(request: Request) -> int | None:
    raw = request.query_params.get("before")
    if raw is None:
        return None
    if not digits(raw, 18):
        raise OpenAIError(400, "before: a change's seq (next_before of the page before).", code="invalid_value",
                          param="before")
    return int(raw)


def changes_routes(admin: AdminAuth, registry: Registry) -> list[Route]:
    store = registry.store

    async def changes(request: Request, role: Role) -> RawResponse:
        """The change feed: every version written and every deletion of policies, stages, applications, pins."""
        refuse_unknown_query(request, ("since", "limit", "before"))
        limit, since, before = _limit(request), _since(request), _before(request)
        found = await store.change_log(limit, before, since, None if role.central else owner(role))
        return ok({"object": "list", "data": [{"object": "change", **c.meta()} for c in found],
                   "next_before": found[-1].seq if len(found) == limit else None})

    async def jobs(request: Request, role: Role) -> RawResponse:
        """The training jobs: each trained policy's last, most recently started first."""
        refuse_unknown_query(request, ("limit",))
        limit = _limit(request)
        # an application token: the jobs of its own policies (each job names its policy's owner)
        found = [reported(j) for j in await store.jobs(limit, None if role.central else owner(role))]
        data: list[dict[str, Any]] = [{"object": "training_job", **j} for j in found]
        return ok({"object": "list", "data": data})

    return [Route("/v1/admin/changes", wrap(admin, changes), methods=["GET"]),
            Route("/v1/admin/jobs", wrap(admin, jobs), methods=["GET"])]
