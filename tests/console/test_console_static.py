"""The console's files without a browser: headers and CSP on every answer, /console redirects, every
module that index.html and the imports reference resolves, the vendored files match VERSIONS.txt, no
HTML-injection API or inline script anywhere, and the wheel carries the console."""

from __future__ import annotations

import hashlib
from gateway.guard.plan import plan_issues
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gateway.console import CSP, console_routes

STATIC = Path(__file__).resolve().parents[2] / "gateway" / "console" / "static"
ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted(p for p in STATIC.rglob("*.js") if "vendor" not in p.parts)


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(Starlette(routes=console_routes()))


def test_headers_and_csp_on_every_answer(client: TestClient) -> None:
    assert CSP == ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                   "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
    first = client.get("/console/")
    for r in (first, client.get("/console/app.js"), client.get("/console/vendor/preact.module.js"),
              client.get("/console/no-such-file.js"),
              client.get("/console/app.js", headers={"if-none-match": client.get("/console/app.js").headers["etag"]})):
        assert r.headers["content-security-policy"] == CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["cross-origin-opener-policy"] == "same-origin"
        assert r.headers["cache-control"] == "no-cache"
        assert "camera=()" in r.headers["permissions-policy"]
    assert first.status_code == 200 and 'id="root"' in first.text
    assert client.get("/console/no-such-file.js").status_code == 404
    assert client.get("/console/app.js", headers={"if-none-match": client.get("/console/app.js").headers["etag"]}).status_code == 304
    assert client.get("/console/app.js").headers["content-type"].startswith("text/javascript")


def test_console_without_slash_redirects(client: TestClient) -> None:
    r = client.get("/console", follow_redirects=False)
    assert r.status_code in (307, 308) and r.headers["location"].endswith("/console/")


def test_every_referenced_file_resolves() -> None:
    index = (STATIC / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"#]+)"', index)
    assert {"app.js", "console.css", "favicon.svg"} <= set(refs)
    todo = [STATIC / r for r in refs]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        assert path.is_file(), f"{path.relative_to(STATIC)} is referenced but missing"
        if path in seen or path.suffix != ".js":
            seen.add(path)
            continue
        seen.add(path)
        for spec in re.findall(r'(?:import|export)\b[^"\']*?from\s*["\']([^"\']+)["\']', path.read_text()):
            assert spec.startswith("./") or spec.startswith("../"), f"{path.name}: bare import {spec!r}"
            todo.append((path.parent / spec).resolve())
    assert STATIC / "vendor" / "hooks.module.js" in seen and len([p for p in seen if p.suffix == ".js"]) >= 12


def test_vendored_files_are_the_pinned_ones() -> None:
    versions = (STATIC / "vendor" / "VERSIONS.txt").read_text()
    assert "Preact 10.29.8" in versions and "htm 3.1.1" in versions
    for digest, name in re.findall(r"^([0-9a-f]{64})\s+(\S+)$", versions, re.M):
        assert hashlib.sha256((STATIC / "vendor" / name).read_bytes()).hexdigest() == digest, name
    assert "MIT" in (STATIC / "vendor" / "LICENSES.txt").read_text()


BANNED = ["dangerouslySetInnerHTML", "innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
          "new Function", "javascript:", "localStorage.setItem"]


def test_no_html_injection_apis_and_no_inline_script() -> None:
    assert len(SOURCES) >= 9
    for path in SOURCES:
        text = path.read_text()
        for word in BANNED:
            assert word not in text, f"{path.relative_to(STATIC)} uses {word}"
    index = (STATIC / "index.html").read_text()
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", index), "inline <script> in index.html"
    assert not re.search(r"\son[a-z]+=", index), "an on*= handler attribute in index.html"
    assert "<style" not in index and "style=" not in index
    assert "http://" not in index and "https://" not in index  # nothing from another origin


def test_the_token_is_never_put_in_a_url() -> None:
    api = (STATIC / "api.js").read_text()
    assert "authorization" in api and "/v1/admin/session" in (STATIC / "app.js").read_text()
    for path in SOURCES:  # G2: the session is an HttpOnly cookie; the page stores no token anywhere
        assert "sessionStorage" not in path.read_text() and "localStorage" not in path.read_text(), path.name
        assert not re.search(r"[?&]token=", path.read_text()), path.name


def test_wheel_contains_the_console(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q",
                    "-w", str(tmp_path)], cwd=ROOT, check=True, timeout=300, capture_output=True)
    wheel = next(tmp_path.glob("guardrail_gateway-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in [*SOURCES, STATIC / "index.html", STATIC / "console.css", STATIC / "favicon.svg",
                 *sorted((STATIC / "vendor").iterdir())]:
        assert "gateway/console/static/" + path.relative_to(STATIC).as_posix() in names, path


def _console_status(tmp_path: Path, extra: str, monkeypatch: pytest.MonkeyPatch) -> int:
    import asyncio

    import httpx

    from gateway.app import create_app
    from gateway.config import parse_config
    from gateway.settings import Settings

    monkeypatch.setenv("GATEWAY_DATA_DIR", str(tmp_path))
    yaml = 'upstreams: [{name: u, base_url: "http://127.0.0.1:1/v1", models: ["*"]}]\n' + extra
    app = create_app(Settings(config_path=str(tmp_path / "g.yaml")), parse_config(yaml, str(tmp_path / "g.yaml"), {}, check=plan_issues))

    async def go() -> int:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            return (await client.get("/console/")).status_code

    return asyncio.run(go())


def test_server_console_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On by default where admin tokens exist, `server.console: false` leaves it out (404), and without
    admin tokens there is nothing to sign in with, so it is not served; the demo banner names its URL."""
    from gateway.config import parse_config
    from gateway.console import console_url

    tokens = "admin: {tokens: [{token: t0k, role: central}]}\n"
    assert _console_status(tmp_path, tokens, monkeypatch) == 200
    assert _console_status(tmp_path, tokens + "server: {console: false}\n", monkeypatch) == 404
    assert _console_status(tmp_path, "", monkeypatch) == 404
    with_tokens = parse_config('upstreams: [{name: u, base_url: "http://x/v1", models: ["*"]}]\n' + tokens, "g.yaml", {}, check=plan_issues)
    assert console_url(with_tokens, "127.0.0.1", 8080) == "http://127.0.0.1:8080/console/ (admin token t0k)"
    demo = parse_config((ROOT / "config" / "gateway.yaml").read_text(), "gateway.yaml", {}, check=plan_issues)
    assert console_url(demo, "127.0.0.1", 8080) == "http://127.0.0.1:8080/console/ (admin token admin-demo-token)"
