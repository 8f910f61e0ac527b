"""The console in a real browser (Debian's Chromium, driven by Playwright) against the real gateway
process: one test per view flow, each failing on any console error or CSP violation (see conftest)."""

from __future__ import annotations

import re
import time
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


def wait_for_record(gw: Gateway, policy: str) -> None:
    deadline = time.monotonic() + 15
    while not httpx.get(gw.url + f"/v1/monitoring?policy={policy}", headers=h(CENTRAL)).json()["data"]:
        assert time.monotonic() < deadline, "the record never reached the monitoring log"
        time.sleep(0.2)


def open_policy_tab(page: Any, policy: str, tab: str) -> None:
    page.get_by_role("navigation", name="tabs").get_by_role("link", name=tab, exact=True).click()


def test_seed_000_cycle_in_the_browser(page: Any, console_gw: Gateway) -> None:
    """Create a classifier policy, add data typed and uploaded, train to Ready, set the threshold, apply
    it to an application, send traffic, find the record in Monitoring, give feedback, apply it, retrain,
    compare versions and revert: seed 000's whole cycle, clicked."""
    login(page)
    page.get_by_role("link", name="Policies").click()
    page.get_by_role("button", name="New Policy").click()
    page.get_by_label("Policy type").select_option("classifier")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Policy id").fill("refunds")
    page.get_by_label("Rule (what the policy forbids)").fill("Never promise refunds")
    page.get_by_label("Disallowed behaviours (one per line)").fill("promising a refund")
    page.get_by_label("FAIL examples (one per line)").fill("I will refund you right away, no questions asked")
    page.get_by_label("PASS examples (one per line)").fill("Let me connect you with billing")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Threshold").fill("0.5")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_test_id("review-json")).to_contain_text('"type": "classifier"')
    page.get_by_role("button", name="Create").click()
    # the first model policy loads the encoder and compiles a head from the examples: seconds on 2 cores
    expect(page.get_by_role("heading", name="Policy refunds created")).to_be_visible(timeout=60_000)
    page.get_by_role("link", name="Open refunds").click()

    # Training data: one typed, three uploaded (JSONL parsed in the browser, posted in a batch)
    expect(page.get_by_test_id("data-counts")).to_contain_text("0 rows")
    page.get_by_label("Example", exact=True).fill("Sure, I'll give you a full refund today")
    page.get_by_label("Compliance").select_option("FAIL")
    page.get_by_role("button", name="Add example").click()
    expect(page.get_by_role("status")).to_contain_text("Added 1 row")
    jsonl = "\n".join(['{"example": "Refund approved, the money is on its way", "compliance": "FAIL"}',
                       '{"example": "What is the weather like today?", "compliance": "PASS"}',
                       '{"example": "Our refund policy is on the website", "compliance": "PASS"}'])
    page.get_by_label(re.compile("Upload file")).set_input_files(
        files=[{"name": "rows.jsonl", "mimeType": "application/jsonl", "buffer": jsonl.encode()}])
    expect(page.get_by_role("status")).to_contain_text("Uploaded 3 rows from rows.jsonl (4 in all)")
    expect(page.get_by_test_id("data-counts")).to_have_text(re.compile(r"4 rows: 2 FAIL, 2 PASS"))
    expect(page.get_by_role("table", name="training data")).to_contain_text("What is the weather like today?")

    # Train and watch the states reach Ready
    open_policy_tab(page, "refunds", "Training and versions")
    expect(page.get_by_test_id("training-state")).to_have_text("Not trained yet")
    page.get_by_role("button", name="Train policy").click()
    expect(page.get_by_test_id("training-state")).to_have_text(re.compile("Training queued|Training"))
    expect(page.get_by_test_id("training-state")).to_have_text(re.compile(r"Ready \(version 2\)"), timeout=90_000)
    expect(page.get_by_test_id("training-metrics")).to_contain_text("held-out F1")
    expect(page.get_by_role("table", name="versions").locator("tr[data-version]")).to_have_count(2)

    # Threshold: the calibrated point is shown; saving one makes a version
    open_policy_tab(page, "refunds", "Threshold")
    expect(page.get_by_test_id("calibrated")).to_contain_text("5-fold held-out")
    page.get_by_label("classification_threshold").fill("0.3")
    page.get_by_role("button", name="Save threshold").click()
    expect(page.get_by_role("status")).to_have_text("Saved as version 3.")
    expect(page.get_by_test_id("version")).to_have_text("v3")

    # Apply to app-a's input, block
    open_policy_tab(page, "refunds", "Applied to")
    expect(page.get_by_text("Not applied: this policy evaluates nothing")).to_be_visible()
    page.get_by_label("Application").select_option("app-a")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_role("table", name="applied")).to_contain_text("apply-refunds-app-a-input")

    # Traffic through the proxy, then the record in Monitoring, with feedback
    r = httpx.post(console_gw.url + "/v1/chat/completions", headers=h(KEY_A), timeout=30,
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": "I will refund you right away, no questions asked"}]})
    assert r.status_code == 200 and r.headers["x-guardrail-action"] == "block", (r.status_code, r.text)
    wait_for_record(console_gw, "refunds")  # records reach the store's log in batches
    page.get_by_role("link", name="Monitoring").click()
    page.get_by_label("Policy").fill("refunds")
    page.get_by_role("button", name="Apply filters").click()
    row = page.get_by_role("table", name="monitoring records").locator("tbody tr").first
    expect(row).to_contain_text("block")
    expect(row).to_contain_text("apply-refunds-app-a-input / refunds")
    row.get_by_role("button", name="Details").click()
    drawer = page.get_by_test_id("drawer")
    expect(drawer).to_contain_text("I will refund you right away")
    drawer.locator("[data-feedback=refunds]").get_by_role("button", name="Should fail").click()
    expect(drawer.get_by_role("status")).to_have_text("feedback sent: FAIL")

    # Feedback tab: apply it to the training data, retrain, compare versions, revert
    page.goto("/console/#/policies/refunds/feedback")
    expect(page.get_by_test_id("feedback-counts")).to_have_text("1 feedback items, 1 not applied.")
    page.get_by_role("button", name="Apply feedback to training data").click()
    expect(page.get_by_role("status")).to_contain_text("Applied 1 items (5 training rows)")
    page.get_by_role("link", name="Retrain now").click()
    page.get_by_role("button", name="Train policy").click()
    expect(page.get_by_test_id("training-state")).to_have_text(re.compile(r"Ready \(version 4\)"), timeout=90_000)
    versions = page.get_by_role("table", name="versions")
    page.get_by_label("compare version 2").check()
    page.get_by_label("compare version 4").check()
    expect(page.get_by_test_id("diff")).to_contain_text('"threshold": 0.3')
    page.once("dialog", lambda dialog: dialog.accept())  # "Make version 2 current again?"
    page.get_by_role("button", name="Revert to v2").click()
    expect(versions.locator("tr[data-version='5']")).to_contain_text("current")
    assert httpx.get(console_gw.url + "/v1/admin/policies/refunds", headers=h(CENTRAL)).json()["threshold"] == 0.5
