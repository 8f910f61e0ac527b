"""The console in a real browser (Debian's Chromium, driven by Playwright) against the real gateway
process: one test per view flow, each failing on any console error or CSP violation (see conftest)."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
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
    # Synthetic data from a generator model (the test upstream's gen-* answers a JSON array; unusable items
    # are skipped)
    page.get_by_label("Count").fill("2")
    page.get_by_label("Generator model").fill("gen-1")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_role("status")).to_contain_text("Added 2 synthetic rows.")
    expect(page.get_by_test_id("data-counts")).to_have_text(re.compile(r"6 rows: 3 FAIL, 3 PASS; .*2 synthetic"))

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
    expect(drawer.get_by_role("status")).to_have_text("feedback given: FAIL")
    expect(row.get_by_test_id("latency")).to_have_text(re.compile(r"\d ms$|<1 ms$"))
    expect(drawer.get_by_role("table", name="stage outcomes")).to_contain_text(re.compile(r"refunds: [\d.<]+ ms"))
    # G12 filters; the reloaded page shows the feedback given on the record
    page.get_by_label("Stage", exact=True).fill("apply-refunds-app-a-input")
    page.locator("select[name=mode]").select_option("enforce")
    page.locator("select[name=errors]").select_option("false")
    page.get_by_role("button", name="Apply filters").click()
    expect(row.get_by_test_id("feedback-state")).to_have_text("refunds: FAIL")
    page.locator("select[name=mode]").select_option("monitor")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.get_by_text("No guarded requests match.")).to_be_visible()

    # Feedback tab: apply it to the training data, retrain, compare versions, revert
    page.goto("/console/#/policies/refunds/feedback")
    expect(page.get_by_test_id("feedback-counts")).to_have_text("1 feedback items, 1 not applied.")
    page.get_by_role("button", name="Apply feedback to training data").click()
    expect(page.get_by_role("status")).to_contain_text("Applied 1 items (7 training rows)")
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


def test_registry_badges_and_role_rules(page: Any, console_gw: Gateway) -> None:
    """Config objects are read-only with the badge; an application token edits only its own policies and
    sees central stages read-only."""
    url = console_gw.url + "/v1/admin/policies"
    assert httpx.post(url, headers=h(CENTRAL), json={"id": "central_codes", "type": "regex",
                                                     "patterns": ["CC-[0-9]{4}"]}).status_code == 201
    assert httpx.post(url, headers=h(APP_TOKEN), json={"id": "app_words", "type": "contains",
                                                       "keywords": ["secret-project"]}).status_code == 201
    login(page, APP_TOKEN, "#/policies")
    table = page.get_by_role("table", name="policies")
    expect(table.locator("tr[data-policy=config_words]")).to_contain_text("defined in the config file; change it there")
    expect(table.locator("tr[data-policy=central_codes]")).to_contain_text("central")
    expect(table.locator("tr[data-policy=central_codes]").get_by_role("button")).to_have_count(0)
    expect(table.locator("tr[data-policy=app_words]").get_by_role("button", name="Delete app_words")).to_be_visible()
    # another owner's policy: read-only JSON, no save buttons
    table.get_by_role("link", name="central_codes").click()
    expect(page.get_by_text("Read-only: owned by central.")).to_be_visible()
    expect(page.get_by_role("button", name="Save definition")).to_have_count(0)
    # a config policy: only Definition and Applied to, with the badge
    page.goto("/console/#/policies/config_words")
    expect(page.get_by_role("navigation", name="tabs").get_by_role("link")).to_have_text(["Definition", "Applied to"])
    expect(page.get_by_role("heading", level=1)).to_contain_text("defined in the config file")
    # the config stage and a central stage are read-only for an application token
    page.get_by_role("link", name="Stages").click()
    expect(page.get_by_role("table", name="Config stages").locator("tr[data-stage=config-input]")).to_contain_text("config")
    expect(page.get_by_role("table", name="Config stages").get_by_role("button")).to_have_count(0)
    page.get_by_role("link", name="config-input").click()
    expect(page.get_by_text("Read-only: defined in the config file; change it there.")).to_be_visible()
    expect(page.get_by_role("button", name="Save stage")).to_have_count(0)


def test_wizard_errors_land_on_their_fields(page: Any) -> None:
    """400 with `param` marks that field (the wizard returns to its step); 409 policy_exists lands on id."""
    login(page, CENTRAL, "#/policies/new")
    page.get_by_label("Policy type").select_option("regex")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Policy id").fill("config_words")
    page.get_by_label("Patterns (one per line)").fill("ok-[0-9]+")
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Create").click()
    expect(page.locator("[data-error-for=id]")).to_have_text("A policy 'config_words' exists already.")
    expect(page.get_by_label("Policy id")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Policy id").fill("bad_pattern")
    page.get_by_label("Patterns (one per line)").fill("unclosed(")
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Create").click()
    expect(page.locator("[data-error-for=patterns]")).to_contain_text("patterns")
    expect(page.get_by_label("Patterns (one per line)")).to_have_value("unclosed(")  # the form keeps its input


def test_wizard_types_come_from_the_catalogue(page: Any, console_gw: Gateway) -> None:
    """G15: the type picker lists GET /v1/admin/policy-types (config-only types disabled) and a type without a
    hand-made form gets one from its parameters (length: unit)."""
    login(page, CENTRAL, "#/policies/new")
    expect(page.get_by_label("Policy type").locator("option[value=length]")).to_have_count(1)
    expect(page.get_by_label("Policy type").locator("option[value=code]")).to_be_disabled()
    expect(page.get_by_label("Policy type").locator("option[value=relevance]")).to_contain_text("higher = compliant")
    page.get_by_label("Policy type").select_option("length")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Policy id").fill("long_tokens")
    page.get_by_label("unit (optional)").select_option("tokens")
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_test_id("review-json")).to_contain_text('"unit": "tokens"')
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Policy long_tokens created")
    r = httpx.get(console_gw.url + "/v1/admin/policies/long_tokens", headers=h(CENTRAL)).json()
    assert (r["type"], r["unit"]) == ("length", "tokens")
    assert httpx.delete(console_gw.url + "/v1/admin/policies/long_tokens", headers=h(CENTRAL)).status_code == 200


def test_trainable_ui_follows_the_api(page: Any, console_gw: Gateway) -> None:
    """The console keeps no list of trainable types: the registry's training state badge, the policy page's
    Training data tab and the wizard's training fields appear exactly for the types the API calls
    trainable (GET /v1/admin/policy-types, and each stored policy's own `trainable`). While the catalogue
    is unavailable the wizard shows no training fields and says why; Retry brings them."""
    admin = console_gw.url + "/v1/admin"
    catalogue = httpx.get(admin + "/policy-types", headers=h(CENTRAL)).json()["data"]
    trains = {t["type"]: t["trainable"] for t in catalogue}
    assert trains["classifier"] is True and trains["regex"] is False  # the cases below cover both answers
    made = {"tr_classifier": {"type": "classifier", "rule": "No refunds", "disallowed_behaviors": ["promising a refund"]},
            "tr_similar": {"type": "similar", "rule": "No refunds",
                           "examples": [{"example": "I will refund you", "compliance": "FAIL"}]},
            "tr_regex": {"type": "regex", "patterns": ["TR-[0-9]+"]}}
    for pid, body in made.items():  # a model policy's first compile loads the encoder: seconds on 2 cores
        r = httpx.post(admin + "/policies", headers=h(CENTRAL), json={"id": pid, **body}, timeout=120)
        assert r.status_code == 201, r.text
        assert r.json()["trainable"] is trains[body["type"]]
    listed = {p["id"]: p for p in httpx.get(admin + "/policies", headers=h(CENTRAL)).json()["data"]}
    assert {pid: listed[pid]["trainable"] for pid in made} == {pid: trains[b["type"]] for pid, b in made.items()}

    login(page, CENTRAL, "#/policies")
    table = page.get_by_role("table", name="policies")
    for pid, body in made.items():
        state = table.locator(f"tr[data-policy={pid}] td").nth(6)  # the state column
        if trains[body["type"]]:
            expect(state.locator(".badge")).to_have_text("Needs training")
        else:
            expect(table.locator(f"tr[data-policy={pid}]")).to_be_visible()
            expect(state).to_have_text("")
    for pid, body in made.items():
        page.goto(f"/console/#/policies/{pid}")
        tabs = page.get_by_role("navigation", name="tabs").get_by_role("link")
        expect(tabs.first).to_have_text("Definition")
        expect(tabs.filter(has_text="Training data")).to_have_count(1 if trains[body["type"]] else 0)
    for pid in made:
        assert httpx.delete(f"{admin}/policies/{pid}", headers=h(CENTRAL)).status_code == 200

    # the wizard: training fields and the examples in the body exactly for the catalogue's trainable types
    for kind in ("classifier", "similar", "regex"):
        page.goto("/console/#/policies")  # a fresh wizard each time (it keeps its state across ?type=)
        page.get_by_role("button", name="New Policy").click()
        page.get_by_label("Policy type").select_option(kind)
        page.get_by_role("button", name="Next").click()
        expect(page.get_by_label("Policy id")).to_be_visible()
        expect(page.get_by_text("Loading policy types")).to_have_count(0)
        expect(page.get_by_label("FAIL examples (one per line)")).to_have_count(1 if trains[kind] else 0)
        expect(page.get_by_label("Disallowed behaviours (one per line)")).to_have_count(1 if trains[kind] else 0)
        page.get_by_role("button", name="Next").click()
        page.get_by_role("button", name="Next").click()
        review = page.get_by_test_id("review-json")
        expect(review).to_contain_text(f'"type": "{kind}"')
        if trains[kind]:
            expect(review).to_contain_text('"examples": []')
        else:
            expect(review).not_to_contain_text("examples")

    # the catalogue fails: no training fields (nothing sent the server did not ask for), a banner, Retry
    page.route("**/v1/admin/policy-types", lambda route: route.fulfill(
        status=500, content_type="application/json",
        body='{"error": {"message": "catalogue down", "type": "api_error", "param": null, "code": null}}'))
    page.goto("/console/#/policies")
    expect(page.get_by_role("table", name="policies")).to_be_visible()
    page.goto("/console/#/policies/new?type=classifier")
    expect(page.get_by_label("Policy type")).to_have_value("classifier")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_test_id("types-unavailable")).to_contain_text("catalogue down")
    expect(page.get_by_label("FAIL examples (one per line)")).to_have_count(0)
    page.unroute("**/v1/admin/policy-types")
    page.get_by_test_id("types-unavailable").get_by_role("button", name="Retry").click()
    expect(page.get_by_test_id("types-unavailable")).to_have_count(0)
    expect(page.get_by_label("FAIL examples (one per line)")).to_have_count(1 if trains["classifier"] else 0)


def test_stage_editor_two_rulesets_reorder_pause_revert(page: Any, console_gw: Gateway) -> None:
    login(page, CENTRAL, "#/stages")
    page.get_by_role("button", name="New stage").click()
    page.get_by_label("Stage name").fill("org-input")
    page.get_by_label("Scope").select_option("central")
    first = page.locator("[data-ruleset='0']")
    first.get_by_label("Ruleset name").fill("long")
    first.get_by_label("Metric").select_option("length")
    first.get_by_label("Op").select_option("gt")
    first.get_by_label("Value").fill("5000")
    page.get_by_role("button", name="Add ruleset").click()
    second = page.locator("[data-ruleset='1']")
    second.get_by_label("Ruleset name").fill("words")
    second.get_by_label("Metric").select_option("config_words")
    second.get_by_label("Action").select_option("override")
    second.get_by_label("Responses (one per line)").fill("I can't help with that.")
    page.get_by_role("button", name="Move ruleset 2 up").click()
    expect(page.locator("[data-ruleset='0']").get_by_label("Ruleset name")).to_have_value("words")
    # G15: the metric catalogue offers only the operators the plan accepts on a metric, and its labels
    words = page.locator("[data-ruleset='0']").get_by_label("Op").locator("option").all_inner_texts()
    assert words[0] == "(policy threshold: gt 0.5)" and "contains_any" not in words, words
    moved = page.locator("[data-ruleset='1']")  # length: a number, no policy threshold
    ops = moved.get_by_label("Op").locator("option").all_inner_texts()
    assert "gt" in ops and "contains_any" not in ops and "(policy threshold)" not in ops, ops
    moved.get_by_label("Metric").select_option("pii")
    assert "contains_any" in moved.get_by_label("Op").locator("option").all_inner_texts()
    expect(moved.locator("[data-param='rulesets[1].rules[0].value'] .hint")).to_contain_text("EMAIL_ADDRESS")
    moved.get_by_label("Metric").select_option("length")
    # a bad value for a rule is refused by the API and shown on that rule's field
    moved.get_by_label("Value").fill("lots")
    page.get_by_role("button", name="Create stage").click()
    expect(page.locator("[data-error-for='rulesets[1].rules[0].value']")).to_contain_text("`gt` needs a number")
    expect(page.locator("[data-ruleset='1'] [data-param='rulesets[1].rules[0].value']")).to_have_class(re.compile("invalid"))
    moved.get_by_label("Value").fill("5000")
    page.get_by_role("button", name="Create stage").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("org-input")
    stage = httpx.get(console_gw.url + "/v1/admin/stages/org-input", headers=h(CENTRAL)).json()
    assert [rs["name"] for rs in stage["rulesets"]] == ["words", "long"]
    assert stage["rulesets"][0]["action"] == {"type": "override", "responses": ["I can't help with that."]}
    # edit: swap back, save -> v2
    page.get_by_role("button", name="Move ruleset 1 down").click()
    page.get_by_role("button", name="Save stage").click()
    expect(page.get_by_role("status")).to_have_text("Saved as version 2.")
    # pause and resume from the list
    page.get_by_role("link", name="Stages").click()
    row = page.get_by_role("table", name="Central stages").locator("tr[data-stage=org-input]")
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Pause").click()
    expect(row).to_contain_text("paused")
    row.get_by_role("button", name="Resume").click()
    expect(row.get_by_role("button", name="Pause")).to_be_visible()
    # versions: revert to v1 (words first again)
    row.get_by_role("link", name="org-input").click()
    page.get_by_role("navigation", name="tabs").get_by_role("link", name="Versions").click()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Revert to v1").click()
    expect(page.get_by_role("table", name="versions").locator("tr[data-version='5']")).to_contain_text("current")
    stage = httpx.get(console_gw.url + "/v1/admin/stages/org-input", headers=h(CENTRAL)).json()
    assert [rs["name"] for rs in stage["rulesets"]] == ["words", "long"]
    # pins (G6): pin app-b to v1, listed with how far behind it is
    page.get_by_role("navigation", name="tabs").get_by_role("link", name="Pins").click()
    page.get_by_label("Application").fill("app-b")
    page.get_by_label("Version").fill("1")
    page.get_by_role("button", name="Pin").click()
    expect(page.get_by_role("table", name="pins")).to_contain_text("4 versions behind latest")
    httpx.request("DELETE", console_gw.url + "/v1/admin/stages/org-input", headers=h(CENTRAL), json={})


def test_applications_and_key_shown_once(page: Any, console_gw: Gateway) -> None:
    login(page, CENTRAL, "#/applications")
    expect(page.get_by_role("table", name="applications").locator("tr[data-application=app-a]")).to_contain_text("config")
    page.get_by_label("Application id").fill("app-a")
    page.get_by_role("button", name="Create application").click()
    expect(page.locator("[data-error-for=id]")).to_have_text("An application 'app-a' exists already.")
    page.get_by_label("Application id").fill("web-shop")
    page.get_by_role("button", name="Create application").click()
    key = page.get_by_test_id("new-key").inner_text().strip()
    assert key.startswith("sk-gg-")
    page.get_by_role("button", name="Done").click()
    expect(page.get_by_test_id("new-key")).to_have_count(0)
    r = httpx.post(console_gw.url + "/v1/chat/completions", headers=h(key), timeout=30,
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]})
    assert r.status_code == 200, r.text
    page.get_by_role("link", name="web-shop").click()
    expect(page.get_by_test_id("key-count")).to_have_text("1")
    page.get_by_role("button", name="New key").click()
    expect(page.get_by_test_id("new-key")).to_contain_text("sk-gg-")
    page.get_by_role("button", name="Done").click()
    expect(page.get_by_test_id("key-count")).to_have_text("2")
    # G17: the first key revoked alone, from its row; the second still answers
    from gateway.proxy.auth import key_digest

    keys = page.get_by_role("table", name="keys")
    expect(keys.locator("tbody tr")).to_have_count(2)
    row = keys.locator(f"tr[data-key='{key_digest(key)[:16]}']")
    expect(row).to_contain_text(key_digest(key)[:16])
    page.once("dialog", lambda d: d.accept())
    row.get_by_role("button", name="Revoke").click()
    expect(page.get_by_test_id("key-count")).to_have_text("1")
    expect(keys.locator("tbody tr")).to_have_count(1)
    r = httpx.post(console_gw.url + "/v1/chat/completions", headers=h(key), timeout=30,
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]})
    assert r.status_code == 401
    # a key's expiry (kept as the ISO text it was given) reads as a date
    httpx.post(console_gw.url + "/v1/admin/applications/web-shop/keys", headers=h(CENTRAL),
               json={"expires_at": "2030-01-01T12:00:00Z"})
    page.reload()
    expect(keys.locator("tbody tr")).to_have_count(2)
    expect(keys).to_contain_text("2030")
    expect(keys).not_to_contain_text("Invalid Date")
    page.get_by_label("Model").fill("gpt-4o")
    page.get_by_role("button", name="Show plan").click()
    expect(page.get_by_role("table", name="effective plan")).to_contain_text("config-input")


def test_playground_proxy_and_evaluate(page: Any) -> None:
    login(page, CENTRAL, "#/playground")
    page.get_by_role("combobox", name=re.compile("^Mode")).select_option("proxy")
    page.get_by_role("button", name="Send").click()
    expect(page.locator("[data-error-for=key]")).to_contain_text("An application key is needed")
    page.get_by_label("Application key (kept in this page only)").fill(KEY_A)
    page.get_by_label("Message 1", exact=True).fill("please say configured-word")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_test_id("proxy-action")).to_have_text("block")
    expect(page.get_by_test_id("proxy-answer")).to_have_text("Blocked by the config stage.")
    page.get_by_role("combobox", name=re.compile("^Mode")).select_option("evaluate")
    page.get_by_label(re.compile("^Policy ids")).fill("config_words")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_test_id("eval-status")).to_have_text("FAIL")
    expect(page.get_by_role("table", name="violations")).to_contain_text("config_words")
    page.get_by_label("Message 1", exact=True).fill("a harmless question")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_test_id("eval-status")).to_have_text("PASS")
    # G4: no key, the admin session evaluates for the chosen application
    page.get_by_label("Application key (kept in this page only)").fill("")
    page.get_by_role("combobox", name=re.compile("^Application")).select_option("app-b")
    page.get_by_label("Message 1", exact=True).fill("configured-word again")
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_test_id("eval-status")).to_have_text("FAIL")
    # the key never reaches storage
    assert KEY_A not in page.evaluate("JSON.stringify(Object.assign({}, sessionStorage, localStorage))")


def test_expired_session_goes_back_to_login(page: Any) -> None:
    login(page, CENTRAL)
    [cookie] = page.context.cookies()  # G2: the session is an HttpOnly, SameSite=Strict cookie; no token stored
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == ("gg_session", True, "Strict")
    assert 0 < cookie["expires"] - time.time() <= 8 * 3600
    assert page.evaluate("Object.keys(sessionStorage).length + Object.keys(localStorage).length") == 0
    assert page.evaluate("document.cookie") == ""
    page.reload()  # the cookie keeps the session across a reload
    expect(page.get_by_test_id("role")).to_have_text("central")
    forged = cookie["value"].split(".")[0] + ".AAAA"
    page.context.add_cookies([{**cookie, "value": forged}])
    page.evaluate("location.hash = '#/policies'")  # (the overview's next poll may find out first)
    expect(page.get_by_role("alert")).to_contain_text("Your session ended (The console session expired or is no longer valid")
    expect(page.get_by_label("Admin token")).to_be_visible()
    page.get_by_label("Admin token").fill(CENTRAL)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Policies")).to_be_visible()  # back where it was


def test_store_unreachable_shows_the_banner_and_keeps_the_form(browser: Any, upstream: str, tmp_path: Any) -> None:
    """A private redis-server store that goes away: saving answers 503 store_unavailable, the console shows
    the global banner and the form keeps its input."""
    import shutil
    import subprocess

    import redis

    from tests.conftest import free_port, running_gateway, stop_process
    from tests.console.conftest import Problems, console_config

    port = free_port()
    server = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind",
                               "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, socket_timeout=1)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        store = f'store: {{url: "redis://127.0.0.1:{port}/0", timeout_s: 0.2, poll_interval_s: 0.2}}\n'
        (tmp_path / "gw").mkdir()
        with running_gateway(tmp_path / "gw", lambda p: console_config(upstream, p) + store) as gw:
            context = browser.new_context(base_url=gw.url)
            page = context.new_page()
            page.set_default_timeout(10_000)
            problems = Problems()
            page.on("pageerror", lambda e: problems.items.append(f"pageerror: {e}"))
            login(page, CENTRAL, "#/policies/new")
            page.get_by_role("button", name="Next").click()
            page.get_by_label("Policy id").fill("kept_input")
            page.get_by_label("Patterns (one per line)").fill("KEEP-[0-9]+")
            page.get_by_role("button", name="Next").click()
            page.get_by_role("button", name="Next").click()
            stop_process(server)
            page.get_by_role("button", name="Create").click()
            expect(page.get_by_test_id("store-banner")).to_contain_text(
                "Policy store unreachable: the gateway keeps enforcing its last good plan; changes cannot be saved now.")
            expect(page.get_by_test_id("review-json")).to_contain_text('"id": "kept_input"')
            page.get_by_role("button", name="Back").click()
            page.get_by_role("button", name="Back").click()
            expect(page.get_by_label("Policy id")).to_have_value("kept_input")
            context.close()
            problems.check()
    finally:
        if server.poll() is None:
            stop_process(server)


def test_overview_counts_guarded_traffic(page: Any, console_gw: Gateway) -> None:
    r = httpx.post(console_gw.url + "/v1/chat/completions", headers=h(KEY_A), timeout=30,
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": "overview configured-word"}]})
    assert r.headers["x-guardrail-action"] == "block"
    wait_for_record(console_gw, "config_words")
    login(page, CENTRAL)
    cards = page.get_by_test_id("cards")
    expect(cards).to_contain_text("guarded records")
    expect(cards.get_by_role("link", name=re.compile("acted on"))).to_have_text(re.compile(r"acted on\s*[1-9]"))
    expect(page.get_by_role("table", name="top rulesets")).to_contain_text("config-input / words")
    expect(page.get_by_role("table", name="top applications")).to_contain_text("app-a")
    expect(page.get_by_test_id("chart").locator("rect title").filter(has_text="block")).not_to_have_count(0)
    page.get_by_role("button", name="24 h").click()
    expect(page.get_by_role("table", name="top rulesets")).to_contain_text("config-input / words")
    cards.get_by_role("link", name=re.compile("acted on")).click()
    expect(page.get_by_role("table", name="monitoring records")).to_contain_text("block")


def test_stage_edit_and_save_keeps_what_the_form_does_not_show(page: Any, console_gw: Gateway) -> None:
    """Edit-and-save round trip (the LiteLLM #19084 regression: fields lost on edit): a stage with a redact
    placeholder, roles, a message and a hold-back comes back equal after a save from the editor."""
    spec = {"name": "roundtrip", "on": "output", "scope": "central", "roles": ["assistant"], "message": "No.",
            "stream": {"holdback_chars": 128}, "timeout_ms": 500,
            "rulesets": [{"name": "mask", "rules": [{"metric": "pii", "op": "contains_any", "value": ["EMAIL_ADDRESS"]}],
                          "action": {"type": "redact", "placeholder": "[{label}]"}},
                         {"name": "long", "rules": [{"metric": "length", "op": "gt", "value": 9000}],
                          "action": {"type": "override", "responses": ["Too long."], "respond_with": "error"}}]}
    url = console_gw.url + "/v1/admin/stages"
    assert httpx.post(url, headers=h(CENTRAL), json=spec).status_code == 201
    before = httpx.get(url + "/roundtrip", headers=h(CENTRAL)).json()
    login(page, CENTRAL, "#/stages/roundtrip")
    expect(page.locator("[data-ruleset='0']").get_by_label("Value")).to_have_value('["EMAIL_ADDRESS"]')
    page.get_by_role("button", name="Save stage").click()
    expect(page.get_by_role("status")).to_have_text("Saved as version 2.")
    after = httpx.get(url + "/roundtrip", headers=h(CENTRAL)).json()
    strip = ("version", "updated")
    assert {k: v for k, v in after.items() if k not in strip} == {k: v for k, v in before.items() if k not in strip}
    httpx.request("DELETE", url + "/roundtrip", headers=h(CENTRAL), json={})


def test_playground_dry_run_draft_compare_and_replay(page: Any, console_gw: Gateway) -> None:
    """Mode A (G3): the config stage's verdict without an upstream call; "Test in Playground" from the stage
    editor runs the unsaved draft beside the stages as applied, the differing verdict marked; Replay of a
    monitoring record prefills its (redacted) text."""
    url = console_gw.url
    spec = {"name": "pg-out", "on": "output", "applications": ["app-a"], "rulesets": [
        {"name": "card", "rules": [{"metric": "pii", "op": "contains_any", "value": ["CREDIT_CARD"]}],
         "action": {"type": "redact"}}]}
    assert httpx.post(url + "/v1/admin/stages", headers=h(CENTRAL), json=spec).status_code == 201
    login(page, CENTRAL, "#/playground")
    expect(page.get_by_role("combobox", name=re.compile("^Application"))).to_have_value("app-a")
    page.get_by_label("Message 1", exact=True).fill("please say configured-word")
    page.get_by_role("button", name="Run dry-run").click()
    expect(page.get_by_test_id("dry-action")).to_have_text("block")
    expect(page.get_by_test_id("dry-response")).to_have_text("Blocked by the config stage.")
    expect(page.get_by_role("table", name="Input stages").locator("tr[data-stage=config-input]")).to_contain_text(
        "config_words")

    # the stage editor hands its unsaved draft over: redact -> block, compared with the saved stage
    page.goto("/console/#/stages/pg-out")
    page.locator("[data-ruleset='0']").get_by_label("Action").select_option("block")
    page.locator("[data-ruleset='0']").get_by_label("Message").fill("Draft says no")
    page.get_by_role("button", name="Test in Playground").click()
    expect(page.get_by_test_id("draft-banner")).to_contain_text("pg-out")
    page.get_by_role("button", name="answer with PII").click()
    page.get_by_role("button", name="Run dry-run").click()
    draft, applied = page.get_by_test_id("dry-result-draft"), page.get_by_test_id("dry-result-applied")
    expect(draft.get_by_test_id("dry-action")).to_have_text("block")
    expect(draft.get_by_test_id("dry-response")).to_have_text("Draft says no")
    expect(applied.get_by_test_id("dry-action")).to_have_text("redact")
    expect(applied.get_by_test_id("dry-response")).to_contain_text("<CREDIT_CARD>")
    expect(draft.locator("tr[data-stage=pg-out]")).to_have_attribute("data-differs", "true")
    assert httpx.get(url + "/v1/admin/stages/pg-out", headers=h(CENTRAL)).json()["version"] == 1  # not saved

    # Replay: a blocked request's record opens in the playground with its text
    r = httpx.post(url + "/v1/chat/completions", headers=h(KEY_A),
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": "replay configured-word"}]})
    rid = r.headers["x-guardrail-request-id"]
    deadline = time.monotonic() + 15
    while not [x for x in httpx.get(url + "/v1/monitoring?limit=50", headers=h(CENTRAL)).json()["data"]
               if x["id"] == rid]:
        assert time.monotonic() < deadline, "the record never reached the monitoring log"
        time.sleep(0.2)
    page.goto(f"/console/#/playground?record={rid}&on=input")
    page.reload()
    expect(page.get_by_label("Message 1", exact=True)).to_have_value("replay configured-word")
    page.get_by_role("button", name="Run dry-run").click()
    expect(page.get_by_test_id("dry-action")).to_have_text("block")
    httpx.request("DELETE", url + "/v1/admin/stages/pg-out", headers=h(CENTRAL), json={})


def test_api_reference_page(page: Any) -> None:
    login(page, APP_TOKEN, "#/api")
    op = page.locator("details[data-op='post /v1/admin/dry-run']")
    op.locator("summary").click()
    expect(op.get_by_role("table", name="schema DryRunRequest")).to_contain_text("draft_stages")
    expect(op).to_contain_text("Unknown fields are refused")
    page.get_by_role("link", name="StageSpec", exact=True).first.click()
    expect(page.get_by_role("table", name="schema StageSpec")).to_contain_text("rulesets")


def test_training_rows_edit_delete_filter(page: Any, console_gw: Gateway) -> None:
    """G9 in the Training data tab: edit a row (a bad edit names its field), delete one row, filter by
    label, delete every row of one source."""
    url = console_gw.url + "/v1/admin/policies"
    r = httpx.post(url, headers=h(CENTRAL), timeout=120, json={
        "id": "rows-ui", "type": "similar", "rule": "x", "examples": [{"example": "seed", "compliance": "FAIL"}]})
    assert r.status_code == 201, r.text
    rows = [{"example": f"row {i}", "compliance": "FAIL" if i % 2 else "PASS"} for i in range(3)]
    assert httpx.post(url + "/rows-ui/data", headers=h(CENTRAL), json={"data": rows}).status_code == 201
    ids = [r["id"] for r in httpx.get(url + "/rows-ui/data", headers=h(CENTRAL)).json()["data"]]
    login(page, CENTRAL, "#/policies/rows-ui/data")
    table = page.get_by_role("table", name="training data")
    expect(table.locator("tr[data-row]")).to_have_count(3)
    expect(page.get_by_test_id("data-counts")).to_have_text(re.compile(r"3 rows: 1 FAIL, 2 PASS; 3 manual"))
    page.get_by_role("button", name=f"Edit row {ids[0]}").click()
    page.get_by_label("Edit example").fill("  ")
    page.get_by_role("button", name="Save row").click()
    expect(page.locator('[data-error-for="example"]')).to_have_text("example: a non-empty string.")
    page.get_by_label("Edit example").fill("row 0, edited")
    page.get_by_label("Edit compliance").select_option("FAIL")
    page.get_by_role("button", name="Save row").click()
    expect(page.get_by_role("status")).to_have_text(f"Row {ids[0]} saved.")
    expect(table.locator(f'tr[data-row="{ids[0]}"]')).to_contain_text("row 0, edited")
    expect(page.get_by_test_id("data-counts")).to_have_text(re.compile(r"3 rows: 2 FAIL, 1 PASS"))
    page.get_by_role("button", name=f"Delete row {ids[1]}").click()
    expect(page.get_by_role("status")).to_have_text(f"Row {ids[1]} deleted.")
    expect(table.locator("tr[data-row]")).to_have_count(2)
    r = httpx.post(url + "/rows-ui/data", headers=h(CENTRAL), json={"data": [{"example": "kept", "compliance": "PASS"}]})
    assert r.status_code == 201
    page.get_by_label("Label").select_option("FAIL")
    expect(table.locator("tr[data-row]")).to_have_count(1)
    page.get_by_label("Label").select_option("")
    expect(table.locator("tr[data-row]")).to_have_count(3)
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete all manual").click()
    expect(page.get_by_role("status")).to_have_text("Deleted 3 manual rows (0 left).")
    expect(page.get_by_test_id("data-counts")).to_have_text(re.compile("0 rows"))


def test_conflict_reload_dry_run_notes_and_threshold_curve(page: Any, console_gw: Gateway) -> None:
    """G19: a save based on an old version gets the reload prompt, keeps the edit and saves after reload;
    G16: Check without saving writes nothing; G11: the note reaches the versions list; G8: the Threshold tab
    draws the held-out curve of a trained classifier and reads it at the threshold being set."""
    base = console_gw.url + "/v1/admin/policies"
    policy = {"id": "curvy", "type": "classifier", "threshold": 0.0, "rule": "No secret launch dates",
              "disallowed_behaviors": ["revealing an unannounced launch date"],
              "allowed_behaviors": ["talking about announced products"]}
    assert httpx.post(base, headers=h(CENTRAL), json=policy, timeout=60).status_code == 201
    rows = [{"example": f"Between us, {p} launches on {d}, keep it secret.", "compliance": "FAIL"}
            for p, d in [("Orca", "May 3"), ("Puma", "June 9"), ("Wren", "July 1"), ("Ibex", "Aug 8"), ("Newt", "Sep 2")]]
    rows += [{"example": t, "compliance": "PASS"} for t in [
        "The announced phone is in stores now.", "Where is the meeting room?", "How do I update my laptop?",
        "Our released watch has a new band.", "Please send the invoice."]]
    assert httpx.post(base + "/curvy/data", headers=h(CENTRAL), json={"data": rows}).status_code == 201
    assert httpx.post(base + "/curvy/train", headers=h(CENTRAL), json={}).status_code == 202
    deadline = time.monotonic() + 90
    while httpx.get(base + "/curvy/train", headers=h(CENTRAL)).json()["status"] != "ready":
        assert time.monotonic() < deadline, "training did not finish"
        time.sleep(0.2)

    login(page, CENTRAL, "#/policies/curvy/threshold")
    expect(page.get_by_test_id("threshold-curve").locator("polyline")).to_have_count(3)
    page.get_by_label("classification_threshold").fill("0.33")
    expect(page.get_by_test_id("curve-at")).to_contain_text(re.compile(r"At 0\.33: precision [0-9.]+, recall [0-9.]+"))

    open_policy_tab(page, "curvy", "Definition")
    expect(page.get_by_test_id("version")).to_have_text("v2")
    page.get_by_label("Rule").fill("No secret launch dates, ever")
    page.get_by_role("button", name="Check without saving").click()
    expect(page.get_by_test_id("dry-run-ok")).to_contain_text("would make version 3")
    assert httpx.get(base + "/curvy", headers=h(CENTRAL)).json()["version"] == 2
    # someone else saves meanwhile: this page's save is refused with the reload prompt, the edit kept
    assert httpx.patch(base + "/curvy", headers=h(CENTRAL), json={"allowed_behaviors": ["announced news"]}).status_code == 200
    page.get_by_label("Version note").fill("stricter wording")
    page.get_by_role("button", name="Save definition").click()
    expect(page.get_by_test_id("version-conflict")).to_contain_text("is at version 3, not 2")
    page.get_by_role("button", name=re.compile("Reload")).click()
    expect(page.get_by_test_id("version")).to_have_text("v3")
    expect(page.get_by_label("Rule")).to_have_value("No secret launch dates, ever")
    page.get_by_role("button", name="Save definition").click()
    expect(page.get_by_test_id("version")).to_have_text("v4")
    assert httpx.get(base + "/curvy", headers=h(CENTRAL)).json()["rule"] == "No secret launch dates, ever"
    open_policy_tab(page, "curvy", "Training and versions")
    expect(page.get_by_role("table", name="versions").locator("tr[data-version='4']")).to_contain_text("stricter wording")

    # a stage edited elsewhere: the stage editor's save gets the same prompt
    stages = console_gw.url + "/v1/admin/stages"
    stage = {"name": "g19-ui", "scope": "central", "on": "input",
             "rulesets": [{"name": "r", "rules": [{"metric": "curvy"}], "action": {"type": "block"}}]}
    assert httpx.post(stages, headers=h(CENTRAL), json=stage).status_code == 201
    page.goto("/console/#/stages/g19-ui")
    page.get_by_role("button", name="Check without saving").click()
    expect(page.get_by_test_id("dry-run-ok")).to_contain_text("would make version 2")
    assert httpx.patch(stages + "/g19-ui", headers=h(CENTRAL), json={"mode": "monitor"}).status_code == 200
    page.get_by_role("button", name="Save stage").click()
    expect(page.get_by_test_id("version-conflict")).to_contain_text("is at version 2, not 1")
    httpx.request("DELETE", stages + "/g19-ui", headers=h(CENTRAL), json={})


def test_feedback_items_show_record_and_author_and_delete(page: Any, console_gw: Gateway) -> None:
    """G13 in the Feedback tab: each item shows the record it labels, who gave it and when; an application
    admin on central's policy may delete the item it gave (confirm dialog), not central's."""
    url = console_gw.url
    r = httpx.post(url + "/v1/admin/policies", headers=h(CENTRAL),
                   json={"id": "fb-ui", "type": "contains", "keywords": ["zzz-never"]})
    assert r.status_code == 201, r.text
    r = httpx.post(url + "/v1/admin/policies/fb-ui/apply", headers=h(CENTRAL), json={"application": "app-a"})
    assert r.status_code == 201, r.text  # an application labels central's policies that run on its traffic
    given = []
    for token, text, label in ((APP_TOKEN, "wrongly judged", "FAIL"), (CENTRAL, "rightly judged", "PASS")):
        r = httpx.post(url + "/v1/chat/completions", headers=h(KEY_A), timeout=30,
                       json={"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})
        record_id = r.headers["x-guardrail-request-id"]
        r = httpx.post(url + "/v1/admin/feedback", headers=h(token),
                       json={"record_id": record_id, "policy_id": "fb-ui", "label": label})
        assert r.status_code == 201, r.text
        given.append(r.json())
    mine, central = given
    login(page, APP_TOKEN, "#/policies/fb-ui/feedback")
    table = page.get_by_role("table", name="feedback")
    expect(page.get_by_test_id("feedback-counts")).to_have_text("2 feedback items, 2 not applied.")
    row = table.locator(f'tr[data-feedback-item="{mine["id"]}"]')
    expect(row).to_contain_text(f'{mine["record_id"]} (input)')
    expect(row).to_contain_text("app:app-a")
    expect(table.locator(f'tr[data-feedback-item="{central["id"]}"]')).to_contain_text("central")
    expect(page.get_by_role("button", name=f'Delete feedback {central["id"]}')).to_have_count(0)
    page.once("dialog", lambda d: d.accept())  # "Delete feedback n (FAIL)?"
    page.get_by_role("button", name=f'Delete feedback {mine["id"]}').click()
    expect(page.get_by_role("status")).to_have_text(f'Feedback {mine["id"]} deleted.')
    expect(page.get_by_test_id("feedback-counts")).to_have_text("1 feedback items, 1 not applied.")
    left = httpx.get(url + "/v1/admin/policies/fb-ui/feedback", headers=h(CENTRAL)).json()["data"]
    assert [f["id"] for f in left] == [central["id"]]
