"""What a terminal action answers: its text, the error body and the annotation naming what fired (the
answer in an endpoint's own shape is its dialect's: gateway/proxy/dialects/)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.config.guard_schema import ActionSpec
from gateway.guard.engine import UNAVAILABLE, Decision

HANDOFF_MESSAGE = "I'm handing this conversation to a human colleague who will follow up with you."


@dataclass(frozen=True, slots=True)
class Verdict:
    """The answer for a request stopped by a terminal action."""

    text: str
    status: int           # 200 for a completion-shaped answer, 400 for an error body
    annotation: dict[str, Any]
    as_error: bool


def refusal_text(action: ActionSpec, stage_message: str, rng: random.Random | None = None) -> str:
    if action.type == "override":
        return (rng or random).choice(action.responses)
    if action.type == "handoff":
        return action.message or HANDOFF_MESSAGE
    return action.message or stage_message


def annotation(decision: Decision, request_id: str) -> dict[str, Any]:
    """The `guardrail` extension field of one check (see `annotation_of`)."""
    return annotation_of([decision], request_id)


def fired(decisions: Sequence[Decision]) -> Decision | None:
    """The decision the `x-guardrail-*` headers and the `guardrail` field both name: the last that acted."""
    acted = [d for d in decisions if d.action is not None]
    return acted[-1] if acted else None


def annotation_of(decisions: Sequence[Decision], request_id: str) -> dict[str, Any]:
    """The `guardrail` extension field for a request's checks (input, then output): what fired, as the
    headers say it, and every stage's outcome on either side."""
    decision = fired(decisions) or (decisions[-1] if decisions else None)
    what = {"action": decision.action if decision else None,
            "stage": decision.stage.name if decision and decision.stage else None,
            "ruleset": decision.ruleset if decision else None}
    stages = [{"stage": o.stage, "on": o.on, "scanned": o.scanned, "mode": o.mode, "ruleset": o.ruleset,
               "action": o.action, "triggered": list(o.triggered),
               # Only which metrics failed: an exception's text may hold internals or request text.
               "errors": [e.split(":", 1)[0] for e in o.errors]}
              for d in decisions for o in d.outcomes if o.triggered or o.errors or not o.scanned or o.action]
    out: dict[str, Any] = {"request_id": request_id, **what, "stages": stages}
    if what["action"] == "handoff":
        out["handoff"] = True
    return out


def headers(decision: Decision) -> list[tuple[bytes, bytes]]:
    if decision.action is None or decision.stage is None:
        return []
    out = [(b"x-guardrail-action", decision.action.encode()),
           (b"x-guardrail-stage", decision.stage.name.encode()),
           (b"x-guardrail-ruleset", (decision.ruleset or "").encode())]
    if decision.action == "handoff":
        out.append((b"x-guardrail-handoff", b"true"))
    return out


def unavailable_body(decision: Decision, note: dict[str, Any]) -> dict[str, Any]:
    """The 503 for a check that failed under on_error: block (which metrics: the annotation's `errors`)."""
    stage = decision.stage.name if decision.stage else "?"
    failed = sorted({e.split(":", 1)[0] for o in decision.outcomes for e in o.errors})
    message = (f"The guard could not check this content: stage '{stage}' failed ({', '.join(failed) or 'error'}), "
               "and it fails closed. Nothing was decided about the content itself; retry later.")
    return {"error": {"message": message, "type": "guard_unavailable", "param": None, "code": UNAVAILABLE},
            "guardrail": note}


def error_body(text: str, action: str, note: dict[str, Any]) -> dict[str, Any]:
    return {"error": {"message": text, "type": "guardrail_violation", "param": None, "code": action},
            "guardrail": note}
