"""The console in a real browser (Debian's Chromium, driven by Playwright) against the real gateway
process: one test per view flow, each failing on any console error or CSP violation (see conftest)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.conftest import Gateway
from tests.console.conftest import APP_TOKEN, CENTRAL, KEY_A


def h(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def login(page: Any, token: str = CENTRAL, route: str = "") -> None:
    page.goto("/console/" + route)
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_login_bad_then_good_and_role_nav(page: Any) -> None:
    page.goto("/console/")
    page.get_by_label("Admin token").fill("wrong-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("Invalid or missing admin token.")
    page.get_by_label("Admin token").fill(CENTRAL)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("role")).to_have_text("central")
    expect(page.get_by_role("link", name="Applications")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    login(page, APP_TOKEN)
    expect(page.get_by_test_id("role")).to_have_text("app:app-a")
    expect(page.get_by_role("navigation", name="main").get_by_role("link")).to_have_text(
        ["Overview", "Policies", "Stages", "Monitoring", "Playground"])
