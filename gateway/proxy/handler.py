"""The request flow: a proxied request passes named phases, in order, each a method of `ProxyHandler` that
fills in the request's one `Exchange` (proxy/exchange.py):

    authenticate -> read_request -> select_stages -> check_input -> send_upstream -> check_answer | relay_stream
                                                          |         (beside the parallel input stages)   |
                                                          +-> refused ---------------------------------> finish

`_proxy` reads as that list. A refusal (an input stage's stop, a parallel stage's stop) goes straight to
`finish` (`_done`), as an error does (`_answer`); a relayed stream finishes when it ends (`_events`)."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from gateway.config.errors import format_path
from gateway.config.schema import ApplicationConfig, GatewayConfig
from gateway.proxy.exchange import Exchange
from gateway.proxy.guard_flow import GuardFlow
from gateway.proxy.dialects import Dialect
from gateway.proxy.stream_guard import StreamGuard, UnreadableStream
from gateway.proxy.stream_monitor import AnswerMonitor, EventRelay
from gateway.proxy.walk import Found, Path
from gateway.proxy.auth import Entry, KeyRing, bearer
from gateway.proxy.limits import Cell, Limiter, Verdict
from gateway.proxy.models import ModelCatalog
from gateway.proxy.passthrough import (FORM_MODEL, FORM_TEXT, JSON_ONLY, PassThrough, acceptable, answers_with_text,
                                      reader)
from gateway.proxy.openai import (Endpoint, OpenAIError, ParsedRequest, answer_too_deep, dumps_json, json_object,
                                  model_list, parse_request, request_too_deep, stream_error_event)
from gateway.proxy.responses import JSON, RawResponse, RelayResponse, cancel_on_disconnect, event_stream_headers
from gateway.proxy.routing import Attempts, Counters, Dispatcher, Group, Routing, Target
from gateway.proxy.upstream import (Router, Upstream, UpstreamResponse, UpstreamTimeout, UpstreamTooLarge,
                                    UpstreamUnreachable, client_response_headers, upstream_request_headers)
from gateway.errors import GatewayError, internal_error, to_openai
from gateway.scrub import SecretScrubber
from gateway.telemetry import AccessLog, Telemetry

log = logging.getLogger("gateway.proxy")
_MAX_ERROR_BODY = 1024 * 1024  # an upstream's error answer, read whole to scrub and relay it
ASGIApp = RawResponse | RelayResponse


class ProxyHandler:
    """Serves the OpenAI routes for one immutable config."""

    def __init__(self, config: GatewayConfig, upstreams: list[Upstream], router: Router, telemetry: Telemetry,
                 flow: GuardFlow, scrub: SecretScrubber | None = None, limiter: Limiter | None = None) -> None:
        self._config = config
        # the upstreams' secrets, kept out of relayed error bodies and headers (compiled once, here)
        self._scrub = scrub if scrub is not None else SecretScrubber.from_upstreams(config.upstreams)
        self._flow = flow
        self._keys = self.keyring = KeyRing(config.applications)
        self._router = router
        self.limiter = limiter if limiter is not None else Limiter()
        self.routing = Routing(upstreams, config.routing)
        t = telemetry
        self._dispatch = Dispatcher(self.routing, Counters(t.upstream_attempts, t.upstream_retries,
                                                           t.upstream_fallbacks, t.upstream_ejections,
                                                           t.retry_budget_exhausted, t.upstream_errors))
        self._catalog = ModelCatalog(upstreams, self._router, self.routing)
        self.passing = PassThrough(upstreams)
        self._telemetry = telemetry
        self._max_body = config.server.max_body_bytes
        self._access_log = AccessLog() if config.server.access_log else None
        self._background: set[asyncio.Task[None]] = set()

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        """Run `work` after the response that started it; `drain` waits for it at shutdown."""
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def drain(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for the work responses left running (monitoring checks of streams cut
        short), so what they record reaches the monitoring log before the store closes."""
        if self._background:
            await asyncio.wait(tuple(self._background), timeout=timeout_s)

    async def proxy(self, request: Request, endpoint: Endpoint) -> ASGIApp:
        ex = Exchange(endpoint.name, time.perf_counter(), _request_id(), endpoint)
        self._telemetry.in_flight.labels(ex.route).inc()
        return await self._answer(ex, self._proxy(request, endpoint, ex))

    async def passthrough(self, request: Request) -> ASGIApp:
        """Another /v1 route, relayed as it comes to an upstream that passes it through (proxy/passthrough.py)."""
        ex = Exchange("passthrough", time.perf_counter(), _request_id())
        self._telemetry.in_flight.labels(ex.route).inc()
        return await self._answer(ex, self._passthrough(request, ex))

    async def _answer(self, ex: Exchange, work: Coroutine[Any, Any, ASGIApp]) -> ASGIApp:
        """`work`'s response, or its failure answered in OpenAI's shape."""
        try:
            response = await work
            if ex.verdict is not None and ex.verdict.headers:  # the gateway's limits, not the upstream account's
                response.headers = [h for h in response.headers if not h[0].startswith(b"x-ratelimit-")]
                response.headers += ex.verdict.headers
            return response
        except ClientDisconnect:
            return self._done(ex, RawResponse(499, [], b""))
        except Exception as exc:  # answered by gateway/errors.py's mapping; a bug still in OpenAI's shape, logged
            answer = to_openai(exc)
            if not isinstance(exc, OpenAIError):
                log.exception("unhandled error", extra={"fields": {"request_id": ex.request_id}})
            response = self._error(ex, answer or internal_error("Internal gateway error."))
            if isinstance(exc, RateLimited):
                response.headers += exc.headers()
            return response

    def overloaded(self, endpoint: Endpoint, reason: str) -> RawResponse:
        """The fast refusal of a request the gateway has no room for (see proxy/admission.py)."""
        ex = Exchange(endpoint.name, time.perf_counter(), _request_id())
        self._telemetry.in_flight.labels(ex.route).inc()
        self._telemetry.shed.labels(reason).inc()
        waited = "the queue of waiting requests is full" if reason == "queue_full" else "no slot came free in time"
        err = OpenAIError(503, f"The gateway is overloaded ({waited}); retry after a moment.", type="server_error",
                          code="gateway_overloaded")
        response = self._error(ex, err)
        response.headers.append((b"retry-after", b"1"))
        return response

    async def list_models(self, request: Request) -> ASGIApp:
        ex = Exchange("models", time.perf_counter(), _request_id())
        self._telemetry.in_flight.labels(ex.route).inc()
        try:
            self._authenticate(request, ex)
        except OpenAIError as err:
            return self._error(ex, err)
        body = model_list(await self._catalog.models())
        return self._done(ex, RawResponse(200, [JSON, _rid(ex)], body))

    async def get_model(self, request: Request) -> ASGIApp:
        """GET /v1/models/{id}: one entry of the list, or 404 model_not_found."""
        ex = Exchange("models", time.perf_counter(), _request_id())
        self._telemetry.in_flight.labels(ex.route).inc()
        try:
            self._authenticate(request, ex)
            model = request.path_params["id"]
            entry = next((m for m in await self._catalog.models() if m["id"] == model), None)
            if entry is None:
                raise OpenAIError(404, f"The model '{model}' does not exist or is not served by this gateway.",
                                  code="model_not_found", param="model")
        except OpenAIError as err:
            return self._error(ex, err)
        return self._done(ex, RawResponse(200, [JSON, _rid(ex)], orjson.dumps(entry)))

    async def _proxy(self, request: Request, endpoint: Endpoint, ex: Exchange) -> ASGIApp:
        """A proxied request, phase by phase (the module docstring draws them)."""
        entry = self._authenticate(request, ex)
        await self._read_request(request, entry, ex)
        self._select_stages(entry.app, ex)
        refusal = await self._check_input(ex)
        if refusal is not None:
            return self._done(ex, refusal)
        with cancel_on_disconnect(request.receive):
            sent = await self._send_upstream(request, ex)
            if isinstance(sent, RawResponse):  # a parallel input stage stopped it
                return self._done(ex, sent)
            response, upstream = sent
            if self._streams(response, ex):
                return self._relay_stream(upstream, response, ex)
            answer = await self._read_whole(upstream, response)
        return self._done(ex, await self._check_answer(upstream, response, answer, ex))

    async def _read_request(self, request: Request, entry: Entry, ex: Exchange) -> None:
        """Read and parse the body, check the key may use its model and is within its limits, and find
        the model group that serves it."""
        assert ex.endpoint is not None
        body = await self._read_body(request)
        parsed = parse_request(body, ex.endpoint)
        await self._govern(entry, parsed.model, ex)
        ex.prompt_chars = len(body)
        target = self.routing.resolve(parsed.model)
        if target is None:
            raise OpenAIError(404, f"The model '{parsed.model}' is not served by this gateway.",
                              code="model_not_found", param="model")
        ex.parsed, ex.body, ex.target = parsed, body, target
        ex.model, ex.stream = target.group.name, parsed.stream
        ex.requested_model = parsed.model
        if len(target.group.deployments) == 1:  # known before sending (refusals name it, as before groups)
            ex.upstream = target.group.deployments[0].upstream.name

    def _select_stages(self, app: ApplicationConfig, ex: Exchange) -> None:
        """The stages that apply (central, the application's, the request's own), and what they make of the
        request: whether its answer may be acted on, read whole, and its body re-encoded."""
        assert ex.endpoint is not None and ex.parsed is not None
        payload = ex.parsed.payload
        self._flow.select(ex, app, payload)
        # output stages that may act see a /v1/responses answer whole (a stream of one is told from it);
        # stages that only monitor never change what the client gets, so they watch it stream by
        ex.enforced = any(stage.enforcing for stage in ex.output_stages)
        if ex.enforced:  # before any input stage runs: a request they could not check is refused whatever they decide
            ex.dialect.check_guarded(payload)
        ex.rewrite = len(payload) != ex.parsed.fields  # the `guardrails` extension field was taken out
        ex.whole = ex.enforced and ex.parsed.stream and ex.dialect.whole_when_guarded

    async def _check_input(self, ex: Exchange) -> RawResponse | None:
        """Read the request's texts and run the input stages that go first; their refusal, if they stop it.
        Then the body as it will be sent (a redaction written back, a whole answer asked for)."""
        assert ex.endpoint is not None and ex.parsed is not None
        parsed, dialect = ex.parsed, ex.dialect
        if ex.input_stages or ex.parallel_stages:
            self._flow.read_input(ex, dialect, parsed.payload)
        if ex.input_stages:
            decision = await self._flow.check_input(ex, dialect, parsed.payload)
            if decision.terminal is not None:
                refusal = await self._flow.refusal_response(ex, decision, dialect, parsed.model, parsed.stream)
                refusal.headers.append(_rid(ex))
                return refusal
            ex.rewrite = ex.rewrite or decision.changed
        if ex.whole:  # checked whole: asked for without streaming, streamed to the client once it passed
            parsed.payload["stream"] = False
            parsed.payload.pop("stream_options", None)
            ex.rewrite = True
        if ex.rewrite:
            ex.body = dumps_json(parsed.payload, request_too_deep)
        return None

    async def _send_upstream(self, request: Request, ex: Exchange) -> tuple[UpstreamResponse, Upstream] | RawResponse:
        """Send the request through its model group (beside the parallel input stages, if any): the
        upstream's answer, or the parallel stages' refusal."""
        assert ex.endpoint is not None and ex.parsed is not None and ex.target is not None
        raw_headers = request.scope["headers"]
        sending = _Sending(ex.target, ex.endpoint.path, lambda up: upstream_request_headers(raw_headers, up),
                           _bodies(ex.parsed, ex.body), ex.parsed.model)
        if ex.parallel_stages:
            return await self._send_beside_guard(sending, ex)
        return await self._send(sending, ex)

    def _streams(self, response: UpstreamResponse, ex: Exchange) -> bool:
        """Whether the answer is relayed as a stream (else read whole, then checked)."""
        return (ex.stream and not ex.whole and 200 <= response.status < 300
                and response.content_type.startswith(b"text/event-stream"))

    async def _read_whole(self, upstream: Upstream, response: UpstreamResponse) -> bytes:
        """The upstream's whole answer (an error's within a smaller cap)."""
        ok = 200 <= response.status < 300
        try:
            return await response.read(upstream.config.max_response_bytes if ok else _MAX_ERROR_BODY)
        except UpstreamTooLarge as exc:
            self._telemetry.upstream_errors.labels(upstream.name, "too_large").inc()
            raise OpenAIError(502, f"Upstream '{upstream.name}' answered {exc}, more than this gateway reads "
                                   "whole.", type="upstream_error", code="upstream_response_too_large") from None
        except (UpstreamTimeout, UpstreamUnreachable) as exc:
            raise self._upstream_failure(upstream.name, exc) from None
        finally:
            response.close()

    async def _check_answer(self, upstream: Upstream, response: UpstreamResponse, answer: bytes,
                            ex: Exchange) -> RawResponse:
        """A whole answer: its tokens counted, an error scrubbed (and put in OpenAI's shape), a 2xx with a
        body checked by the output stages."""
        ex.upstream_s = time.perf_counter() - ex.upstream_start
        ok = 200 <= response.status < 300
        if ok:
            self._count_tokens(ex, *_answer_tokens(answer, ex.prompt_chars))
        if not ok:  # an error may echo the upstream's key ("Incorrect API key provided: sk-...")
            answer = self._scrub.bytes(answer)
        headers = [*client_response_headers(response.headers, self._scrub), _rid(ex)]
        if ex.output_stages and ok and answer:  # any 2xx with a body (a proxy's 203 as much as a 200) is checked
            checked = await self._guard_answer(answer, headers, ex)
            if checked.status == 200 and not ex.whole:
                checked.status = response.status
            if ex.whole and checked.status == 200:
                ex.ttft_s = time.perf_counter() - ex.start  # the whole stream leaves now, its first token with it
            return checked
        if response.status >= 400 and not _is_openai_error(answer):
            # An HTML page from a proxy in front of the model, a bare "Internal Server Error": clients and
            # the OpenAI SDKs expect an error object. The upstream's text stays out (it may echo the prompt).
            log.warning("upstream error without an OpenAI error body", extra={"fields": {
                "request_id": ex.request_id, "upstream": upstream.name, "status": response.status,
                "content_type": response.content_type.decode("latin-1"), "bytes": len(answer)}})
            err = OpenAIError(response.status, f"Upstream '{upstream.name}' answered HTTP {response.status} "
                                               "without an OpenAI error body.", type="upstream_error",
                              code="upstream_error")
            headers = [h for h in headers if h[0] != b"content-type"]
            return RawResponse(response.status, [JSON, *headers, *ex.guard_headers()], err.body())
        return RawResponse(response.status, [*headers, *ex.guard_headers()], answer)

    async def _passthrough(self, request: Request, ex: Exchange) -> ASGIApp:
        method, path = request.scope["method"], request.scope["path"][len("/v1"):]
        query = request.scope.get("query_string", b"").decode("latin-1")
        entry = self._authenticate(request, ex)
        content_type = (_header(request, b"content-type") or "").split(";")[0].strip().lower()
        payload: dict[str, Any] | None = None
        body: bytes | AsyncIterator[bytes] | None = None
        streamed = {"too_large": False}
        if content_type == "application/json":  # read whole (within the body cap): its texts may be checked
            body = await self._read_body(request)
            if body:
                payload = json_object(body)
        elif path in JSON_ONLY:  # its text would otherwise pass unread (and its model unchecked)
            raise OpenAIError(415, f"/v1{path} takes a JSON body; send it with Content-Type: application/json.",
                              code="unsupported_media_type")
        else:  # multipart, audio, anything else: streamed on as it arrives, never parsed
            if path in FORM_MODEL and any(r is not None and r.models for r in (entry.app_rule, entry.key_rule)):
                raise OpenAIError(403, f"This key may use only some models, and the gateway does not read the model "
                                       f"field of a /v1{path} form upload.", code="model_not_allowed", param="model")
            body = self._stream_body(request, streamed)
        model = payload.get("model") if payload is not None and isinstance(payload.get("model"), str) else None
        await self._govern(entry, model, ex)
        target: Target | None = None
        upstream: Upstream | None = None
        if model:
            target = self.routing.resolve(model)
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
            upstream = self.passing.first(path)
            if upstream is None:
                raise not_passed(path)
            ex.model = upstream.name
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
                refusal = await self._flow.refusal_response(ex, decision, dialect, model or "", False)
                refusal.headers.append(_rid(ex))
                return self._done(ex, refusal)
            rewrite = rewrite or decision.changed
        if rewrite and payload is not None:
            body = dumps_json(payload, request_too_deep)
        raw_headers = request.scope["headers"]
        declared = _header(request, b"content-length")

        def headers_for(up: Upstream) -> list[tuple[str, str]]:
            out = upstream_request_headers(raw_headers, up)
            if not isinstance(body, (bytes, type(None))) and declared is not None:
                out.append(("content-length", declared))  # a streamed body keeps its length (no chunking)
            return out

        target_path = f"{path}?{query}" if query else path
        ex.upstream_start = time.perf_counter()
        if target is not None:
            assert isinstance(body, bytes)
            parsed = ParsedRequest(payload or {}, model or "", False, len(payload or {}))
            sending = _Sending(target, target_path, headers_for, _bodies(parsed, body), model, method,
                               lambda g: all(self.passing.passes(d.upstream, path) for d in g.deployments))
            with cancel_on_disconnect(request.receive):
                response, upstream = await self._send(sending, ex)
        else:
            assert upstream is not None
            ex.upstream = upstream.name
            try:
                response = await upstream.send(method, target_path, headers_for(upstream),
                                               body if body != b"" else None)
            except (UpstreamTimeout, UpstreamUnreachable, _BodyTooLarge) as exc:
                if streamed["too_large"]:
                    raise _too_large(self._max_body) from None
                assert not isinstance(exc, _BodyTooLarge)
                raise self._upstream_failure(upstream.name, exc) from None
        if streamed["too_large"]:
            response.close()
            raise _too_large(self._max_body)
        headers = [*client_response_headers(response.headers, self._scrub), _rid(ex)]
        if response.status >= 400:  # read whole: an error may echo the upstream's key
            try:
                answer = await response.read(_MAX_ERROR_BODY)
            except (UpstreamTimeout, UpstreamUnreachable) as exc:
                raise self._upstream_failure(upstream.name, exc) from None
            finally:
                response.close()
            ex.upstream_s = time.perf_counter() - ex.upstream_start
            return self._done(ex, RawResponse(response.status, [*headers, *ex.guard_headers()], self._scrub.bytes(answer)))
        state = {"status": response.status}

        def disconnected() -> None:
            state["status"] = 499

        ex.relayed = True
        return RelayResponse(response.status, [*headers, *ex.guard_headers()],
                             self._pass_on(upstream, response, ex, state), on_disconnect=disconnected)

    def _stream_body(self, request: Request, state: dict[str, bool]) -> AsyncIterator[bytes] | None:
        """A request body streamed on within the body cap (state['too_large'] once it went past), or None."""
        declared = _header(request, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            raise _too_large(self._max_body)
        if (declared is None or declared == "0") and _header(request, b"transfer-encoding") is None:
            return None
        limit = self._max_body

        async def chunks() -> AsyncIterator[bytes]:
            size = 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    state["too_large"] = True
                    raise _BodyTooLarge()
                if chunk:
                    yield chunk
        return chunks()

    async def _pass_on(self, upstream: Upstream, response: UpstreamResponse, ex: Exchange,
                       state: dict[str, int]) -> AsyncIterator[bytes]:
        """A pass-through answer relayed as it arrives (binary audio included); its usage counted if it has one."""
        usage = _Usage() if response.content_type.startswith(b"application/json") else None
        try:
            async for chunk in response.chunks():
                if usage is not None:
                    usage.feed(chunk)
                if ex.ttft_s is None:
                    ex.ttft_s = time.perf_counter() - ex.start
                yield chunk
        except (UpstreamTimeout, UpstreamUnreachable) as exc:
            self._upstream_failure(upstream.name, exc)
            state["status"] = 502  # the answer was cut: the client sees a short body
        finally:
            response.close()
            ex.upstream_s = time.perf_counter() - ex.upstream_start
            if usage is not None and usage.usage is not None:
                self._count_tokens(ex, *usage.usage)
            self._finish(ex, state["status"])

    async def _guard_answer(self, answer: bytes, headers: list[tuple[bytes, bytes]], ex: Exchange) -> RawResponse:
        """Check a whole answer (refused if unreadable only when `ex.enforced`: some output stage may act;
        else it is only monitored); with `ex.whole`, a /v1/responses answer that passes is told as the event
        stream the client asked for."""
        assert ex.parsed is not None
        dialect, model, enforcing, as_events = ex.dialect, ex.parsed.model, ex.enforced, ex.whole
        try:
            payload = orjson.loads(answer)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):  # nothing readable to check: never pass it unchecked
            if not enforcing and not as_events:
                return RawResponse(200, [*headers, *ex.guard_headers()], answer)
            raise OpenAIError(502, "The upstream answer could not be read by the output stages.",
                              type="upstream_error", code="unreadable_answer")
        found, unread = _read_answer(dialect, payload, ex)
        if unread is not None and (enforcing or as_events):  # events are made from what was read
            raise OpenAIError(502, f"The upstream answer could not be read by the output stages "
                                   f"('{format_path(unread[0])}': {unread[1]}).", type="upstream_error",
                              code="unreadable_answer")
        decision = await self._flow.check_output(ex, payload, found)
        if decision.terminal is not None:
            original = "\n".join(t for t in decision.texts)
            refusal = await self._flow.refusal_response(ex, decision, dialect, model, as_events, original)
            refusal.headers.append(_rid(ex))
            return refusal
        annotated = decision.changed or any(d.action or any(o.errors for o in d.outcomes) for d in ex.decisions)
        if annotated:
            payload["guardrail"] = ex.annotation(decision)
        if as_events:
            dumps_json(payload, answer_too_deep)  # fails here, as an error answer, not in the middle of the stream
            return RawResponse(200, event_stream_headers([*headers, *ex.guard_headers()]), dialect.events(payload))
        body = dumps_json(payload, answer_too_deep) if annotated else answer
        return RawResponse(200, [*headers, *ex.guard_headers()], body)

    def _authenticate(self, request: Request, ex: Exchange) -> Entry:
        """The key's entry (its application and rules): 401 for a missing, unknown or expired key."""
        key = bearer(_header(request, b"authorization")) or _header(request, b"x-api-key") or _header(request,
                                                                                                    b"api-key")
        entry = self._keys.lookup(key.strip() if key else None)
        if entry is None:
            raise OpenAIError(401, "Invalid or missing API key. Send your gateway key as 'Authorization: Bearer <key>' "
                                   "(or in an x-api-key or api-key header).", code="invalid_api_key")
        ex.application = entry.app.id
        rule = entry.key_rule
        if rule is not None and rule.expires_at is not None and time.time() >= rule.expires_at:
            raise OpenAIError(401, "This API key has expired; ask for a new one.", code="expired_api_key")
        return entry

    async def _govern(self, entry: Entry, model: str | None, ex: Exchange) -> Verdict | None:
        """Allowed models (when the request names one), then the request and token limits (one atomic
        check for all of them)."""
        for rule, who in ((entry.app_rule, "application"), (entry.key_rule, "key")):
            if rule is not None and model is not None and not rule.allows(model):
                raise OpenAIError(403, f"This {who} may not use the model '{model}'.", code="model_not_allowed",
                                  param="model")
        cells = Limiter.cells(entry.app.id, entry.app_rule, entry.key_id, entry.key_rule)
        if not cells:
            return None
        verdict = await self.limiter.check(cells)
        if verdict.denied is not None:
            self._telemetry.rate_limited.labels(ex.application, verdict.denied.split()[0]).inc()
            raise RateLimited(verdict)
        ex.cells, ex.verdict = cells, verdict
        return verdict

    async def _read_body(self, request: Request) -> bytes:
        declared = _header(request, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            raise _too_large(self._max_body)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._max_body:
                raise _too_large(self._max_body)
            chunks.append(chunk)
        return b"".join(chunks)

    async def _send(self, sending: _Sending, ex: Exchange) -> tuple[UpstreamResponse, Upstream]:
        """The request through its model group: retries and fallbacks before the first byte (proxy/routing.py)."""
        ex.upstream_start = time.perf_counter()
        record = ex.attempts = Attempts()
        try:
            response, upstream = await self._dispatch.send(sending.target, sending.method, sending.path,
                                                           sending.headers, sending.body, record, sending.model,
                                                           sending.serves)
        except (UpstreamTimeout, UpstreamUnreachable) as exc:
            ex.upstream = record.upstream
            raise self._upstream_failure(record.upstream, exc, counted=True) from None
        ex.upstream = upstream.name
        return response, upstream

    async def _send_beside_guard(self, sent: _Sending, ex: Exchange) -> tuple[UpstreamResponse, Upstream] | RawResponse:
        """Send the request while the parallel input stages run; their verdict comes first either way. A
        stop drops the upstream call (and its answer, if it came already) and answers with the refusal."""
        assert ex.endpoint is not None and ex.parsed is not None
        dialect, parsed = ex.dialect, ex.parsed
        sending = asyncio.ensure_future(self._send(sent, ex))
        try:
            decision = await self._flow.check_input(ex, dialect, parsed.payload, parallel=True)
        except BaseException:
            await _abandon(sending)
            raise
        if decision.terminal is None:
            return await sending
        await _abandon(sending)
        self._telemetry.upstream_abandoned.labels(ex.upstream or (ex.attempts.upstream if ex.attempts else "")).inc()
        refusal = await self._flow.refusal_response(ex, decision, dialect, parsed.model, parsed.stream)
        refusal.headers.append(_rid(ex))
        return refusal

    def _upstream_failure(self, upstream: str, exc: UpstreamTimeout | UpstreamUnreachable,
                          counted: bool = False) -> OpenAIError:
        # The message names the upstream and the failure class only: exception texts can carry URLs.
        if isinstance(exc, UpstreamTimeout):
            kind, status, code = "timeout", 504, "upstream_timeout"
            message = f"Upstream '{upstream}' did not answer in time ({exc})."
        else:
            kind, status, code = "unreachable", 502, "upstream_unreachable"
            message = f"Upstream '{upstream}' could not be reached ({exc})."
        if not counted:  # routing counts each attempt's failure itself
            self._telemetry.upstream_errors.labels(upstream, kind).inc()
        log.warning("upstream failure", extra={"fields": {"upstream": upstream, "kind": kind,
                                                          "error": str(exc)}})
        return OpenAIError(status, message, type="upstream_error", code=code)

    def _relay_stream(self, upstream: Upstream, response: UpstreamResponse, ex: Exchange) -> RelayResponse:
        """Relay the answer's events as they come: through the hold-back guard when output stages may act,
        watched by the monitoring ones (checked once it has left whole), else as they are."""
        dialect = ex.dialect
        headers = [*client_response_headers(response.headers, self._scrub), _rid(ex), *ex.guard_headers()]
        state = {"status": response.status}

        def disconnected() -> None:
            state["status"] = 499  # nginx's "client closed request": the client left mid-stream

        ex.relayed = True
        relay: EventRelay | StreamGuard = EventRelay()
        if ex.output_stages and not ex.enforced:  # stages that only monitor watch it stream by
            relay = dialect.monitor(lambda answer: self._monitor_answer(dialect, answer, ex))
        elif ex.output_stages:  # (a stream without choices under stages that may act was asked for whole)
            assert dialect.choices is not None
            relay = self._flow.stream_guard(ex, dialect.choices)
        chunks = self._events(upstream, response, ex, state, relay)
        return RelayResponse(response.status, headers, chunks, on_disconnect=disconnected)

    async def _monitor_answer(self, dialect: Dialect, answer: dict[str, Any], ex: Exchange) -> None:
        """The monitoring output stages' check of a streamed answer, once it has left whole."""
        try:
            found, _ = _read_answer(dialect, answer, ex)
            await self._flow.check_output(ex, answer, found)
        except Exception:  # the stream has left whole: a failing check must not spoil it
            log.exception("monitoring a streamed answer failed", extra={"fields": {"request_id": ex.request_id}})

    async def _events(self, upstream: Upstream, response: UpstreamResponse, ex: Exchange, state: dict[str, int],
                      relay: EventRelay | StreamGuard) -> AsyncIterator[bytes]:
        """Relay what `relay` lets through as it arrives; a dead upstream ends the stream with an error event."""
        usage = _Usage()
        try:
            async for chunk in response.chunks():
                usage.feed(chunk)
                out = await relay.feed(chunk)
                if out:
                    if ex.ttft_s is None:
                        ex.ttft_s = time.perf_counter() - ex.start
                    yield out
                if relay.stopped:
                    break
            tail = await relay.close()
            if tail:
                yield tail
        except (UpstreamTimeout, UpstreamUnreachable) as exc:
            err = self._upstream_failure(upstream.name, exc)
            yield stream_error_event(f"The upstream stream ended early: {err.message}", err.type, err.code)
        except UnreadableStream as exc:  # fail closed: what the output stages cannot read never leaves
            self._telemetry.upstream_errors.labels(upstream.name, "unreadable_stream").inc()
            log.warning("unreadable upstream stream", extra={"fields": {"request_id": ex.request_id,
                                                                         "upstream": upstream.name, "what": str(exc)}})
            yield stream_error_event(f"The upstream's stream held {exc}, which the output stages cannot check; "
                                     "the stream was ended there.", "upstream_error", "unreadable_stream")
        except Exception:  # a gateway bug on an odd stream: end it cleanly, pass nothing unchecked
            log.exception("stream relay failed", extra={"fields": {"request_id": ex.request_id,
                                                                    "upstream": upstream.name}})
            yield stream_error_event("The gateway could not relay the rest of the upstream's stream.",
                                     "server_error", "stream_relay_failed")
        finally:
            response.close()
            ex.upstream_s = time.perf_counter() - ex.upstream_start
            self._flow.record_stream(relay.decisions, ex)
            self._count_tokens(ex, *usage.tokens(ex.prompt_chars))
            self._finish(ex, state["status"])
            if isinstance(relay, AnswerMonitor) and not relay.checked:  # cut short: check what it carried
                self._in_background(relay.check_once())

    def _count_tokens(self, ex: Exchange, prompt: int, completion: int) -> None:
        """Token usage per application and model, and the token limits' debit (off the response's path)."""
        if prompt:
            self._telemetry.tokens.labels(ex.application, ex.model, "prompt").inc(prompt)
        if completion:
            self._telemetry.tokens.labels(ex.application, ex.model, "completion").inc(completion)
        if ex.cells and prompt + completion:
            self._in_background(self.limiter.debit_tokens(ex.cells, prompt + completion))

    def _error(self, ex: Exchange, err: OpenAIError) -> RawResponse:
        return self._done(ex, RawResponse(err.status, [JSON, _rid(ex)], err.body()))

    def _done(self, ex: Exchange, response: RawResponse) -> RawResponse:
        """finish: the request's metrics and access-log line; its response returned as it is."""
        self._finish(ex, response.status)
        return response

    def _finish(self, ex: Exchange, status: int) -> None:
        t = self._telemetry
        elapsed = time.perf_counter() - ex.start
        t.in_flight.labels(ex.route).dec()
        t.requests.labels(ex.route, ex.application, ex.model, str(status)).inc()
        t.duration.labels(ex.route, ex.application).observe(elapsed)
        if ex.upstream_s is not None:
            t.upstream_duration.labels(ex.upstream, ex.route).observe(ex.upstream_s)
            if not ex.relayed:
                t.overhead.labels(ex.route).observe(max(elapsed - ex.upstream_s, 0.0))
        if ex.ttft_s is not None:
            t.ttft.labels(ex.route, ex.application, ex.model).observe(ex.ttft_s)
        if self._access_log is not None:
            self._access_log.write(_access_fields(ex, status, elapsed))


def _access_fields(ex: Exchange, status: int, elapsed: float) -> dict[str, object]:
    fields: dict[str, object] = {
        "request_id": ex.request_id, "route": ex.route, "application": ex.application, "model": ex.model,
        "upstream": ex.upstream, "status": status, "stream": ex.stream, "duration_ms": round(elapsed * 1000, 3),
    }
    if ex.upstream_s is not None:
        fields["upstream_ms"] = round(ex.upstream_s * 1000, 3)
    if ex.ttft_s is not None:
        fields["ttft_ms"] = round(ex.ttft_s * 1000, 3)
    if ex.guard is not None:
        fields["guard"] = ex.guard
    tries = ex.attempts
    if tries is not None and (tries.attempts > 1 or tries.fallbacks):
        fields["attempts"] = tries.attempts
        fields["retries"] = tries.retries
        fields["fallbacks"] = tries.fallbacks
        fields["routed_group"] = tries.group
        fields["failed_attempts"] = tries.failures
    return fields


class RateLimited(OpenAIError):
    """A request over one of its rate limits: 429 in OpenAI's shape, Retry-After and x-ratelimit-* headers."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(429, f"Rate limit reached for {verdict.denied}; retry after {verdict.retry_after_s:.3g} s.",
                         type=(verdict.denied or "requests").split()[0], code="rate_limit_exceeded")
        self.verdict = verdict

    def headers(self) -> list[tuple[bytes, bytes]]:
        wait = self.verdict.retry_after_s
        return [(b"retry-after", str(max(math.ceil(wait), 1)).encode()),
                (b"retry-after-ms", str(math.ceil(wait * 1000)).encode()), *(self.verdict.headers or [])]


_USAGE = re.compile(rb'"(prompt_tokens|completion_tokens|input_tokens|output_tokens)"\s*:\s*(\d+)')
_TEXT = re.compile(rb'"(?:content|text|delta|arguments)"\s*:\s*"((?:[^"\\]|\\.)*)"')
_CHARS_PER_TOKEN = 4


def _read_usage(data: bytes) -> tuple[int, int] | None:
    found = {m.group(1): int(m.group(2)) for m in _USAGE.finditer(data)}
    if not found:
        return None
    return (found.get(b"prompt_tokens", found.get(b"input_tokens", 0)),
            found.get(b"completion_tokens", found.get(b"output_tokens", 0)))


def _answer_tokens(answer: bytes, prompt_chars: int) -> tuple[int, int]:
    """(prompt, completion) tokens of a whole answer: its usage (looked for at its end first), else estimated."""
    got = _read_usage(answer[-4096:]) or _read_usage(answer)
    if got is not None:
        return got
    return math.ceil(prompt_chars / _CHARS_PER_TOKEN), math.ceil(len(answer) / _CHARS_PER_TOKEN)


class _Usage:
    """A stream's token usage: its usage event when it sends one, else estimated from its text (4 characters
    a token) and the request's size."""

    __slots__ = ("usage", "chars")

    def __init__(self) -> None:
        self.usage: tuple[int, int] | None = None
        self.chars = 0

    def feed(self, chunk: bytes) -> None:
        if b"_tokens" in chunk:
            got = _read_usage(chunk)
            if got is not None:
                self.usage = got
        for m in _TEXT.finditer(chunk):
            self.chars += len(m.group(1))

    def tokens(self, prompt_chars: int) -> tuple[int, int]:
        if self.usage is not None:
            return self.usage
        if not self.chars:
            return 0, 0
        return math.ceil(prompt_chars / _CHARS_PER_TOKEN), math.ceil(self.chars / _CHARS_PER_TOKEN)


