"""Upstreams: routing a model name to the first matching upstream, pooled aiohttp sessions, header hygiene.

aiohttp rather than httpx on this path: measured here against the same mock, an httpx.AsyncClient
served 574 req/s at concurrency 1 and 413 at 16, an aiohttp session 1,713 and 5,851 (see README,
Benchmark). The rest of the gateway only sees `Upstream.send` and `UpstreamResponse`; `Upstream` itself
only needs an `UpstreamClient`, which an aiohttp session is as it stands (tests inject one over an ASGI
app: `create_app(..., upstream_client=...)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp
from yarl import URL

from gateway.config.schema import UpstreamConfig
from gateway.scrub import NO_SECRETS, SecretScrubber
from gateway.errors import UpstreamTimeout, UpstreamTooLarge, UpstreamUnreachable  # noqa: F401  (re-exported; defined there)

# RFC 9110 section 7.6.1 hop-by-hop headers, plus what a proxy must recompute itself.
HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection",
    b"te", b"trailer", b"transfer-encoding", b"upgrade", b"host", b"content-length",
})
# Client credentials and client-account headers: the gateway holds the upstream's credentials.
CLIENT_CREDENTIALS = frozenset({
    b"authorization", b"api-key", b"x-api-key", b"cookie", b"openai-organization", b"openai-project",
})
# The session negotiates and decodes content encoding itself; the client gets identity bodies. `Expect:
# 100-continue` is between the client and the gateway (which has read the body by then): forwarded, an
# upstream that ignores it held the request until its timeout.
REQUEST_DROP = HOP_BY_HOP | CLIENT_CREDENTIALS | {b"accept-encoding", b"expect"}
# The upstream's account (the gateway's, not the client's) stays out; x-guardrail-* names are the
# gateway's own: an upstream's would pass as the gateway's verdict (GUARD_PREFIX, any case: names are lowered).
RESPONSE_DROP = HOP_BY_HOP | {b"content-encoding", b"set-cookie", b"date", b"server", b"openai-organization",
                              b"openai-project"}
GUARD_PREFIX = b"x-guardrail-"
_ROUTE_CACHE_SIZE = 4096
# Azure OpenAI: these routes go to a deployment's URL (with api-version); all others to the v1 API.
AZURE_DEPLOYMENT_PATHS = frozenset({"/chat/completions", "/completions", "/embeddings"})


class UpstreamBody(Protocol):
    async def readany(self) -> bytes: ...  # the next piece of the body as it arrives; b"" at its end


class UpstreamAnswer(Protocol):
    """What `Upstream` reads of an answer (an aiohttp.ClientResponse as it stands); raw_headers: any case."""

    @property
    def status(self) -> int: ...
    @property
    def raw_headers(self) -> Iterable[tuple[bytes, bytes]]: ...
    @property
    def content(self) -> UpstreamBody: ...
    def close(self) -> None: ...  # drop the connection (or whatever the answer holds)


class UpstreamClient(Protocol):
    """What `Upstream` needs of its HTTP client: an aiohttp.ClientSession as it stands, no wrapper on the
    hot path. `request` returns once the answer's headers are in; its failures raise aiohttp.ClientError,
    OSError or TimeoutError (see `_mapped_errors`). The gateway's own deadlines wrap both calls."""

    def request(self, method: str, url: URL, *, data: Any = None, headers: Any = None,
                allow_redirects: bool = True) -> Awaitable[UpstreamAnswer]: ...
    async def close(self) -> None: ...


# Builds an upstream's client inside the event loop (Upstream.open); None: a pooled aiohttp session.
ClientFactory = Callable[[UpstreamConfig], UpstreamClient]


