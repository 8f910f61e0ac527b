"""create_app(): the one composition root. The app owns its config, clients, registry and handler."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from gateway.admin.api import admin_api
from gateway.admin.openapi import openapi_document
from gateway.config import GatewayConfig, load_config
from gateway.console import console_enabled, console_routes
from gateway.policies.registry import Registry
from gateway.proxy.admission import Admission
from gateway.proxy.handler import ProxyHandler, not_passed
from gateway.proxy.passthrough import acceptable
from gateway.proxy.limits import Limiter
from gateway.proxy.openai import CHAT, COMPLETIONS, EMBEDDINGS, MODERATIONS, RESPONSES, Endpoint, OpenAIError
from gateway.errors import internal_error, to_openai
from gateway.wire import JSON, RawResponse
from gateway.guard.monitor import MonitorLog
from gateway.guard.plan import PlanCheck, build_plan
from gateway.metrics.context import Complete
from gateway.metrics.pii import PiiMetric
from gateway.proxy.corrector import make_completer
from gateway.proxy.routing import Routing
from gateway.proxy.guard_flow import GuardFlow
from gateway.proxy.upstream import ClientFactory, Router, Upstream, make_upstream
from gateway.scoring.runtime import ScoringRuntime
from gateway.scrub import SecretScrubber
from gateway.settings import Settings
from gateway.store import StoreError, open_store
from gateway.telemetry import RegistryCollector, Telemetry

log = logging.getLogger("gateway.app")


def store_url(config: GatewayConfig, config_path: str) -> str:
    """The configured store, else SQLite in $GATEWAY_DATA_DIR or in `data/` next to the config file."""
    if config.store.url:
        return config.store.url
    directory = os.environ.get("GATEWAY_DATA_DIR") or Path(config_path).resolve().parent / "data"
    return f"sqlite:///{Path(directory) / 'gateway.db'}"


class GatewayApp:
    """The ASGI entry point: proxy routes go straight to the handler, everything else to Starlette.

    Starlette's routing and middleware stack cost about a tenth of the gateway's CPU per proxied call
    (measured with py-spy under load), so the five hot POST routes are dispatched by a dict lookup.
    """

    def __init__(self, starlette: Starlette, handler: ProxyHandler, routes: dict[str, Endpoint],
                 registry: Registry | None = None, admission: Admission | None = None) -> None:
        self.starlette = starlette
        self.state = starlette.state
        self._handler = handler
        self._routes = routes
        self._registry = registry
        self.admission = admission if admission is not None else Admission(1024, 256, 2.0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._handler.passing.enabled and scope["path"].startswith("/v1/") \
                and (scope["method"] != "POST" or scope["path"] not in self._routes) \
                and self._handler.passing.first(scope["path"][3:]) is not None:
            # another /v1 route that an upstream passes through (upstreams[].passthrough), any method
            await self._passthrough(scope, receive, send)
            return
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self._routes.get(scope["path"])
            if endpoint is not None or scope["path"] == "/v1/guard/evaluate":
                registry = self._registry
                if registry is not None and not registry.loaded:  # fail closed: the stored policies are unknown
                    registry.refused += 1
                    await _NOT_LOADED(scope, receive, send)
                    return
            if endpoint is not None:
                refused = await self.admission.acquire()
                if refused is not None:  # shed at once: no body read, no authentication, no guard work
                    await self._handler.overloaded(endpoint, refused)(scope, receive, send)
                    return
                try:
                    response = await self._handler.proxy(Request(scope, receive), endpoint)
                    await response(scope, receive, send)
                finally:
                    self.admission.release()
                return
        await self.starlette(scope, receive, send)

    async def _passthrough(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A pass-through request: refused while the policies are unknown, admitted like a proxied one."""
        registry = self._registry
        if registry is not None and not registry.loaded:
            registry.refused += 1
            await _NOT_LOADED(scope, receive, send)
            return
        refused = await self.admission.acquire()
        if refused is not None:
            await self._handler.overloaded(PASSTHROUGH, refused)(scope, receive, send)
            return
        try:
            response = await self._handler.passthrough(Request(scope, receive))
            await response(scope, receive, send)
        finally:
            self.admission.release()


