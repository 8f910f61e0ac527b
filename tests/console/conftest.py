"""Fixtures for the console's browser tests: one real gateway process (SQLite store in a temp dir, a
central and an application admin token, a config policy and a config stage) in front of the test
upstream, and Debian's Chromium driven by Playwright (no browser download: `executable_path`).

A missing Chromium or Playwright fails the browser tests when CI=true (so a missing install step cannot
hide behind a green run) and skips them elsewhere, naming the install command."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Gateway, running_gateway

CENTRAL, APP_TOKEN = "admin-central-console", "admin-app-a-console"
KEY_A, KEY_B = "sk-console-app-a", "sk-console-app-b"
INSTALL = "apt-get install -y chromium && .venv/bin/pip install -e '.[test]'"


def console_config(upstream: str, port: int) -> str:
    return f"""
server: {{host: 127.0.0.1, port: {port}}}
upstreams: [{{name: main, base_url: "{upstream}", models: ["gpt-*", "gen-*"]}}]
applications:
  - {{id: app-a, keys: ["{KEY_A}"]}}
  - {{id: app-b, keys: ["{KEY_B}"]}}
admin:
  tokens:
    - {{token: {CENTRAL}, role: central}}
    - {{token: {APP_TOKEN}, role: "app:app-a"}}
policies:
  - {{id: config_words, type: contains, rule: "No configured words", keywords: ["configured-word"]}}
stages:
  - name: config-input
    scope: central
    on: input
    rulesets:
      - name: words
        rules: [{{metric: config_words}}]
        action: {{type: block, message: "Blocked by the config stage."}}
"""


@pytest.fixture(scope="module")
def console_gw(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("console")
    with running_gateway(tmp, lambda port: console_config(upstream, port),
                         env={"GATEWAY_DATA_DIR": str(tmp / "data")}) as gw:
        yield gw


def _missing(why: str) -> None:
    message = f"{why}; install it with: {INSTALL}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium per test module, closed when the module's tests end: Playwright's sync API keeps an
    event loop running in the main thread while it is open, and every later test that calls asyncio.run()
    would fail ("cannot be called from a running event loop")."""
    executable = os.environ.get("GATEWAY_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        _missing(f"no Chromium at {executable}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the Python package playwright is not installed")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=executable, headless=True,
                               args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        print(f"\nbrowser: Chromium {b.version}")
        yield b
        b.close()


class Problems:
    """Console errors, page errors and CSP violations seen by a page."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def check(self) -> None:
        assert not self.items, "console errors / CSP violations:\n" + "\n".join(self.items)


def _expected(text: str) -> bool:
    # A failed fetch the test provoked on purpose (401, 4xx, 503) is logged by Chromium as a resource error.
    return "Failed to load resource" in text


@pytest.fixture
def page(browser: Any, console_gw: Gateway) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=console_gw.url)
    p = context.new_page()
    p.set_default_timeout(10_000)
    problems = Problems()
    p.on("console", lambda m: m.type in ("error", "warning") and not _expected(m.text)
         and problems.items.append(f"{m.type}: {m.text}"))
    p.on("pageerror", lambda e: problems.items.append(f"pageerror: {e}"))
    p.problems = problems
    yield p
    context.close()
    problems.check()