@dataclass(slots=True)
class UpstreamResponse:
    """An upstream answer whose body is read (or streamed) separately, each chunk within the idle deadline
    and all of it within the exchange's total deadline (`deadline`, in the event loop's clock)."""

    status: int
    headers: list[tuple[bytes, bytes]]  # lower-cased names, as received
    _response: UpstreamAnswer
    idle_s: float = 300.0
    deadline: float = math.inf
    on_close: Callable[[], None] | None = None  # called once when the exchange ends (routing's in-flight count)

    @property
    def content_type(self) -> bytes:
        return next((v for k, v in self.headers if k == b"content-type"), b"")

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body; past `limit` bytes, UpstreamTooLarge (the connection is then dropped)."""
        parts, size = [], 0
        while chunk := await self._next():
            size += len(chunk)
            if limit is not None and size > limit:
                raise UpstreamTooLarge(f"more than {limit} bytes")
            parts.append(chunk)
        return b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        while chunk := await self._next():
            yield chunk

    async def _next(self) -> bytes:
        """The next piece of the body (b"" at its end), or UpstreamTimeout naming the deadline that fired."""
        left = self.deadline - asyncio.get_running_loop().time()
        idle = self.idle_s < left
        try:
            async with asyncio.timeout(self.idle_s if idle else max(left, 0.0)):
                with _mapped_errors():
                    return await self._response.content.readany()
        except TimeoutError:
            raise UpstreamTimeout(f"no data for {self.idle_s:g} s" if idle else "the exchange ran past its "
                                  "total deadline", "idle" if idle else "total") from None

    def close(self) -> None:
        """Drop the connection (a half-read body cannot go back to the pool)."""
        self._response.close()
        done, self.on_close = self.on_close, None
        if done is not None:
            done()


@dataclass(slots=True)
class Upstream:
    """One configured upstream and its own connection pool, opened inside the event loop."""

    config: UpstreamConfig
    auth_headers: list[tuple[str, str]] = field(default_factory=list)
    client_factory: ClientFactory | None = None  # None: a pooled aiohttp session (production)
    _session: UpstreamClient | None = None
    _urls: dict[str, URL] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

    def url(self, path: str, model: str | None = None) -> URL:
        """The URL of `path` (under /v1 at OpenAI) at this upstream; Azure's depends on the model too."""
        key = path if model is None or self.config.kind != "azure" else f"{path}\0{model}"
        # Parsed once per path: URL parsing is a measurable share of aiohttp's per-request cost.
        url = self._urls.get(key)
        if url is None:
            if len(self._urls) >= _ROUTE_CACHE_SIZE:
                self._urls.clear()  # Azure's key holds a model name, which may come from clients
            url = self._urls[key] = self._make_url(path, model)
        return url

    def _make_url(self, path: str, model: str | None) -> URL:
        cfg = self.config
        if cfg.kind != "azure":
            return URL(cfg.base_url + path)
        if model is not None and path in AZURE_DEPLOYMENT_PATHS:
            deployment = quote(cfg.deployments.get(model, model), safe="")
            if deployment.strip(".") == "":  # a client's model "." or "..": kept a segment the URL never resolves
                deployment = deployment.replace(".", "%2E") or "%20"
            return URL(cfg.base_url + "/openai/deployments/").join(URL(
                deployment + path, encoded=True)).with_query({"api-version": cfg.api_version or ""})
        return URL(cfg.base_url + "/openai/v1" + path)

    def body_model(self, path: str, model: str | None) -> str | None:
        """The model name the body must carry instead of `model`, or None: Azure's v1 API names the
        deployment there."""
        cfg = self.config
        if cfg.kind != "azure" or model is None or path in AZURE_DEPLOYMENT_PATHS:
            return None
        deployment = cfg.deployments.get(model)
        return deployment if deployment is not None and deployment != model else None

    async def open(self) -> None:
        cfg = self.config
        if self.client_factory is not None:
            self._session = self.client_factory(cfg)
            return
        connector = aiohttp.TCPConnector(limit=cfg.max_connections, limit_per_host=0, keepalive_timeout=30)
        # connect is aiohttp's; first byte, idle and total are ours (sock_read would also time the wait for
        # the headers, which is first_byte_timeout_s here)
        timeout = aiohttp.ClientTimeout(total=None, connect=cfg.connect_timeout_s, sock_read=None)
        # DummyCookieJar: one session serves every application, so an upstream's Set-Cookie must never
        # be stored and replayed on another client's request.
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False,
                                              cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=True)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def send(self, method: str, path: str, headers: list[tuple[str, str]], body: Any = None,
                   timeout_s: float | None = None, model: str | None = None) -> UpstreamResponse:
        """Send a request and wait for the answer's headers. Deadlines: connecting (connect_timeout_s), the
        headers (first_byte_timeout_s), and everything including the body (total_timeout_s, or `timeout_s`
        when it is shorter); each raises UpstreamTimeout naming which one fired. `body`: bytes, or an async
        iterator of bytes (a pass-through body streamed on as it arrives). `model`: the model it is sent
        for (an Azure URL names its deployment)."""
        assert self._session is not None, "Upstream.open() was not awaited"
        cfg = self.config
        total = cfg.total_timeout_s if timeout_s is None else min(timeout_s, cfg.total_timeout_s)
        deadline = asyncio.get_running_loop().time() + total
        first = min(cfg.first_byte_timeout_s, total)
        try:
            async with asyncio.timeout(first):
                with _mapped_errors(cfg.connect_timeout_s):
                    response = await self._session.request(method, self.url(path, model), data=body, headers=headers,
                                                           allow_redirects=False)
        except TimeoutError:
            raise UpstreamTimeout(f"no response headers within {first:g} s", "first_byte") from None
        raw = [(k.lower(), v) for k, v in response.raw_headers]
        return UpstreamResponse(response.status, raw, response, cfg.idle_timeout_s, deadline)

    async def fetch(self, method: str, path: str, headers: list[tuple[str, str]], body: bytes | None = None,
                    timeout_s: float | None = None, model: str | None = None) -> tuple[int, bytes]:
        """A whole small exchange (model lists, corrector calls): status and body."""
        response = await self.send(method, path, headers, body, timeout_s, model)
        try:
            return response.status, await response.read(self.config.max_response_bytes)
        finally:
            response.close()


