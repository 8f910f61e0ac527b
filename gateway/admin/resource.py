"""The shape the policy and stage endpoints share: a stored, versioned document named in the path,
created and edited (each change a new version, `?dry_run=true` to validate only), deleted, its
versions listed, an old version made current again. A subclass says which store kind it is, how a
document is found for a role (`stored`) and how it is shown (`view`)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from gateway.admin.auth import Role
from gateway.admin.common import ok, owner, revert_to, versions_of
from gateway.policies.registry import Registry
from gateway.store import Version
from gateway.wire import RawResponse


class Resource:
    kind: str   # the store's kind: "policy", "stage"
    param: str  # the path parameter that names one: "id", "name"

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.store = registry.store

    def view(self, doc: Version) -> dict[str, Any]:
        raise NotImplementedError

    def light(self, view: dict[str, Any]) -> dict[str, Any]:
        """The view a dry run answers with (a policy's leaves out its head's weights)."""
        return view

    async def stored(self, doc_id: str, role: Role, write: bool) -> Version:
        """The stored document `doc_id` if `role` may read it (or, `write`, change it); else 403/404."""
        raise NotImplementedError

    async def named(self, request: Request, role: Role, write: bool) -> Version:
        return await self.stored(request.path_params[self.param], role, write)

    def written(self, doc: Version, trial: bool, status: int = 200) -> RawResponse:
        """A write's answer: the new version, or under `?dry_run=true` what it would be, with its note."""
        if trial:
            return ok({**self.light(self.view(doc)), "note": doc.note, "dry_run": True})
        return ok(self.view(doc), status)

    # The endpoints below keep no docstring: a route's summary is its name (admin/common.wrap), as before.

    async def delete(self, request: Request, role: Role) -> RawResponse:
        doc = await self.named(request, role, write=True)
        await self.registry.remove(self.kind, doc.id, owner(role))
        return ok({"id": doc.id, "object": self.kind, "deleted": True})

    async def versions(self, request: Request, role: Role) -> RawResponse:
        doc = await self.named(request, role, write=False)
        return await versions_of(self.store, self.kind, doc, self.view, request)

    async def revert(self, request: Request, role: Role) -> RawResponse:
        doc = await self.named(request, role, write=True)
        return await revert_to(self.registry, self.kind, doc, request, role, self.view)
