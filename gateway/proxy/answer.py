"""The answer phases of a proxied request: check_answer (a whole answer, read then checked by the output
stages) or relay_stream (a stream relayed as it comes: held back by the stream guard where output stages
may act, watched by the monitor where they only monitor, else passed as it is)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from gateway.config.errors import format_path
from gateway.proxy.dialects import Dialect
from gateway.proxy.exchange import Exchange
from gateway.proxy.finish import Finisher, rid
from gateway.proxy.guard_flow import GuardFlow
from gateway.proxy.openai import OpenAIError, answer_too_deep, dumps_json, stream_error_event
from gateway.proxy.responses import JSON, RawResponse, RelayResponse, event_stream_headers
from gateway.proxy.sending import Sender
from gateway.proxy.stream_guard import StreamGuard, UnreadableStream
from gateway.proxy.stream_monitor import AnswerMonitor, EventRelay
from gateway.proxy.upstream import (Upstream, UpstreamResponse, UpstreamTimeout, UpstreamTooLarge,
                                    UpstreamUnreachable, client_response_headers)
from gateway.proxy.usage import Usage, answer_tokens
from gateway.proxy.walk import Found, Path
from gateway.scrub import SecretScrubber
from gateway.telemetry import Telemetry

log = logging.getLogger("gateway.proxy")
MAX_ERROR_BODY = 1024 * 1024  # an upstream's error answer, read whole to scrub and relay it


class Answering:
    """What the gateway makes of an upstream's answer, whole or streamed."""

    def __init__(self, flow: GuardFlow, sender: Sender, finisher: Finisher, telemetry: Telemetry,
                 scrub: SecretScrubber) -> None:
        self._flow = flow
        self._sender = sender
        self._finisher = finisher
        self._telemetry = telemetry
        self._scrub = scrub

    async def read_whole(self, upstream: Upstream, response: UpstreamResponse) -> bytes:
        """The upstream's whole answer (an error's within a smaller cap)."""
        ok = 200 <= response.status < 300
        try:
            return await response.read(upstream.config.max_response_bytes if ok else MAX_ERROR_BODY)
        except UpstreamTooLarge as exc:
            self._telemetry.upstream_errors.labels(upstream.name, "too_large").inc()
            raise OpenAIError(502, f"Upstream '{upstream.name}' answered {exc}, more than this gateway reads "
                                   "whole.", type="upstream_error", code="upstream_response_too_large") from None
        except (UpstreamTimeout, UpstreamUnreachable) as exc:
            raise self._sender.failure(upstream.name, exc) from None
        finally:
            response.close()

    async def check_answer(self, upstream: Upstream, response: UpstreamResponse, answer: bytes,
                           ex: Exchange) -> RawResponse:
        """A whole answer: its tokens counted, an error scrubbed (and put in OpenAI's shape), a 2xx with a
        body checked by the output stages."""
        ex.upstream_s = time.perf_counter() - ex.upstream_start
        ok = 200 <= response.status < 300
        if ok:
            self._finisher.count_tokens(ex, *answer_tokens(answer, ex.prompt_chars))
        if not ok:  # an error may echo the upstream's key ("Incorrect API key provided: sk-...")
            answer = self._scrub.bytes(answer)
        headers = [*client_response_headers(response.headers, self._scrub), rid(ex)]
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

    async def _guard_answer(self, answer: bytes, headers: list[tuple[bytes, bytes]], ex: Exchange) -> RawResponse:
        """Check a whole answer (refused if unreadable only when `ex.enforced`: some output stage may act;
        else it is only monitored); with `ex.whole`, an answer that passes is told as the event stream the
        client asked for."""
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
            refusal.headers.append(rid(ex))
            return refusal
        annotated = decision.changed or any(d.action or any(o.errors for o in d.outcomes) for d in ex.decisions)
        if annotated:
            payload["guardrail"] = ex.annotation(decision)
        if as_events:
            dumps_json(payload, answer_too_deep)  # fails here, as an error answer, not in the middle of the stream
            return RawResponse(200, event_stream_headers([*headers, *ex.guard_headers()]), dialect.events(payload))
        body = dumps_json(payload, answer_too_deep) if annotated else answer
        return RawResponse(200, [*headers, *ex.guard_headers()], body)

    def relay_stream(self, upstream: Upstream, response: UpstreamResponse, ex: Exchange) -> RelayResponse:
        """Relay the answer's events as they come: through the hold-back guard when output stages may act,
        watched by the monitoring ones (checked once it has left whole), else as they are."""
        dialect = ex.dialect
        headers = [*client_response_headers(response.headers, self._scrub), rid(ex), *ex.guard_headers()]
        state = {"status": response.status}

        def disconnected() -> None:
            state["status"] = 499  # nginx's "client closed request": the client left mid-stream

        ex.relayed = True
        relay: EventRelay | StreamGuard = EventRelay()
        if ex.output_stages and not ex.enforced:  # stages that only monitor watch it stream by
            relay = dialect.monitor(lambda answer: self._monitor_answer(dialect, answer, ex))
        elif ex.output_stages:  # stages that may act hold it back
            relay = self._flow.stream_guard(ex)
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
        usage = Usage()
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
            err = self._sender.failure(upstream.name, exc)
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
            self._flow.record_stream(relay.decisions, ex, relay.late if isinstance(relay, StreamGuard) else 0)
            self._finisher.count_tokens(ex, *usage.tokens(ex.prompt_chars))
            self._finisher.finish(ex, state["status"])
            if isinstance(relay, AnswerMonitor) and not relay.checked:  # cut short: check what it carried
                self._finisher.in_background(relay.check_once())


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