PASSTHROUGH = Endpoint("passthrough", "", (), False)  # the metric label of pass-through refusals
# Guarded traffic before the store was ever read: the stored policies that apply are unknown.
_NOT_LOADED = RawResponse(503, [JSON, (b"retry-after", b"1")], OpenAIError(
    503, "The gateway has not loaded its policies from the policy store yet, so it cannot guard this request; "
         "retry shortly.", type="server_error", code="policies_not_loaded").body())


# The five proxied routes, which GatewayApp dispatches before Starlette.
PROXIED = {"/v1/chat/completions": CHAT, "/v1/completions": COMPLETIONS, "/v1/embeddings": EMBEDDINGS,
           "/v1/responses": RESPONSES, "/v1/moderations": MODERATIONS}


def create_app(settings: Settings, config: GatewayConfig | None = None, scoring: ScoringRuntime | None = None,
               upstream_client: ClientFactory | None = None) -> GatewayApp:
    """Build the ASGI app; `config` defaults to loading `settings.config_path` (raises ConfigError).

    The app owns its models: `scoring` (default: a new runtime with the config's `scoring` settings) is
    what every model-based metric of its plans scores with. A caller that compiled the config already
    (`PlanCheck`) passes the runtime it used, so the models it loaded do not load again.
    `upstream_client` builds each upstream's HTTP client (default: an aiohttp session; tests: in memory)."""
    if config is None:
        check = PlanCheck()
        config = load_config(settings.config_path, check=check)
        scoring = scoring if scoring is not None else check.runtime
    runtime = scoring if scoring is not None else ScoringRuntime(config.scoring)
    parts = _Parts.build(settings, config, runtime, upstream_client)
    api = admin_api(config, parts.flow, parts.monitor, parts.complete, parts.registry, parts.handler.keyring)
    openapi = orjson.dumps(openapi_document(api))

    async def openapi_json(request: Request) -> Response:
        return Response(openapi, media_type="application/json")

    routes = [
        *api,
        Route("/v1/admin/openapi.json", openapi_json, methods=["GET"]),
        Route("/v1/models", parts.handler.list_models, methods=["GET"]),
        Route("/v1/models/{id:path}", parts.handler.get_model, methods=["GET"]),
        # POST is served before Starlette (GatewayApp); these make another method a 405, not a 404
        *(Route(path, bad_method, methods=["POST"]) for path in PROXIED),
        *_probes(parts),
        # The web console (static files, a client of the admin API): where admin tokens exist, unless
        # server.console is false.
        *(console_routes() if console_enabled(config) else []),
    ]
    handlers = {404: not_found, 405: bad_method, Exception: server_error}
    app = Starlette(routes=routes, lifespan=_lifespan(parts), exception_handlers=handlers)  # type: ignore[arg-type]
    app.state.config = config
    app.state.telemetry = parts.telemetry
    server = config.server
    admission = Admission(server.max_concurrent_requests, server.max_pending_requests, server.pending_timeout_s)
    parts.telemetry.admitted.set_function(lambda: admission.in_flight)
    parts.telemetry.pending.set_function(lambda: admission.waiting)
    return GatewayApp(app, parts.handler, dict(PROXIED), parts.registry, admission)


@dataclass
class _Parts:
    """What one app is built from, wired together once: the upstream clients, the guard flow and its
    monitoring log, the proxy handler, the policy registry over the store, the telemetry."""

    config: GatewayConfig
    telemetry: Telemetry
    upstreams: list[Upstream]
    monitor: MonitorLog
    complete: Complete
    flow: GuardFlow
    handler: ProxyHandler
    registry: Registry
    state: dict[str, bool] = field(default_factory=lambda: {"ready": False})

    @classmethod
    def build(cls, settings: Settings, config: GatewayConfig, runtime: ScoringRuntime,
              client: ClientFactory | None = None) -> _Parts:
        telemetry = Telemetry(scoring=lambda: runtime)
        upstreams = [make_upstream(u, client) for u in config.upstreams]
        router = Router(upstreams)
        monitor = MonitorLog(PiiMetric(), size=config.server.monitoring_buffer, outbox=config.store.outbox)
        complete = make_completer(Routing(upstreams, config.routing))  # groups and aliases serve correctors too
        scrub = SecretScrubber.from_upstreams(config.upstreams)  # the upstreams' secrets, out of errors and logs
        flow = GuardFlow(build_plan(config, runtime=runtime), telemetry, monitor, complete, scrub)
        limits_url = config.store.url if (config.store.url or "").startswith("redis://") else None
        handler = ProxyHandler(config, upstreams, router, telemetry, flow, scrub,
                               Limiter(limits_url, config.store.prefix))
        registry = Registry(config, open_store(store_url(config, settings.config_path), config.store.prefix,
                                               config.store.max_records, config.store.timeout_s), flow, runtime)
        telemetry.registry.register(RegistryCollector(registry, monitor))
        registry.keyring = handler.keyring
        return cls(config, telemetry, upstreams, monitor, complete, flow, handler, registry)


