"""send_upstream: a request sent through its model group (retries and fallbacks: proxy/dispatch.py), and an
upstream's failure told in OpenAI's shape."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from gateway.proxy.exchange import Exchange
from gateway.proxy.openai import OpenAIError, ParsedRequest, dumps_json, request_too_deep
from gateway.proxy.dispatch import Attempts, Dispatcher
from gateway.proxy.routing import Group, Target
from gateway.proxy.upstream import Upstream, UpstreamResponse, UpstreamTimeout, UpstreamUnreachable
from gateway.telemetry import Telemetry

log = logging.getLogger("gateway.proxy")


@dataclass(frozen=True, slots=True)
class Sending:
    """What routing needs to send one request to any deployment: headers and body per upstream/model."""

    target: Target
    path: str
    headers: Callable[[Upstream], list[tuple[str, str]]]
    body: Callable[[str | None], bytes]
    model: str | None = None  # the request's model
    method: str = "POST"
    serves: Callable[[Group], bool] | None = None  # which fallback groups may take it (see Dispatcher.send)


class Sender:
    def __init__(self, dispatch: Dispatcher, telemetry: Telemetry) -> None:
        self._dispatch = dispatch
        self._telemetry = telemetry

    async def send(self, sending: Sending, ex: Exchange) -> tuple[UpstreamResponse, Upstream]:
        """The request through its model group: retries and fallbacks before the first byte (proxy/dispatch.py)."""
        ex.upstream_start = time.perf_counter()
        record = ex.attempts = Attempts()
        try:
            response, upstream = await self._dispatch.send(sending.target, sending.method, sending.path,
                                                           sending.headers, sending.body, record, sending.model,
                                                           sending.serves)
        except (UpstreamTimeout, UpstreamUnreachable) as exc:
            ex.upstream = record.upstream
            raise self.failure(record.upstream, exc, counted=True) from None
        ex.upstream = upstream.name
        return response, upstream

    def failure(self, upstream: str, exc: UpstreamTimeout | UpstreamUnreachable, counted: bool = False) -> OpenAIError:
        """An upstream's timeout or unreachability, counted (unless routing did) and logged, as the client's error."""
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


def bodies(parsed: ParsedRequest, body: bytes) -> Callable[[str | None], bytes]:
    """The body as sent, or re-encoded with another model name (an alias, a deployment's name, a fallback)."""
    def body_for(model: str | None) -> bytes:
        if model is None or model == parsed.model:
            return body
        return dumps_json({**orjson.loads(body), "model": model}, request_too_deep)
    return body_for


async def abandon(sending: asyncio.Future[tuple[UpstreamResponse, Upstream]]) -> None:
    """Stop an upstream call nobody will read: cancel it, or close the answer that already came."""
    sending.cancel()
    done = await asyncio.gather(sending, return_exceptions=True)
    if isinstance(done[0], tuple):  # (the answer, the deployment that gave it): the connection is dropped
        done[0][0].close()
