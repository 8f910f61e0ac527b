"""Who may ask, and how much: the key (authenticate), its allowed models and rate limits (govern), and the
request body within the gateway's cap (read whole, or streamed on)."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request

from gateway.errors import GatewayError
from gateway.proxy.auth import Entry, KeyRing, bearer
from gateway.proxy.exchange import Exchange
from gateway.proxy.limits import Limiter, Verdict
from gateway.proxy.openai import OpenAIError
from gateway.proxy.usage import prompt_estimate
from gateway.telemetry import Telemetry


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


class _BodyTooLarge(GatewayError):
    """A streamed request body went past the gateway's body cap (answered 413)."""


class Gate:
    """The checks a request passes before the gateway does anything for it."""

    def __init__(self, keys: KeyRing, limiter: Limiter, telemetry: Telemetry, max_body: int) -> None:
        self._keys = keys
        self._limiter = limiter
        self._telemetry = telemetry
        self.max_body = max_body

    def authenticate(self, request: Request, ex: Exchange) -> Entry:
        """The key's entry (its application and rules): 401 for a missing, unknown or expired key."""
        key = bearer(header(request, b"authorization")) or header(request, b"x-api-key") or header(request,
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

    async def govern(self, entry: Entry, model: str | None, ex: Exchange, body: bytes | None = None) -> Verdict | None:
        """Allowed models (when the request names one), then the request and token limits (one atomic
        check for all of them), reserving the prompt's estimate from `body` from the token limits until
        the answer's usage settles it (Finisher): at most half the tightest token limit, so no single
        request holds a whole minute."""
        for rule, who in ((entry.app_rule, "application"), (entry.key_rule, "key")):
            if rule is not None and model is not None and not rule.allows(model):
                raise OpenAIError(403, f"This {who} may not use the model '{model}'.", code="model_not_allowed",
                                  param="model")
        cells = Limiter.cells(entry.app.id, entry.app_rule, entry.key_id, entry.key_rule)
        if not cells:
            return None
        token_limits = [c.limit for c in cells if c.kind == "tokens"]
        reserve_tokens = min(prompt_estimate(body), min(token_limits) // 2) if token_limits and body else 0
        verdict = await self._limiter.check(cells, reserve_tokens)
        if verdict.denied is not None:
            self._telemetry.rate_limited.labels(ex.application, verdict.denied.split()[0]).inc()
            raise RateLimited(verdict)
        ex.cells, ex.verdict = cells, verdict
        if token_limits:
            ex.reserved_tokens = reserve_tokens
        return verdict

    async def read_body(self, request: Request) -> bytes:
        declared = header(request, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise too_large(self.max_body)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.max_body:
                raise too_large(self.max_body)
            chunks.append(chunk)
        return b"".join(chunks)

    def stream_body(self, request: Request, state: dict[str, bool]) -> AsyncIterator[bytes] | None:
        """A request body streamed on within the body cap (state['too_large'] once it went past,
        state['client_gone'] once the client left before sending it all, state['body_done'] once it
        arrived whole), or None."""
        declared = header(request, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            raise too_large(self.max_body)
        if (declared is None or declared == "0") and header(request, b"transfer-encoding") is None:
            return None
        limit = self.max_body

        async def chunks() -> AsyncIterator[bytes]:
            size = 0
            try:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        state["too_large"] = True
                        raise _BodyTooLarge()
                    if chunk:
                        yield chunk
                state["body_done"] = True
            except ClientDisconnect:  # the upstream client sees a broken body: the failure is the client's
                state["client_gone"] = True
                raise
        return chunks()


def header(request: Request, name: bytes) -> str | None:
    """One header from the raw ASGI list: cheaper than building Starlette's Headers per request."""
    for key, value in request.scope["headers"]:
        if key == name:
            return value.decode("latin-1")
    return None


def too_large(limit: int) -> OpenAIError:
    return OpenAIError(413, f"The request body is larger than this gateway accepts ({limit} bytes).",
                       code="request_too_large")
