"""A bug behind a non-proxy route still answers in OpenAI's error shape (the proxy routes have their own
net, tested with the proxy)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from starlette.routing import Route

from gateway.app import create_app
from gateway.config import parse_config
from gateway.guard.plan import plan_issues
from gateway.settings import Settings

CONFIG = """
upstreams: [{name: u, base_url: "http://127.0.0.1:1/v1", models: ["*"]}]
applications: [{id: app, keys: [k]}]
admin: {tokens: [{token: t, role: central}]}
"""


def test_an_unexpected_error_in_an_admin_route_is_an_openai_shaped_500(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path))
    config = parse_config(CONFIG, str(tmp_path / "g.yaml"), {}, check=plan_issues)
    app = create_app(Settings(config_path=str(tmp_path / "g.yaml")), config)

    async def broken(request: object) -> None:
        raise TypeError("unhashable type: 'list'")  # what a fuzz run once hit in the stages API

    app.starlette.router.routes.append(Route("/v1/admin/broken", broken, methods=["GET"]))

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return await client.get("/v1/admin/broken")

    r = asyncio.run(go())
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"] == {"message": "The gateway failed to handle this request; the error is in its log.",
                                 "type": "server_error", "param": None, "code": "internal_error"}
    assert "unhashable" not in r.text  # the exception's text stays in the log