@dataclass(frozen=True, slots=True)
class _Sending:
    """What routing needs to send one request to any deployment: headers and body per upstream/model."""

    target: Target
    path: str
    headers: Callable[[Upstream], list[tuple[str, str]]]
    body: Callable[[str | None], bytes]
    model: str | None = None  # the request's model
    method: str = "POST"
    serves: Callable[[Group], bool] | None = None  # which fallback groups may take it (see Dispatcher.send)


def _bodies(parsed: ParsedRequest, body: bytes) -> Callable[[str | None], bytes]:
    """The body as sent, or re-encoded with another model name (an alias, a deployment's name, a fallback)."""
    def body_for(model: str | None) -> bytes:
        if model is None or model == parsed.model:
            return body
        return dumps_json({**orjson.loads(body), "model": model}, request_too_deep)
    return body_for


async def _abandon(sending: asyncio.Future[tuple[UpstreamResponse, Upstream]]) -> None:
    """Stop an upstream call nobody will read: cancel it, or close the answer that already came."""
    sending.cancel()
    done = await asyncio.gather(sending, return_exceptions=True)
    if isinstance(done[0], tuple):  # (the answer, the deployment that gave it): the connection is dropped
        done[0][0].close()


def _read_answer(dialect: Dialect, payload: dict[str, Any], ex: Exchange) -> tuple[Found, tuple[Path, str] | None]:
    """An upstream answer's texts for the output stages, and the first place they cannot read (logged)."""
    found, unread = dialect.read_response(payload)
    if unread is not None:
        log.warning("upstream answer not readable by the output stages", extra={"fields": {
            "request_id": ex.request_id, "at": format_path(unread[0]), "reason": unread[1]}})
    return found, unread


def _is_openai_error(body: bytes) -> bool:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(payload, dict) and isinstance(payload.get("error"), dict)


def _header(request: Request, name: bytes) -> str | None:
    """One header from the raw ASGI list: cheaper than building Starlette's Headers per request."""
    for key, value in request.scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def _request_id() -> str:
    return "gw-" + os.urandom(8).hex()


def _rid(ex: Exchange) -> tuple[bytes, bytes]:
    return (b"x-guardrail-request-id", ex.request_id.encode())


class _BodyTooLarge(GatewayError):
    """A streamed request body went past the gateway's body cap (answered 413)."""


def not_passed(path: str) -> OpenAIError:
    """The 404 of a /v1 route no upstream passes through."""
    return OpenAIError(404, f"Unknown path /v1{path}: this gateway serves it only where an upstream passes it "
                            "through; set upstreams[].passthrough to enable it (e.g. passthrough: ['/images/*']).",
                       code="unknown_url")


def _too_large(limit: int) -> OpenAIError:
    return OpenAIError(413, f"The request body is larger than this gateway accepts ({limit} bytes).",
                       code="request_too_large")
