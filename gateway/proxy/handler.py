"""The request flow: a proxied request passes named phases, in order, each a method of `ProxyHandler` that
fills in the request's one `Exchange` (proxy/exchange.py):

    authenticate -> read_request -> select_stages -> check_input -> send_upstream -> check_answer | relay_stream
                                                          |         (beside the parallel input stages)   |
                                                          +-> refused ---------------------------------> finish

`_proxy` reads as that list. A refusal (an input stage's stop, a parallel stage's stop) goes straight to
`finish` (`Finisher.done`), as an error does (`_answer`); a relayed stream finishes when it ends. The phases'
helpers: authenticate and the limits in proxy/gate.py, send_upstream in proxy/sending.py, check_answer and
relay_stream in proxy/answer.py, finish in proxy/finish.py; what is specific to an endpoint is its dialect
(proxy/dialects/). Other /v1 routes pass through (proxy/passthrough_flow.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from gateway.config.schema import ApplicationConfig, GatewayConfig
from gateway.errors import internal_error, to_openai
from gateway.proxy.answer import Answering
from gateway.proxy.auth import Entry, KeyRing
from gateway.proxy.exchange import Exchange
from gateway.proxy.finish import Finisher, request_id, rid
from gateway.proxy.gate import Gate, RateLimited
from gateway.proxy.guard_flow import GuardFlow
from gateway.proxy.limits import Limiter
from gateway.proxy.models import ModelCatalog
from gateway.proxy.openai import Endpoint, OpenAIError, dumps_json, model_list, parse_request, request_too_deep
from gateway.proxy.passthrough import PassThrough
from gateway.proxy.passthrough_flow import PassThroughFlow, not_passed  # noqa: F401  (not_passed: re-exported)
from gateway.proxy.responses import JSON, RawResponse, RelayResponse, cancel_on_disconnect
from gateway.proxy.dispatch import Counters, Dispatcher
from gateway.proxy.routing import Routing
from gateway.proxy.sending import Sender, Sending, abandon, bodies
from gateway.proxy.upstream import Router, Upstream, UpstreamResponse, upstream_request_headers
from gateway.scrub import SecretScrubber
from gateway.telemetry import Telemetry

log = logging.getLogger("gateway.proxy")
ASGIApp = RawResponse | RelayResponse


class ProxyHandler:
    """Serves the OpenAI routes for one immutable config."""

    def __init__(self, config: GatewayConfig, upstreams: list[Upstream], router: Router, telemetry: Telemetry,
                 flow: GuardFlow, scrub: SecretScrubber | None = None, limiter: Limiter | None = None) -> None:
        # the upstreams' secrets, kept out of relayed error bodies and headers (compiled once, here)
        scrub = scrub if scrub is not None else SecretScrubber.from_upstreams(config.upstreams)
        self._flow = flow
        self.keyring = KeyRing(config.applications)
        self.limiter = limiter if limiter is not None else Limiter()
        self.routing = Routing(upstreams, config.routing)
        t = telemetry
        dispatch = Dispatcher(self.routing, Counters(t.upstream_attempts, t.upstream_retries, t.upstream_fallbacks,
                                                     t.upstream_ejections, t.retry_budget_exhausted,
                                                     t.upstream_errors))
        self._catalog = ModelCatalog(upstreams, router, self.routing)
        self.passing = PassThrough(upstreams)
        self._telemetry = telemetry
        self._gate = Gate(self.keyring, self.limiter, telemetry, config.server.max_body_bytes)
        self._sender = Sender(dispatch, telemetry)
        self._finisher = Finisher(telemetry, self.limiter, config.server.access_log)
        self._answering = Answering(flow, self._sender, self._finisher, telemetry, scrub)
        self._passing = PassThroughFlow(self._gate, self._sender, self._finisher, flow, self.routing, self.passing,
                                        scrub)

    async def drain(self, timeout_s: float) -> None:
        """Wait up to `timeout_s` for the work responses left running (monitoring checks of streams cut
        short), so what they record reaches the monitoring log before the store closes."""
        await self._finisher.drain(timeout_s)

    async def proxy(self, request: Request, endpoint: Endpoint) -> ASGIApp:
        ex = Exchange(endpoint.name, time.perf_counter(), request_id(), endpoint)
        self._telemetry.in_flight.labels(ex.route).inc()
        return await self._answer(ex, self._proxy(request, ex))

    async def passthrough(self, request: Request) -> ASGIApp:
        """Another /v1 route, relayed as it comes to an upstream that passes it through (proxy/passthrough.py)."""
        ex = Exchange("passthrough", time.perf_counter(), request_id())
        self._telemetry.in_flight.labels(ex.route).inc()
        return await self._answer(ex, self._passing.serve(request, ex))

    async def _answer(self, ex: Exchange, work: Coroutine[Any, Any, ASGIApp]) -> ASGIApp:
        """`work`'s response, or its failure answered in OpenAI's shape."""
        try:
            response = await work
            if ex.verdict is not None and ex.verdict.headers:  # the gateway's limits, not the upstream account's
                response.headers = [h for h in response.headers if not h[0].startswith(b"x-ratelimit-")]
                response.headers += ex.verdict.headers
            return response
        except ClientDisconnect:
            return self._finisher.done(ex, RawResponse(499, [], b""))
        except Exception as exc:  # answered by gateway/errors.py's mapping; a bug still in OpenAI's shape, logged
            answer = to_openai(exc)
            if not isinstance(exc, OpenAIError):
                log.exception("unhandled error", extra={"fields": {"request_id": ex.request_id}})
            response = self._finisher.error(ex, answer or internal_error("Internal gateway error."))
            if isinstance(exc, RateLimited):
                response.headers += exc.headers()
            return response

    def overloaded(self, endpoint: Endpoint, reason: str) -> RawResponse:
        """The fast refusal of a request the gateway has no room for (see proxy/admission.py)."""
        ex = Exchange(endpoint.name, time.perf_counter(), request_id())
        self._telemetry.in_flight.labels(ex.route).inc()
        self._telemetry.shed.labels(reason).inc()
        waited = "the queue of waiting requests is full" if reason == "queue_full" else "no slot came free in time"
        err = OpenAIError(503, f"The gateway is overloaded ({waited}); retry after a moment.", type="server_error",
                          code="gateway_overloaded")
        response = self._finisher.error(ex, err)
        response.headers.append((b"retry-after", b"1"))
        return response

    async def list_models(self, request: Request) -> ASGIApp:
        ex = Exchange("models", time.perf_counter(), request_id())
        self._telemetry.in_flight.labels(ex.route).inc()
        try:
            self._gate.authenticate(request, ex)
        except OpenAIError as err:
            return self._finisher.error(ex, err)
        body = model_list(await self._catalog.models())
        return self._finisher.done(ex, RawResponse(200, [JSON, rid(ex)], body))

    async def get_model(self, request: Request) -> ASGIApp:
        """GET /v1/models/{id}: one entry of the list, or 404 model_not_found."""
        ex = Exchange("models", time.perf_counter(), request_id())
        self._telemetry.in_flight.labels(ex.route).inc()
        try:
            self._gate.authenticate(request, ex)
            model = request.path_params["id"]
            entry = next((m for m in await self._catalog.models() if m["id"] == model), None)
            if entry is None:
                raise OpenAIError(404, f"The model '{model}' does not exist or is not served by this gateway.",
                                  code="model_not_found", param="model")
        except OpenAIError as err:
            return self._finisher.error(ex, err)
        return self._finisher.done(ex, RawResponse(200, [JSON, rid(ex)], orjson.dumps(entry)))

    async def _proxy(self, request: Request, ex: Exchange) -> ASGIApp:
        """A proxied request, phase by phase (the module docstring draws them)."""
        done, answering = self._finisher.done, self._answering
        entry = self._gate.authenticate(request, ex)
        await self._read_request(request, entry, ex)
        self._select_stages(entry.app, ex)
        refusal = await self._check_input(ex)
        if refusal is not None:
            return done(ex, refusal)
        with cancel_on_disconnect(request.receive):
            sent = await self._send_upstream(request, ex)
            if isinstance(sent, RawResponse):  # a parallel input stage stopped it
                return done(ex, sent)
            response, upstream = sent
            if self._streams(response, ex):
                return answering.relay_stream(upstream, response, ex)
            answer = await answering.read_whole(upstream, response)
        return done(ex, await answering.check_answer(upstream, response, answer, ex))

    async def _read_request(self, request: Request, entry: Entry, ex: Exchange) -> None:
        """Read and parse the body, check the key may use its model and is within its limits, and find
        the model group that serves it."""
        assert ex.endpoint is not None
        body = await self._gate.read_body(request)
        parsed = parse_request(body, ex.endpoint)
        await self._gate.govern(entry, parsed.model, ex, body)
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
                refusal.headers.append(rid(ex))
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
        sending = Sending(ex.target, ex.endpoint.path, lambda up: upstream_request_headers(raw_headers, up),
                          bodies(ex.parsed, ex.body), ex.parsed.model)
        if ex.parallel_stages:
            return await self._send_beside_guard(sending, ex)
        return await self._sender.send(sending, ex)

    def _streams(self, response: UpstreamResponse, ex: Exchange) -> bool:
        """Whether the answer is relayed as a stream (else read whole, then checked)."""
        return (ex.stream and not ex.whole and 200 <= response.status < 300
                and response.content_type.startswith(b"text/event-stream"))

    async def _send_beside_guard(self, sent: Sending, ex: Exchange) -> tuple[UpstreamResponse, Upstream] | RawResponse:
        """Send the request while the parallel input stages run; their verdict comes first either way. A
        stop drops the upstream call (and its answer, if it came already) and answers with the refusal."""
        assert ex.endpoint is not None and ex.parsed is not None
        dialect, parsed = ex.dialect, ex.parsed
        sending = asyncio.ensure_future(self._sender.send(sent, ex))
        try:
            decision = await self._flow.check_input(ex, dialect, parsed.payload, parallel=True)
        except BaseException:
            await abandon(sending)
            raise
        if decision.terminal is None:
            return await sending
        await abandon(sending)
        self._telemetry.upstream_abandoned.labels(ex.upstream or (ex.attempts.upstream if ex.attempts else "")).inc()
        refusal = await self._flow.refusal_response(ex, decision, dialect, parsed.model, parsed.stream)
        refusal.headers.append(rid(ex))
        return refusal
