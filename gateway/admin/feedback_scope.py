"""Who may give and read feedback (G13), for an application token; central tokens may do both on every
policy and record.

Feedback on a policy becomes that policy's training data once applied, so giving it is close to a
write of the policy's data, which only the policy's owner may do (admin/policy_admin.stored). An
application token may give feedback (on its own application's records) on a policy

- its application owns, or
- that no other application owns (a central or config policy) and that runs on its application's
  traffic: a stage of its plan names it (the list GET /v1/admin/models/{model}/policies shows: central
  stages and the application's own), or the record itself shows the policy measured it.

A policy another application owns is never that: running it on its own traffic (an application may
apply any policy it can read to itself) does not make its training data the application's to write.

Reading: the owner of a policy (and central) sees all of its items; any other application token only
the items it gave and the items on its own application's records (as GET /v1/admin/feedback?record_id=
shows a record's items), never another application's record ids, authors or texts.
"""

from __future__ import annotations

from typing import Any

from gateway.admin.auth import Role
from gateway.admin.common import owner
from gateway.guard.monitor import MonitorLog
from gateway.guard.plan import GuardPlan
from gateway.policies.data import monitoring_record
from gateway.store import Feedback, Store
from gateway.wire import OpenAIError


def runs_for(plan: GuardPlan, application: str, policy_id: str) -> bool:
    """Whether a stage of the application's plan (central or its own, either side, any model) names the policy."""
    return any(rule.metric == policy_id for on in ("input", "output") for stage in plan.stages_for(application, on)
               for rs in stage.rulesets for rule in rs.rules)


def measured(record: dict[str, Any]) -> set[str]:
    """The policies and metrics the record's stages measured."""
    found = {str(m) for m in record.get("metrics") or ()}
    for stage in record.get("stages") or ():
        if isinstance(stage, dict) and isinstance(stage.get("values"), dict):
            found.update(str(m) for m in stage["values"])
    return found


def check_may_label(plan: GuardPlan, role: Role, policy_id: str, policy_owner: str | None,
                    record: dict[str, Any]) -> None:
    """403 (param policy_id) unless the role may give feedback on the policy (`policy_owner`: None for a
    config policy). The text never says who owns the policy."""
    if role.central or policy_owner == owner(role):
        return
    others = policy_owner is not None and policy_owner.startswith("app:")
    app = role.application or ""
    if not others and (runs_for(plan, app, policy_id) or policy_id in measured(record)):
        return
    raise OpenAIError(403, f"policy_id: this token may give feedback only on its own application's policies and on "
                           f"central policies that run on its application's traffic; '{policy_id}' is neither.",
                      code="forbidden", param="policy_id")


async def visible_items(monitor: MonitorLog, store: Store, role: Role, policy_owner: str | None,
                        items: list[Feedback]) -> list[Feedback]:
    """The items of one policy the role may read: all for central and the policy's owner; for another
    application token its own items and those on its application's records. Another application's item
    is on that application's record (feedback is only given on one's own records), so only central's
    and unattributed items need their record looked up, once per record."""
    if role.central or policy_owner == owner(role):
        return items
    me = owner(role)
    apps: dict[str, str] = {}  # record key -> its application ("": not found)
    out = []
    for f in items:
        if f.author == me:
            out.append(f)
        elif f.record and not f.author.startswith("app:"):
            if f.record not in apps:
                apps[f.record] = await _application(monitor, store, f)
            if apps[f.record] == role.application:
                out.append(f)
    return out


async def _application(monitor: MonitorLog, store: Store, item: Feedback) -> str:
    """The application of the record an item labels ("" when the record is gone): by its place in the
    shared log when the item kept one, else by its id."""
    record_id, _, on = item.record.rpartition(":")
    if item.record_seq:
        found = await store.record(item.record_seq)
        if found is not None and found.body.get("id") == record_id and found.body.get("on") == on:
            return str(found.body.get("application", ""))
    record, _ = await monitoring_record(monitor, store, record_id, on)
    return str(record.get("application", "")) if record else ""
