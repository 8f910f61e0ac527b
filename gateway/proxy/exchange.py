"""One request's state, from its first byte to its access-log line: the one object the request phases of
`proxy/handler.py` fill in, in order (pingora's per-request CTX).

    authenticate      -> application
    read_request      -> parsed, body, cells, verdict, target, model, requested_model, stream
    select_stages     -> input_stages, parallel_stages, output_stages, enforced, whole, rewrite
    check_input       -> found, prompt, context, evaluation, decisions (input)
    send_upstream     -> upstream, upstream_start, attempts
    check_answer | relay_stream -> evaluation, decisions (output), upstream_s, ttft_s, relayed, guard
    finish            -> metrics and the access log
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gateway.guard import actions
from gateway.guard.engine import Decision
from gateway.guard.plan import Stage
from gateway.metrics.context import EvalContext
from gateway.proxy.dialects import Dialect, of
from gateway.proxy.limits import Cell, Verdict
from gateway.proxy.openai import Endpoint, ParsedRequest
from gateway.proxy.dispatch import Attempts
from gateway.proxy.routing import Target
from gateway.proxy.walk import Found


@dataclass(slots=True)
class Exchange:
    """One request: its bookkeeping (ids, timings, labels, for metrics and the access log), what it asked
    for, the guard stages that apply to it, what they decided, and the evaluation context they read."""

    route: str
    start: float
    request_id: str
    endpoint: Endpoint | None = None  # the OpenAI route proxied (None: models, pass-through)
    application: str = "unknown"
    model: str = "unknown"  # the route's label (the config glob that matched): bounded, for metrics
    requested_model: str = ""  # the model the client named (the monitoring log keeps it)
    upstream: str = ""
    stream: bool = False
    upstream_start: float = 0.0
    upstream_s: float | None = None
    ttft_s: float | None = None
    guard: str | None = None  # the last guard action applied (block, redact, ...)
    relayed: bool = False  # the answer was relayed as a stream (else read whole: its overhead is measured)
    attempts: Attempts | None = None  # what routing did: attempts, retries, fallbacks
    verdict: Verdict | None = None
    cells: list[Cell] | None = None  # the rate limits this request counts against (tokens settled at its end)
    reserved_tokens: int = 0  # tokens reserved from the token limits at admission, not yet settled
    prompt_chars: int = 0  # the request body's size, for a token estimate when the upstream gives no usage
    # read_request
    parsed: ParsedRequest | None = None
    body: bytes = b""  # the request body as it will be sent (re-encoded when a stage or the gateway changed it)
    target: Target | None = None  # the model group that serves it
    # select_stages
    input_stages: tuple[Stage, ...] = ()  # run before the request is sent upstream
    parallel_stages: tuple[Stage, ...] = ()  # input stages that run while the upstream call is under way
    output_stages: tuple[Stage, ...] = ()
    enforced: bool = False  # some output stage may act (not only monitor)
    whole: bool = False  # a /v1/responses stream under acting output stages: asked for whole, streamed once passed
    rewrite: bool = False  # the body must be re-encoded before it is sent
    # check_input, check_answer, relay_stream
    decisions: list[Decision] = field(default_factory=list)
    found: Found | None = None  # the request's texts, read once by read_input (None: read them again)
    prompt: str = ""  # the scanned user/tool texts, for output-side relevance and consistency
    context: str = ""  # system/developer messages
    evaluation: EvalContext | None = None  # what the metrics of the last check read (Engine.evaluate's context)

    @property
    def dialect(self) -> Dialect:
        """The proxied route's dialect (proxy/dialects/): what is specific to its endpoint."""
        assert self.endpoint is not None
        return of(self.endpoint)

    def guard_headers(self) -> list[tuple[bytes, bytes]]:
        """The x-guardrail-* headers of the actions that fired."""
        fired = actions.fired(self.decisions)
        return actions.headers(fired) if fired else []

    def annotation(self, last: Decision | None = None) -> dict[str, Any]:
        """The `guardrail` field, from the same decisions as `guard_headers` (and `last`, a stream's output
        check not yet among them): an input redaction is told in the body as in the headers."""
        decisions = [*self.decisions, *([last] if last is not None and last not in self.decisions else [])]
        return actions.annotation_of(decisions, self.request_id)
