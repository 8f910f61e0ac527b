"""G18 in the console: the overview lists the last 10 changes (kind, id, version, author, time) from
GET /v1/admin/changes, in a real Chromium (tests/console/conftest.py) against the real gateway process."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.sync_api import expect

from tests.conftest import Gateway
from tests.console.conftest import APP_TOKEN, CENTRAL
from tests.console.test_console_browser import h, login


def test_overview_lists_recent_changes(page: Any, console_gw: Gateway) -> None:
    url = console_gw.url + "/v1/admin/policies"
    r = httpx.post(url, headers=h(CENTRAL), json={"id": "g18-central", "type": "contains", "keywords": ["g18"],
                                                  "note": "added for the audit"})
    assert r.status_code == 201, r.text
    r = httpx.post(url, headers=h(APP_TOKEN), json={"id": "g18-app", "type": "contains", "keywords": ["g18"]})
    assert r.status_code == 201, r.text
    assert httpx.delete(url + "/g18-central", headers=h(CENTRAL)).status_code == 200
    login(page, CENTRAL)
    table = page.get_by_role("table", name="recent changes")
    rows = table.locator("tbody tr")
    expect(rows.nth(0)).to_contain_text("g18-central")
    expect(rows.nth(0)).to_contain_text("deleted (was v1)")
    expect(rows.nth(1)).to_contain_text("g18-app")
    expect(rows.nth(1)).to_contain_text("app:app-a")
    expect(rows.nth(2)).to_contain_text("added for the audit")
    expect(rows.nth(2).get_by_role("cell").nth(2)).to_have_text("v1")
    expect(rows.nth(2).get_by_role("cell").nth(3)).to_have_text("central")
    expect(rows.nth(2).get_by_role("cell").nth(4)).not_to_be_empty()  # the time
    assert rows.count() <= 10
    rows.nth(1).get_by_role("link", name="g18-app").click()
    expect(page).to_have_url(console_gw.url + "/console/#/policies/g18-app")
    page.get_by_role("button", name="Sign out").click()
    login(page, APP_TOKEN)  # an application token: its own objects only
    expect(page.get_by_role("table", name="recent changes").locator("tbody tr").first).to_contain_text("g18-app")
    expect(page.get_by_role("table", name="recent changes")).not_to_contain_text("g18-central")
