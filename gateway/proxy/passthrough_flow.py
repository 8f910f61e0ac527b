"""The pass-through of another /v1 route (proxy/passthrough.py says which upstream passes which path):
authenticate, read (a JSON body whole, anything else streamed on unread), route, check its input where a
reader knows its texts, send, then relay the answer as it comes."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import ClientDisconnect, Request

from gateway.proxy.answer import MAX_ERROR_BODY
from gateway.proxy.auth import Entry
from gateway.proxy.exchange import Exchange
from gateway.proxy.finish import Finisher, rid
from gateway.proxy.gate import Gate, _BodyTooLarge, header, too_large
from gateway.proxy.guard_flow import GuardFlow
from gateway.proxy.openai import OpenAIError, ParsedRequest, dumps_json, json_object, request_too_deep
from gateway.proxy.passthrough import FORM_MODEL, FORM_TEXT, JSON_ONLY, PassThrough, answers_with_text, reader
from gateway.proxy.responses import RawResponse, RelayResponse, cancel_on_disconnect
from gateway.proxy.routing import Routing, Target
from gateway.proxy.sending import Sender, Sending, bodies
from gateway.proxy.upstream import (Upstream, UpstreamResponse, UpstreamTimeout, UpstreamUnreachable,
                                    client_response_headers, upstream_request_headers)
from gateway.proxy.usage import Usage
from gateway.scrub import SecretScrubber


@dataclass(slots=True)
class _Call:
    """One pass-through request as the steps find it out."""

    method: str
    path: str  # under /v1
    query: str
    payload: dict[str, Any] | None = None  # a JSON body, decoded
    body: bytes | AsyncIterator[bytes] | None = None  # as it will be sent (streamed on when not JSON)
    # a streamed body past the cap, or its client gone before sending it all
    streamed: dict[str, bool] = field(default_factory=lambda: {"too_large": False, "client_gone": False,
                                                               "body_done": False})
    model: str | None = None
    target: Target | None = None  # the model group that serves it (a JSON body naming a model)
    upstream: Upstream | None = None  # the upstream that passes the path (no model)


class PassThroughFlow:
    def __init__(self, gate: Gate, sender: Sender, finisher: Finisher, flow: GuardFlow, routing: Routing,
                 passing: PassThrough, scrub: SecretScrubber) -> None:
        self._gate = gate
        self._sender = sender
        self._finisher = finisher
        self._flow = flow
        self._routing = routing
        self.passing = passing
        self._scrub = scrub

    async def serve(self, request: Request, ex: Exchange) -> RawResponse | RelayResponse:
        call = _Call(request.scope["method"], request.scope["path"][len("/v1"):],
                     request.scope.get("query_string", b"").decode("latin-1"))
        entry = self._gate.authenticate(request, ex)
        await self._read(request, entry, call)
        payload = call.payload
        call.model = payload.get("model") if payload is not None and isinstance(payload.get("model"), str) else None
        await self._gate.govern(entry, call.model, ex)
        self._route(call, ex)
        refusal = await self._check_input(entry, call, ex)
        if refusal is not None:
            return self._finisher.done(ex, refusal)
        response, upstream = await self._send(request, call, ex)
        headers = [*client_response_headers(response.headers, self._scrub), rid(ex)]
        if response.status >= 400:  # read whole: an error may echo the upstream's key
            try:
                answer = await response.read(MAX_ERROR_BODY)
            except (UpstreamTimeout, UpstreamUnreachable) as exc:
                raise self._sender.failure(upstream.name, exc) from None
            finally:
                response.close()
            ex.upstream_s = time.perf_counter() - ex.upstream_start
            return self._finisher.done(ex, RawResponse(response.status, [*headers, *ex.guard_headers()],
                                                       self._scrub.bytes(answer)))
        state = {"status": response.status}

        def disconnected() -> None:
            state["status"] = 499

        ex.relayed = True
        return RelayResponse(response.status, [*headers, *ex.guard_headers()],
                             self._pass_on(upstream, response, ex, state), on_disconnect=disconnected)

    async def _read(self, request: Request, entry: Entry, call: _Call) -> None:
        """A JSON body read whole (within the body cap): its texts may be checked; anything else streamed on."""
        content_type = (header(request, b"content-type") or "").split(";")[0].strip().lower()
        path = call.path
        if content_type == "application/json":
            call.body = await self._gate.read_body(request)
            if call.body:
                call.payload = json_object(call.body)
        elif path in JSON_ONLY:  # its text would otherwise pass unread (and its model unchecked)
            raise OpenAIError(415, f"/v1{path} takes a JSON body; send it with Content-Type: application/json.",
                              code="unsupported_media_type")
        else:  # multipart, audio, anything else: streamed on as it arrives, never parsed
            if path in FORM_MODEL and any(r is not None and r.models for r in (entry.app_rule, entry.key_rule)):
                raise OpenAIError(403, f"This key may use only some models, and the gateway does not read the model "
                                       f"field of a /v1{path} form upload.", code="model_not_allowed", param="model")
            call.body = self._gate.stream_body(request, call.streamed)

    def _route(self, call: _Call, ex: Exchange) -> None:
        """A request naming a model is routed like any (every deployment of its group must pass the path);
        one without goes to the first upstream that passes the path."""
        model, path = call.model, call.path
        if model:
            target = call.target = self._routing.resolve(model)
            if target is None:
                raise OpenAIError(404, f"The model '{model}' is not served by this gateway.", code="model_not_found",
                                  param="model")
            closed = next((d.upstream.name for d in target.group.deployments
                           if not self.passing.passes(d.upstream, path)), None)
            if closed is not None:
                raise OpenAIError(404, f"Upstream '{closed}', which serves the model '{model}', does not pass "
                                       f"/v1{path} through; add it to that upstream's upstreams[].passthrough to "
                                       "enable it.", code="passthrough_disabled")
            ex.model, ex.requested_model = target.group.name, model
        else:
            upstream = call.upstream = self.passing.first(path)
            if upstream is None:
                raise not_passed(path)
            ex.model = upstream.name

    async def _check_input(self, entry: Entry, call: _Call, ex: Exchange) -> RawResponse | None:
        """The stages that apply, and a refusal of what they could not check; the input stages read a JSON
        body whose reader knows its texts (all of them before it is sent): their refusal, if they stop it."""
        payload, path = call.payload, call.path
        fields = len(payload) if payload is not None else 0
        self._flow.select(ex, entry.app, payload if payload is not None else {})
        if any(s.enforcing for s in ex.output_stages) and answers_with_text(path):
            raise OpenAIError(403, f"This application's answers pass output stages, which cannot check what /v1{path} "
                                   "answers through the pass-through.", code="unguarded_passthrough")
        inputs = (*ex.input_stages, *ex.parallel_stages)
        if payload is None and path in FORM_TEXT and any(s.enforcing for s in inputs):
            raise OpenAIError(400, f"This gateway checks this application's input and does not read the form fields "
                                   f"of /v1{path} (their text would reach the model unchecked).",
                              code="unreadable_input")
        rewrite = payload is not None and len(payload) != fields  # the `guardrails` extension field was taken out
        dialect = reader(path) if payload is not None else None
        if dialect is not None and payload is not None and inputs:
            ex.input_stages, ex.parallel_stages = inputs, ()  # on a pass-through all input stages run first
            self._flow.read_input(ex, dialect, payload)
            decision = await self._flow.check_input(ex, dialect, payload)
            if decision.terminal is not None:
                refusal = await self._flow.refusal_response(ex, decision, dialect, call.model or "", False)
                refusal.headers.append(rid(ex))
                return refusal
            rewrite = rewrite or decision.changed
        if rewrite and payload is not None:
            call.body = dumps_json(payload, request_too_deep)
        return None

    async def _send(self, request: Request, call: _Call, ex: Exchange) -> tuple[UpstreamResponse, Upstream]:
        """Through the model group (retries, fallbacks) or straight to the upstream that passes the path."""
        raw_headers, body, path = request.scope["headers"], call.body, call.path
        declared = header(request, b"content-length")

        def headers_for(up: Upstream) -> list[tuple[str, str]]:
            out = upstream_request_headers(raw_headers, up)
            if not isinstance(body, (bytes, type(None))) and declared is not None:
                out.append(("content-length", declared))  # a streamed body keeps its length (no chunking)
            return out

        target_path = f"{path}?{call.query}" if call.query else path
        ex.upstream_start = time.perf_counter()
        if call.target is not None:
            assert isinstance(body, bytes)
            parsed = ParsedRequest(call.payload or {}, call.model or "", False, len(call.payload or {}))
            sending = Sending(call.target, target_path, headers_for, bodies(parsed, body), call.model, call.method,
                              lambda g: all(self.passing.passes(d.upstream, path) for d in g.deployments))
            with cancel_on_disconnect(request.receive):
                response, upstream = await self._sender.send(sending, ex)
        else:
            assert call.upstream is not None
            upstream = call.upstream
            ex.upstream = upstream.name
            try:
                response = await upstream.send(call.method, target_path, headers_for(upstream),
                                               body if body != b"" else None)
            except (UpstreamTimeout, UpstreamUnreachable, _BodyTooLarge, ClientDisconnect) as exc:
                if call.streamed["client_gone"]:  # the client's 499, not the upstream's failure
                    raise ClientDisconnect() from None
                if isinstance(exc, UpstreamTimeout) and body is not None and not isinstance(body, bytes) \
                        and not call.streamed["body_done"]:  # still uploading: the client was slow, not the upstream
                    raise OpenAIError(408, "The request body did not arrive before the upstream's deadline; "
                                           "send it faster or raise the upstream's first_byte_timeout_s.",
                                      code="request_timeout") from None
                if call.streamed["too_large"]:
                    raise too_large(self._gate.max_body) from None
                assert not isinstance(exc, (_BodyTooLarge, ClientDisconnect))
                raise self._sender.failure(upstream.name, exc) from None
        if call.streamed["too_large"]:
            response.close()
            raise too_large(self._gate.max_body)
        return response, upstream

    async def _pass_on(self, upstream: Upstream, response: UpstreamResponse, ex: Exchange,
                       state: dict[str, int]) -> AsyncIterator[bytes]:
        """A pass-through answer relayed as it arrives (binary audio included); its usage counted if it has one."""
        usage = Usage() if response.content_type.startswith(b"application/json") else None
        try:
            async for chunk in response.chunks():
                if usage is not None:
                    usage.feed(chunk)
                if ex.ttft_s is None:
                    ex.ttft_s = time.perf_counter() - ex.start
                yield chunk
        except (UpstreamTimeout, UpstreamUnreachable) as exc:
            self._sender.failure(upstream.name, exc)
            state["status"] = 502  # the answer was cut: the client sees a short body
        finally:
            response.close()
            ex.upstream_s = time.perf_counter() - ex.upstream_start
            if usage is not None and usage.usage is not None:
                self._finisher.count_tokens(ex, *usage.usage)
            self._finisher.finish(ex, state["status"])


def not_passed(path: str) -> OpenAIError:
    """The 404 of a /v1 route no upstream passes through."""
    return OpenAIError(404, f"Unknown path /v1{path}: this gateway serves it only where an upstream passes it "
                            "through; set upstreams[].passthrough to enable it (e.g. passthrough: ['/images/*']).",
                       code="unknown_url")