@contextlib.contextmanager
def _mapped_errors(connect_s: float | None = None) -> Iterator[None]:
    """Turn aiohttp's and asyncio's failures into the two kinds the handler answers differently."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError:
        raise UpstreamTimeout(f"no connection within {connect_s:g} s" if connect_s else "connect timeout",
                              "connect") from None
    except TimeoutError as exc:  # asyncio.TimeoutError is TimeoutError; so is aiohttp's ServerTimeoutError
        raise UpstreamTimeout(type(exc).__name__) from None
    except (aiohttp.ClientError, OSError) as exc:
        raise UpstreamUnreachable(type(exc).__name__) from None


def make_upstream(config: UpstreamConfig, client: ClientFactory | None = None) -> Upstream:
    """The upstream of `config`; `client` builds its HTTP client when it opens (default: aiohttp)."""
    extra = [(k.lower(), v) for k, v in config.headers.items()]
    if config.api_key:  # Azure OpenAI takes its key in an api-key header
        extra.append(("api-key", config.api_key) if config.kind == "azure"
                     else ("authorization", "Bearer " + config.api_key))
    return Upstream(config, extra, client)


@dataclass(frozen=True, slots=True)
class Route:
    upstream: Upstream
    label: str  # the config glob that matched: a bounded metric label, unlike the client's model name


class Router:
    """First upstream whose model glob matches wins; results are cached with a bound."""

    def __init__(self, upstreams: Iterable[Upstream]) -> None:
        self._table = [
            (re.compile(fnmatch.translate(glob)), glob, upstream)
            for upstream in upstreams for glob in upstream.config.models
        ]
        self._cache: dict[str, Route | None] = {}

    def route(self, model: str) -> Route | None:
        try:
            return self._cache[model]
        except KeyError:
            pass
        found = next((Route(up, glob) for rx, glob, up in self._table if rx.match(model)), None)
        if len(self._cache) >= _ROUTE_CACHE_SIZE:
            self._cache.clear()  # model names come from clients: never let them grow memory
        self._cache[model] = found
        return found


def upstream_request_headers(raw: Iterable[tuple[bytes, bytes]], upstream: Upstream) -> list[tuple[str, str]]:
    """The client's headers minus hop-by-hop and credentials, plus the upstream's own."""
    raw = list(raw)
    named = _connection_tokens(raw)
    out = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw if k not in REQUEST_DROP and k not in named]
    out.extend(upstream.auth_headers)
    return out


def client_response_headers(raw: list[tuple[bytes, bytes]],
                            scrub: SecretScrubber = NO_SECRETS) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers a client may see (names already lower-cased), the upstreams'
    secrets redacted from their values."""
    named = _connection_tokens(raw)
    return scrub.headers([(k, v) for k, v in raw
                          if k not in RESPONSE_DROP and k not in named and not k.startswith(GUARD_PREFIX)])


def _connection_tokens(raw: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    tokens = [v for k, v in raw if k == b"connection"]
    return frozenset(t.strip().lower() for v in tokens for t in v.split(b",")) if tokens else frozenset()
