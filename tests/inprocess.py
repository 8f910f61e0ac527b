"""The gateway app run in the test's own event loop: its lifespan entered, httpx talking ASGI to it.

For tests of one request path's behaviour; tests that need the real server (sockets, signals, the
HTTP parser) start the process instead (`conftest.running_gateway`). With `upstream_app` (an ASGI app,
e.g. tests.upstream.create_upstream or tests.fakeopenai.fake_app; or upstream name -> app), every
configured upstream is that app served in memory (tests/memupstream.py: whole answers, no stream timing) instead of the loopback
servers the config names.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import httpx
from starlette.types import ASGIApp

from gateway.app import GatewayApp, create_app
from gateway.config.loader import parse_config
from gateway.guard.plan import PlanCheck
from gateway.settings import Settings
from tests.memupstream import memory_client


@contextlib.asynccontextmanager
async def in_process(config_yaml: str, tmp: Path, env: dict[str, str] | None = None,
                     upstream_app: ASGIApp | Mapping[str, ASGIApp] | None = None) -> AsyncIterator[tuple[GatewayApp, httpx.AsyncClient]]:
    """The app for `config_yaml` (its store: SQLite under `tmp`), started, and a client bound to it."""
    path = tmp / "gateway.yaml"
    path.write_text(config_yaml)
    check = PlanCheck()  # the app reuses the scoring runtime its config was checked with
    config = parse_config(config_yaml, str(path), env or {}, check=check)
    client = memory_client(upstream_app) if upstream_app is not None else None
    app = create_app(Settings(config_path=str(path)), config, check.runtime, upstream_client=client)
    async with app.starlette.router.lifespan_context(app.starlette):
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as client:
            yield app, client
