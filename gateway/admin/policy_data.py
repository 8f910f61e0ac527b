"""Admin API for a policy's training data: rows added, listed, edited and deleted, feedback on
monitoring records and its application, synthetic rows from a generator model. The rows live in the
store; what feedback and generation mean is gateway/policies/ (data.py, training.py)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from starlette.requests import Request

from gateway.admin.auth import Role
from gateway.admin.common import ok, owner, read_json
from gateway.admin.console_api import refuse_unknown_query
from gateway.admin.examples import labelled_row
from gateway.admin.feedback_scope import check_may_label, visible_items
from gateway.admin.policy_admin import PolicyAdmin
from gateway.policies.data import (SOURCES, add_feedback, apply_feedback, delete_feedback, monitoring_record,
                                   row_counts)
from gateway.policies.training import generate_prompt, parse_generated
from gateway.store import Example, Feedback
from gateway.store.base import record_key
from gateway.wire import OpenAIError, RawResponse


def _row(e: Example) -> dict[str, Any]:
    """A training row as the API shows it (G9); rows from before rows had times show created/author null."""
    return {"id": e.seq, "object": "training_row", "example": e.text, "compliance": e.label,
            "synthetic": e.synthetic, "source": e.source, "created": e.created or None, "author": e.author or None}


def _item(f: Feedback) -> dict[str, Any]:
    """A feedback item as the API shows it (G13): the record it labels (record_id and on; null for items
    from before records were named), when and by whom (null for items from before authors were kept),
    and the training row applying it wrote (null: not applied, or applied before rows were kept)."""
    record_id, _, on = f.record.rpartition(":")
    return {"id": f.seq, "object": "feedback", "policy_id": f.policy_id, "record_id": record_id or None,
            "on": on if record_id else None, "label": f.label, "text": f.text, "applied": f.applied,
            "training_row": f.row or None, "created": f.time, "author": f.author or None}


def _record_filter(request: Request) -> tuple[str | None, str | None]:
    """?record_id= (and ?on=input|output) of a feedback list, each given once at most."""
    q = request.query_params
    for name in ("record_id", "on"):
        if len(q.getlist(name)) > 1:
            raise OpenAIError(400, f"{name}: give it once.", code="invalid_request", param=name)
    record_id, on = q.get("record_id"), q.get("on")
    if record_id is not None and not record_id:
        raise OpenAIError(400, "record_id: a monitoring record's id.", code="invalid_request", param="record_id")
    if on is not None and on not in ("input", "output"):
        raise OpenAIError(400, "on: input or output.", code="invalid_request", param="on")
    return record_id, on


def _on_record(f: Feedback, record_id: str | None, on: str | None) -> bool:
    return record_id is None or f.record in [record_key(record_id, o) for o in ((on,) if on else ("input", "output"))]


def _source(value: str | None) -> str | None:
    if value is not None and value not in SOURCES:
        raise OpenAIError(400, f"source: one of {', '.join(SOURCES)}.", code="invalid_request", param="source")
    return value


def _whole(value: str | None, name: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if not value.isdigit() or not low <= int(value) <= high:
        raise OpenAIError(400, f"{name}: a whole number from {low} to {high}.", code="invalid_request", param=name)
    return int(value)


def _row_id(request: Request) -> int:
    raw = request.path_params["row"]
    if not raw.isdigit() or int(raw) >= 2**62:
        raise OpenAIError(404, f"No training row {raw!r}: row ids are whole numbers.", code="row_not_found",
                          param="row")
    return int(raw)


def _only(body: dict[str, Any], known: tuple[str, ...], shape: str) -> None:
    for key in body:
        if key not in known:
            raise OpenAIError(400, f"{key}: unknown field; {shape}.", code="invalid_request", param=key)


class PolicyData(PolicyAdmin):
    """A policy's training data: rows added, listed, edited and deleted, feedback on monitoring records
    and its application, synthetic rows from a generator model."""

    async def add_data(self, request: Request, role: Role) -> RawResponse:
        doc = await self.named(request, role, write=True)
        body = await read_json(request)
        rows = body.get("data")
        if not isinstance(rows, list) or not rows:
            raise OpenAIError(400, "data: required, a list of {example, compliance} (or {type, "
                                   "output_example}).", code="invalid_request", param="data")
        _only(body, ("data",), "the body is {data: [...]}")
        examples = [Example(*labelled_row(row, f"data[{i}]"), author=owner(role)) for i, row in enumerate(rows)]
        added = await self.store.add_examples(doc.id, examples)
        return ok({"id": doc.id, "added": added, "total": len(await self.store.examples(doc.id))}, 201)

    async def list_data(self, request: Request, role: Role) -> RawResponse:
        """Training rows, oldest first: filters source= and label=, pages of limit= rows after= a row id."""
        doc = await self.named(request, role, write=False)
        refuse_unknown_query(request, ("source", "label", "limit", "after"))
        q = request.query_params
        source, label = _source(q.get("source")), q.get("label")
        if label is not None and label.upper() not in ("PASS", "FAIL"):
            raise OpenAIError(400, "label: PASS or FAIL.", code="invalid_request", param="label")
        limit = _whole(q.get("limit"), "limit", 1, 1000)
        after = _whole(q.get("after"), "after", 0, 2**62)
        rows = await self.store.examples(doc.id, source, label, after, None if limit is None else limit + 1)
        more = limit is not None and len(rows) > limit
        rows = rows[:limit] if limit is not None else rows
        counts = row_counts(await self.store.examples(doc.id))
        return ok({"object": "list", "data": [_row(e) for e in rows], "has_more": more,
                   "first_id": rows[0].seq if rows else None, "last_id": rows[-1].seq if rows else None,
                   "counts": counts})

    async def edit_row(self, request: Request, role: Role) -> RawResponse:
        """Change a training row's example text or compliance label."""
        doc = await self.named(request, role, write=True)
        seq = _row_id(request)
        body = await read_json(request)
        _only(body, ("example", "compliance"), "a row's editable fields are example and compliance")
        if not body:
            raise OpenAIError(400, "example or compliance: say what to change.", code="invalid_request",
                              param="example")
        text, label = body.get("example"), body.get("compliance")
        if "example" in body and (not isinstance(text, str) or not text.strip()):
            raise OpenAIError(400, "example: a non-empty string.", code="invalid_request", param="example")
        if "compliance" in body and (not isinstance(label, str) or label.upper() not in ("PASS", "FAIL")):
            raise OpenAIError(400, "compliance: PASS or FAIL.", code="invalid_request", param="compliance")
        row = await self.store.update_example(doc.id, seq, text.strip() if isinstance(text, str) else None,
                                              label.upper() if isinstance(label, str) else None)
        if row is None:
            raise OpenAIError(404, f"Policy '{doc.id}' has no training row {seq}.", code="row_not_found", param="row")
        return ok(_row(row))

    async def delete_row(self, request: Request, role: Role) -> RawResponse:
        """Delete one training row."""
        doc = await self.named(request, role, write=True)
        seq = _row_id(request)
        refuse_unknown_query(request)
        if not await self.store.delete_examples(doc.id, [seq]):
            raise OpenAIError(404, f"Policy '{doc.id}' has no training row {seq}.", code="row_not_found", param="row")
        return ok({"id": seq, "object": "training_row", "deleted": True})

    async def delete_data(self, request: Request, role: Role) -> RawResponse:
        """Delete every training row of one source (?source=manual|synthetic|feedback)."""
        doc = await self.named(request, role, write=True)
        refuse_unknown_query(request, ("source",))
        source = _source(request.query_params.get("source"))
        if source is None:
            raise OpenAIError(400, "source: required (manual, synthetic or feedback): which rows to delete.",
                              code="invalid_request", param="source")
        deleted = await self.store.delete_examples(doc.id, source=source)
        return ok({"object": "list", "id": doc.id, "source": source, "deleted": deleted,
                   "total": len(await self.store.examples(doc.id))})

    async def feedback(self, request: Request, role: Role) -> RawResponse:
        """Feedback: the correct label for a named policy on a monitoring record."""
        body = await read_json(request)
        _only(body, ("record_id", "policy_id", "label", "compliance", "on"),
              "the body is {record_id, policy_id, label, on}")
        record_id, policy_id = body.get("record_id"), body.get("policy_id")
        label = str(body.get("label", body.get("compliance", ""))).upper()  # Add Data's word for it, too
        on = body.get("on", "input")
        if not isinstance(record_id, str) or not record_id:
            raise OpenAIError(400, "record_id: required (a monitoring record's id).", code="invalid_request",
                              param="record_id")
        if label not in ("PASS", "FAIL"):
            raise OpenAIError(400, "label: PASS or FAIL.", code="invalid_request", param="label")
        if on not in ("input", "output"):
            raise OpenAIError(400, "on: input or output (which of the request's records).", code="invalid_request",
                              param="on")
        doc = await self.store.get("policy", policy_id) if isinstance(policy_id, str) else None
        if not isinstance(policy_id, str) or (policy_id not in self.registry.config_policy_ids and doc is None):
            raise OpenAIError(400, "policy_id: required, an existing policy.", code="invalid_request",
                              param="policy_id")
        record, seq = await monitoring_record(self.monitor, self.store, record_id, on)
        if record is None:
            raise OpenAIError(404, f"No monitoring record {record_id!r} ({on}).", code="record_not_found",
                              param="record_id")
        if not role.may_see(record["application"]):
            raise OpenAIError(403, "This token may only give feedback on its own application's records.",
                              code="forbidden", param="record_id")
        check_may_label(self.registry.flow.plan, role, policy_id,
                        None if policy_id in self.registry.config_policy_ids or doc is None
                        else str(doc.body.get("owner", "central")), record)
        item = await add_feedback(self.store, record_id, seq, on, record, policy_id, label, owner(role))
        return ok(_item(item), 201)

    async def list_feedback(self, request: Request, role: Role) -> RawResponse:
        """A policy's feedback items, oldest first; ?record_id= (and ?on=) those on one record. Its owner
        (and central) reads them all, another application token those it gave or on its own records."""
        doc = await self.named(request, role, write=False)
        refuse_unknown_query(request, ("record_id", "on"))
        record_id, on = _record_filter(request)
        items = [f for f in await self.store.feedback(doc.id) if _on_record(f, record_id, on)]
        items = await visible_items(self.monitor, self.store, role, doc.body.get("owner", "central"), items)
        return ok({"object": "list", "data": [_item(f) for f in items]})

    async def record_feedback(self, request: Request, role: Role) -> RawResponse:
        """The feedback on one monitoring record (?record_id=, ?on=), for every policy."""
        refuse_unknown_query(request, ("record_id", "on"))
        record_id, on = _record_filter(request)
        if record_id is None:
            raise OpenAIError(400, "record_id: required (a monitoring record's id).", code="invalid_request",
                              param="record_id")
        sides = (on,) if on else ("input", "output")
        given = await self.store.record_feedback([record_key(record_id, o) for o in sides])
        items = sorted((f for found in given.values() for f in found), key=lambda f: f.seq)
        if not role.central:  # an application's records; a record gone from the log: the token's own items
            records = [(await monitoring_record(self.monitor, self.store, record_id, o))[0] for o in sides]
            found = [r for r in records if r is not None]
            if any(not role.may_see(r["application"]) for r in found):
                raise OpenAIError(403, "This token may only read feedback on its own application's records.",
                                  code="forbidden", param="record_id")
            items = [f for f in items if found or f.author == owner(role)]
        return ok({"object": "list", "record_id": record_id, "data": [_item(f) for f in items]})

    async def delete_feedback(self, request: Request, role: Role) -> RawResponse:
        """Delete a feedback item; an applied one also loses the training row it wrote."""
        refuse_unknown_query(request)
        raw = request.path_params["item"]
        item = await self.store.feedback_item(int(raw)) if raw.isdigit() and int(raw) < 2**62 else None
        if item is None:
            raise OpenAIError(404, f"No feedback item {raw!r}.", code="feedback_not_found", param="item")
        only_unapplied = await self._may_delete(item, role)
        gone, row = await delete_feedback(self.store, item.seq, only_unapplied)
        if gone is None:  # deleted by another request in between
            raise OpenAIError(404, f"No feedback item {raw!r}.", code="feedback_not_found", param="item")
        if only_unapplied and gone.applied:  # applied by another request in between: kept
            raise OpenAIError(409, f"Feedback item {item.seq} was applied in the meantime; its training row is the "
                                   "policy owner's to remove.", code="feedback_applied", param="item")
        return ok({**_item(gone), "deleted": True, "training_row_deleted": row})

    async def _may_delete(self, item: Feedback, role: Role) -> bool:
        """Central: any item. An application admin: items on its own policies (as for other policy
        writes), and items it gave itself while they are not applied (an applied item's training row
        belongs to the policy's owner). True: the delete holds only while the item is unapplied (the
        store checks that as it deletes, so an apply in between is not undone by it)."""
        if role.central:
            return False
        doc = await self.store.get("policy", item.policy_id)
        if doc is not None and doc.body.get("owner") == owner(role):
            return False
        if not item.applied and item.author == owner(role):
            return True
        raise OpenAIError(403, f"Feedback item {item.seq} is on policy '{item.policy_id}', which this token's "
                               "application does not own" + ("; its training row is the owner's to remove."
                                                             if item.applied else "."),
                          code="forbidden", param="item")

    async def apply_feedback(self, request: Request, role: Role) -> RawResponse:
        """Turn unapplied feedback into training data for the next training."""
        doc = await self.named(request, role, write=True)
        applied = await apply_feedback(self.store, doc.id, owner(role))
        return ok({"id": doc.id, "applied": applied, "total_examples": len(await self.store.examples(doc.id))})

    async def generate(self, request: Request, role: Role) -> RawResponse:
        """Synthetic training data: a generator model writes examples from the policy definition."""
        doc = await self.named(request, role, write=True)
        body = await read_json(request)
        model = body.get("model") or self.registry.config.guard.generator_model
        if not isinstance(model, str) or not model:
            raise OpenAIError(400, "model: required (or set guard.generator_model in the config).",
                              code="invalid_request", param="model")
        count = body.get("count", 20)
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 200:
            raise OpenAIError(400, "count: a whole number from 1 to 200.", code="invalid_request", param="count")
        if self.complete is None:
            raise OpenAIError(503, "No upstream client to ask the generator.", code="generator_unavailable")
        prompt = generate_prompt(doc, count)
        try:
            answer = await asyncio.wait_for(self.complete(model, [{"role": "user", "content": prompt}]), 120)
            examples = parse_generated(answer, count)
        except (ValueError, LookupError, RuntimeError, TimeoutError) as exc:
            raise OpenAIError(502, f"The generator model failed: {exc}", code="generator_failed") from None
        await self.store.add_examples(doc.id, [dataclasses.replace(e, author=owner(role)) for e in examples])
        return ok({"id": doc.id, "added": len(examples), "synthetic": True,
                    "data": [{"example": e.text, "compliance": e.label} for e in examples]}, 201)
