"""What every policy endpoint shares (admin/policies.py, policy_data.py, policy_apply.py): how a stored
policy is shown, and found for a role that reads or changes it."""

from __future__ import annotations

from typing import Any

from gateway.admin.auth import Role
from gateway.admin.common import owner
from gateway.admin.resource import Resource
from gateway.guard.monitor import MonitorLog
from gateway.guard.policy_types import POLICY_TYPES
from gateway.policies.registry import Registry
from gateway.store import Version
from gateway.wire import OpenAIError


def view(doc: Version, source: str = "store") -> dict[str, Any]:
    """A stored policy as the API shows it: its body with the version's metadata, and `trainable` from
    the policy-type registry (what `GET /v1/admin/policy-types` says of its type), so that a client need
    not keep its own list of the types that train."""
    kind = POLICY_TYPES.get(str(doc.body.get("type")))
    return {"id": doc.id, "object": "policy", "source": source, "version": doc.version, "updated": doc.created,
            "author": doc.author, **{k: v for k, v in doc.body.items() if k != "id"},
            "trainable": kind is not None and kind.trainable}


def light(view: dict[str, Any]) -> dict[str, Any]:
    """G11: a policy view without its head's weights (about 400 numbers); the head keeps its threshold
    and held-out figures. `?include=head` asks for the weights."""
    head = view.get("head")
    if isinstance(head, dict) and "w" in head:
        return {**view, "head": {k: v for k, v in head.items() if k != "w"}}
    return view


class PolicyAdmin(Resource):
    """What every policy endpoint shares: the registry (and its store), the monitoring log, the
    generator client; `stored` finds a stored policy the role may read (or write)."""

    kind, param = "policy", "id"

    def __init__(self, registry: Registry, monitor: MonitorLog, complete: Any = None) -> None:
        super().__init__(registry)
        self.monitor = monitor
        self.complete = complete

    def view(self, doc: Version) -> dict[str, Any]:
        return view(doc)

    def light(self, view: dict[str, Any]) -> dict[str, Any]:
        return light(view)

    async def stored(self, policy_id: str, role: Role, write: bool) -> Version:
        if policy_id in self.registry.config_policy_ids:
            if write:
                raise OpenAIError(403, f"Policy '{policy_id}' is defined in the config file; change it there.",
                                  code="config_policy")
        doc = await self.store.get("policy", policy_id)
        if doc is None:
            raise OpenAIError(404, f"No policy '{policy_id}' in the store.", code="policy_not_found")
        if write and not role.central and doc.body.get("owner") != owner(role):
            raise OpenAIError(403, f"Policy '{policy_id}' is not this token's application's to change.",
                              code="forbidden")  # never which application owns it
        return doc