def _lifespan(parts: _Parts) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    config, registry, state = parts.config, parts.registry, parts.state

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for upstream in parts.upstreams:
            await upstream.open()
        # Everything built so far lives as long as the process: keep it out of the GC's scans so
        # collections triggered by request garbage stay short (they show up in p99 latency).
        try:  # stored policies and stages join the config's before the first request
            await asyncio.wait_for(registry.load(), timeout=max(5.0, config.store.timeout_s * 4))
        except (StoreError, TimeoutError) as exc:
            # Not ready, and guarded requests get 503, until `follow` has read the store (it retries).
            registry.degraded = str(exc) or type(exc).__name__
            log.warning("store unreachable at start; refusing guarded traffic until it is loaded",
                        extra={"fields": {"error": registry.degraded}})
        registry.start(parts.monitor)
        gc.freeze()
        state["ready"] = True
        try:
            yield
        finally:
            state["ready"] = False
            await parts.handler.drain(timeout_s=5.0)
            await registry.stop()
            for upstream in parts.upstreams:
                await upstream.close()

    return lifespan


def _probes(parts: _Parts) -> list[Route]:
    """/healthz, /readyz and /metrics."""
    registry, state, telemetry = parts.registry, parts.state, parts.telemetry

    async def healthz(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    async def readyz(request: Request) -> Response:
        # Not ready until the store was read once; afterwards a store that is unreachable (`degraded`) or
        # that came back with less than the plan (`regressed`) leaves the replica ready: it enforces its
        # last good plan, and taking every replica out of the load balancer would be an outage.
        if not registry.loaded:
            store = f"not loaded: {registry.degraded or registry.unloadable or 'loading'}"
        elif registry.regressed:
            store = f"regressed: {registry.regressed}"
        else:
            store = f"degraded: {registry.degraded}" if registry.degraded else "ok"
        checks = {"config": "ok", "upstream_clients": "ok" if state["ready"] else "starting", "store": store}
        ok = state["ready"] and registry.loaded
        body = orjson.dumps({"status": "ready" if ok else "not_ready", "checks": checks})
        return Response(body, status_code=200 if ok else 503, media_type="application/json")

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(telemetry.registry), media_type=CONTENT_TYPE_LATEST)

    return [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"])]


async def not_found(request: Request, exc: Exception) -> RawResponse:
    path = request.url.path
    err = (not_passed(path[3:]) if path.startswith("/v1/") and acceptable(path[3:])
           else OpenAIError(404, f"Unknown path {path}.", code="unknown_url"))
    return RawResponse(404, [JSON], err.body())


async def bad_method(request: Request, exc: Exception) -> RawResponse:
    err = OpenAIError(405, f"Method {request.method} is not allowed on {request.url.path}.",
                      code="method_not_allowed")
    return RawResponse(405, [JSON], err.body())


async def server_error(request: Request, exc: Exception) -> RawResponse:
    # A bug behind an admin or monitoring route still answers in OpenAI's shape; Starlette logs
    # the traceback. The proxy routes have their own net (ProxyHandler.proxy).
    err = to_openai(exc) or internal_error("The gateway failed to handle this request; the error is in its log.")
    return RawResponse(err.status, [JSON], err.body())


def app_from_env() -> GatewayApp:
    """Factory for ASGI servers started by hand: `uvicorn --factory gateway.app:app_from_env`."""
    return create_app(Settings.from_env())
