"""The gateway app run in the test's own event loop: its lifespan entered, httpx talking ASGI to it.

For tests of one request path's behaviour; tests that need the real server (sockets, signals, the
HTTP parser) start the process instead (`conftest.running_gateway`).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from gateway.app import GatewayApp, create_app
from gateway.config.loader import parse_config
from gateway.guard.plan import PlanCheck
from gateway.settings import Settings


@contextlib.asynccontextmanager
async def in_process(config_yaml: str, tmp: Path,
                     env: dict[str, str] | None = None) -> AsyncIterator[tuple[GatewayApp, httpx.AsyncClient]]:
    """The app for `config_yaml` (its store: SQLite under `tmp`), started, and a client bound to it."""
    path = tmp / "gateway.yaml"
    path.write_text(config_yaml)
    check = PlanCheck()  # the app reuses the scoring runtime its config was checked with
    config = parse_config(config_yaml, str(path), env or {}, check=check)
    app = create_app(Settings(config_path=str(path)), config, check.runtime)
    async with app.starlette.router.lifespan_context(app.starlette):
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as client:
            yield app, client
