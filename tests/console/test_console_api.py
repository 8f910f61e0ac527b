"""The admin API gaps the console needs (console-spec section 3), against the real gateway process:
G1 whoami, G5 the admin model list, G6 reading pins, G7 policy states in the registry list. Each refuses
unknown query parameters with 400 naming them (`param`), keeps the role rules, and answers errors in
OpenAI's shape."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.conftest import Gateway
from tests.console.conftest import APP_TOKEN, CENTRAL


def h(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    return body


def test_whoami_central_and_application(console_gw: Gateway) -> None:
    r = httpx.get(console_gw.url + "/v1/admin/whoami", headers=h(CENTRAL))
    assert r.json() == {"object": "whoami", "role": "central", "application": None}
    r = httpx.get(console_gw.url + "/v1/admin/whoami", headers=h(APP_TOKEN))
    assert r.json() == {"object": "whoami", "role": "application", "application": "app-a"}
    assert error(httpx.get(console_gw.url + "/v1/admin/whoami", headers=h("nope")), 401)["code"] == "invalid_admin_token"
    assert error(httpx.get(console_gw.url + "/v1/admin/whoami"), 401)["message"] == "Invalid or missing admin token."
    e = error(httpx.get(console_gw.url + "/v1/admin/whoami?role=central", headers=h(APP_TOKEN)), 400)
    assert (e["param"], e["code"]) == ("role", "unknown_parameter")


def test_admin_model_list(console_gw: Gateway) -> None:
    for token in (CENTRAL, APP_TOKEN):
        r = httpx.get(console_gw.url + "/v1/admin/models", headers=h(token))
        assert r.status_code == 200, r.text
        assert r.json() == {"object": "list", "data": [{"upstream": "main", "models": ["gpt-*", "gen-*"]}]}
    assert error(httpx.get(console_gw.url + "/v1/admin/models?limit=5", headers=h(CENTRAL)), 400)["param"] == "limit"
    error(httpx.get(console_gw.url + "/v1/admin/models"), 401)


def test_pins_are_listed_with_versions_behind(console_gw: Gateway) -> None:
    url = console_gw.url + "/v1/admin/stages"
    spec = {"name": "pinned-central", "on": "input", "scope": "central",
            "rulesets": [{"name": "r", "rules": [{"metric": "length", "op": "gt", "value": 100000}],
                          "action": {"type": "block"}}]}
    assert httpx.post(url, headers=h(CENTRAL), json=spec).status_code == 201
    assert httpx.patch(url + "/pinned-central", headers=h(CENTRAL), json={"mode": "monitor"}).status_code == 200
    assert httpx.patch(url + "/pinned-central", headers=h(CENTRAL), json={"mode": "enforce"}).status_code == 200
    pins = url + "/pinned-central/pins"
    assert httpx.get(pins, headers=h(CENTRAL)).json()["data"] == []
    assert httpx.put(url + "/pinned-central/pin", headers=h(CENTRAL),
                     json={"application": "app-b", "version": 1}).status_code == 201
    assert httpx.put(url + "/pinned-central/pin", headers=h(APP_TOKEN),
                     json={"application": "app-a", "version": 2}).status_code == 201
    r = httpx.get(pins, headers=h(CENTRAL)).json()
    assert r["latest"] == 3
    assert [(p["application"], p["version"], p["behind"]) for p in r["data"]] == [("app-a", 2, 1), ("app-b", 1, 2)]
    # an application token sees its own pin only
    assert [p["application"] for p in httpx.get(pins, headers=h(APP_TOKEN)).json()["data"]] == ["app-a"]
    assert httpx.request("DELETE", url + "/pinned-central/pin", headers=h(CENTRAL),
                         json={"application": "app-b"}).status_code == 200
    assert [p["application"] for p in httpx.get(pins, headers=h(CENTRAL)).json()["data"]] == ["app-a"]
    assert error(httpx.get(url + "/no-such-stage/pins", headers=h(CENTRAL)), 404)["code"] == "stage_not_found"
    assert error(httpx.get(pins + "?application=app-a", headers=h(CENTRAL)), 400)["param"] == "application"


def test_policy_list_carries_state_owner_and_applied(console_gw: Gateway) -> None:
    url = console_gw.url + "/v1/admin/policies"
    body = {"id": "state_clf", "type": "classifier", "rule": "No refunds promised",
            "examples": [{"type": "FAIL", "input_example": "I will refund you right away"},
                         {"type": "PASS", "input_example": "Let me connect you with billing"}]}
    assert httpx.post(url, headers=h(APP_TOKEN), json=body).status_code == 201
    assert httpx.post(url, headers=h(CENTRAL), json={"id": "state_re", "type": "regex",
                                                     "patterns": ["X-[0-9]+"]}).status_code == 201

    def listed() -> dict[str, Any]:
        return {p["id"]: p for p in httpx.get(url, headers=h(CENTRAL)).json()["data"]}

    items = listed()
    assert items["config_words"]["owner"] == "config" and items["config_words"]["applied"] == 0
    assert items["state_clf"]["owner"] == "app:app-a"
    assert (items["state_clf"]["training"], items["state_clf"]["needs_training"]) == (None, True)
    assert (items["state_re"]["training"], items["state_re"]["needs_training"]) == (None, False)
    assert httpx.post(url + "/state_clf/train", headers=h(APP_TOKEN)).status_code == 202
    deadline = time.monotonic() + 60
    while (status := listed()["state_clf"]["training"]["status"]) != "ready":
        assert status in ("training_queued", "training")
        assert time.monotonic() < deadline
        time.sleep(0.3)
    item = listed()["state_clf"]
    assert item["training"]["version"] == item["version"] and item["needs_training"] is False
    assert httpx.post(url + "/state_clf/data", headers=h(APP_TOKEN),
                      json={"data": [{"example": "Refund guaranteed", "compliance": "FAIL"}]}).status_code == 201
    assert listed()["state_clf"]["needs_training"] is True  # a row added since the training
    assert httpx.post(url + "/state_clf/train", headers=h(APP_TOKEN)).status_code == 202
    deadline = time.monotonic() + 60
    while listed()["state_clf"]["training"]["status"] != "ready":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert listed()["state_clf"]["needs_training"] is False
    assert httpx.patch(url + "/state_clf", headers=h(APP_TOKEN), json={"rule": "No refunds, ever"}).status_code == 200
    assert listed()["state_clf"]["needs_training"] is True  # edited since the trained version
    assert httpx.post(url + "/state_re/apply", headers=h(CENTRAL), json={"application": "app-b"}).status_code == 201
    assert httpx.post(url + "/state_re/apply", headers=h(CENTRAL),
                      json={"application": "app-a", "on": "output"}).status_code == 201
    assert listed()["state_re"]["applied"] == 2


def test_stage_validation_errors_name_the_field(console_gw: Gateway) -> None:
    """A stage that does not validate answers 400 naming the field as the body spells it (it used to
    name only `store.stages.<name>` with 'validation error for StageSpec')."""
    spec = {"name": "bad-stage", "on": "input", "scope": "central",
            "rulesets": [{"name": "a", "rules": [{"metric": "length", "op": "gt", "value": 5}], "action": {"type": "block"}},
                         {"name": "b", "rules": [{"metric": "length", "op": "gt", "value": 9}], "action": {"type": "override"}}]}
    e = error(httpx.post(console_gw.url + "/v1/admin/stages", headers=h(CENTRAL), json=spec), 400)
    assert e["param"] == "rulesets[1].action" and "needs `responses`" in e["message"]
    spec["rulesets"][1]["action"]["responses"] = ["no"]
    spec["rulesets"][1]["rules"][0]["op"] = "bogus"
    e = error(httpx.post(console_gw.url + "/v1/admin/stages", headers=h(CENTRAL), json=spec), 400)
    assert e["param"] == "rulesets[1].rules[0].op"
    spec["rulesets"][1]["rules"][0]["op"] = "contains_any"
    assert error(httpx.post(console_gw.url + "/v1/admin/stages", headers=h(CENTRAL), json=spec), 400)["param"] == \
        "rulesets[1].rules[0].value"


def test_config_stage_is_readable_alone(console_gw: Gateway) -> None:
    r = httpx.get(console_gw.url + "/v1/admin/stages/config-input", headers=h(APP_TOKEN))
    assert r.status_code == 200 and r.json()["source"] == "config" and r.json()["rulesets"][0]["name"] == "words"
    assert error(httpx.patch(console_gw.url + "/v1/admin/stages/config-input", headers=h(CENTRAL),
                             json={"mode": "monitor"}), 403)["code"] == "config_stage"


def dry(gw: Gateway, body: dict[str, Any], token: str = CENTRAL) -> httpx.Response:
    return httpx.post(gw.url + "/v1/admin/dry-run", headers=h(token), json=body)


def test_dry_run_applied_stages_drafts_and_errors(console_gw: Gateway) -> None:
    """G3: messages run through an application's stages as applied (the config stage blocks), with a draft
    stage added, with a stage subset; nothing reaches the upstream or the monitoring log; unknown fields
    and bad drafts are 400 naming the field, another application's stages 403 for an app token."""
    url = console_gw.url
    before = httpx.get(url + "/v1/monitoring?limit=1000", headers=h(CENTRAL)).json()["data"]
    r = dry(console_gw, {"application": "app-a", "model": "gpt-4o", "on": "input",
                         "messages": [{"role": "user", "content": "say configured-word now"}]})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["action"] == "block" and out["stage"] == "config-input" and out["ruleset"] == "words"
    assert out["response"] == {"status": 200, "kind": "completion", "text": "Blocked by the config stage.",
                               "finish_reason": "content_filter"}
    [stage] = [s for s in out["input"]["stages"] if s["stage"] == "config-input"]
    assert stage["source"] == "plan" and stage["rulesets"][0]["triggered"] is True
    assert stage["rulesets"][0]["rules"][0]["triggers"] is True and "config_words" in stage["seconds"]

    draft = {"name": "draft-out", "on": "output", "rulesets": [
        {"name": "card", "rules": [{"metric": "pii", "op": "contains_any", "value": ["CREDIT_CARD"]}],
         "action": {"type": "redact"}}], "applications": ["app-a"]}
    r = dry(console_gw, {"application": "app-a", "draft_stages": [draft], "messages": [
        {"role": "user", "content": "hello"}, {"role": "assistant", "content": "card 4111 1111 1111 1111 ok"}]})
    out = r.json()
    assert r.status_code == 200 and out["action"] == "redact" and out["stage"] == "draft-out", r.text
    assert out["output"]["stages"][-1]["source"] == "draft"
    assert out["response"]["kind"] == "forwarded" and "4111" not in out["response"]["text"]
    assert out["input"]["action"] is None

    # a subset: only the draft runs, so the config stage does not block the input
    r = dry(console_gw, {"application": "app-a", "stages": ["draft-out"], "draft_stages": [draft], "messages": [
        {"role": "user", "content": "configured-word"}, {"role": "assistant", "content": "fine"}]})
    assert r.json()["input"]["stages"] == [] and r.json()["action"] is None

    after = httpx.get(url + "/v1/monitoring?limit=1000", headers=h(CENTRAL)).json()["data"]
    assert len(after) == len(before)  # nothing logged

    base = {"application": "app-a", "messages": [{"role": "user", "content": "x"}], "on": "input"}
    assert error(dry(console_gw, {**base, "bogus": 1}), 400)["param"] == "bogus"
    assert error(dry(console_gw, {**base, "messages": [{"role": "user", "content": "x", "x": 1}]}),
                 400)["param"] == "messages[0].x"
    assert error(dry(console_gw, {**base, "on": "output"}), 400)["param"] == "messages"
    bad = {**draft, "rulesets": [{**draft["rulesets"][0], "rules": [{"metric": "nope", "op": "gt", "value": 1}]}]}
    assert error(dry(console_gw, {**base, "draft_stages": [bad]}), 400)["param"] == \
        "draft_stages[0].rulesets[0].rules[0].metric"
    assert error(dry(console_gw, {**base, "draft_stages": [{**draft, "colour": "red"}]}), 400)["param"] == \
        "draft_stages[0].colour"
    assert error(dry(console_gw, {**base, "stages": ["missing-stage"]}), 400)["param"] == "stages[0]"
    assert error(dry(console_gw, {**base, "application": "nope"}), 400)["param"] == "application"
    assert error(dry(console_gw, {**base, "application": "app-b"}, APP_TOKEN), 403)["param"] == "application"
    assert error(dry(console_gw, {**base, "draft_stages": [{**draft, "scope": "central"}]}, APP_TOKEN),
                 403)["param"] == "draft_stages[0].scope"


def test_dry_run_paused_and_named_versions(console_gw: Gateway) -> None:
    url = console_gw.url
    spec = {"name": "dry-central", "on": "input", "scope": "central", "rulesets": [
        {"name": "long", "rules": [{"metric": "length", "op": "gt", "value": 5}],
         "action": {"type": "override", "responses": ["v1 says no"]}}]}
    assert httpx.post(url + "/v1/admin/stages", headers=h(CENTRAL), json=spec).status_code == 201
    spec["rulesets"][0]["action"]["responses"] = ["v2 says no"]
    assert httpx.patch(url + "/v1/admin/stages/dry-central", headers=h(CENTRAL), json=spec).status_code == 200
    assert httpx.post(url + "/v1/admin/stages/dry-central/pause", headers=h(CENTRAL)).status_code == 200
    base = {"application": "app-b", "on": "input", "messages": [{"role": "user", "content": "a long message"}]}
    assert dry(console_gw, base).json()["action"] is None  # paused: not applied
    out = dry(console_gw, {**base, "include_paused": True}).json()
    assert out["action"] == "override" and out["response"]["text"] == "v2 says no"
    assert [s["source"] for s in out["input"]["stages"] if s["stage"] == "dry-central"] == ["paused"]
    out = dry(console_gw, {**base, "stages": ["dry-central@1"]}).json()
    assert out["response"]["text"] == "v1 says no" and out["input"]["stages"][0]["version"] == 1
    assert error(dry(console_gw, {**base, "stages": ["dry-central@9"]}), 404)["param"] == "stages[0]"
    assert error(dry(console_gw, {**base, "stages": ["dry-central@x"]}), 400)["param"] == "stages[0]"
    httpx.delete(url + "/v1/admin/stages/dry-central", headers=h(CENTRAL))


def test_stats_aggregate_the_log(console_gw: Gateway) -> None:
    """G14: a window's figures from the store's log: blocked and passed requests counted per action, the
    config stage's ruleset on top, a series whose buckets add up, an app token limited to its own records;
    unknown or bad query parameters are 400 naming them."""
    from tests.console.conftest import KEY_A, KEY_B

    url = console_gw.url
    start = time.time() - 1
    for key, text in ((KEY_A, "stats configured-word"), (KEY_A, "stats hello"), (KEY_B, "stats configured-word")):
        httpx.post(url + "/v1/chat/completions", headers=h(key),
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})
    deadline = time.monotonic() + 15
    while True:
        s = httpx.get(url + f"/v1/admin/stats?since={start}&bucket=60", headers=h(CENTRAL)).json()
        if s.get("actions", {}).get("block", 0) >= 2 and s["requests"] >= 3:
            break
        assert time.monotonic() < deadline, s
        time.sleep(0.2)
    assert s["object"] == "stats" and s["source"] == "store" and s["truncated"] is False
    assert s["acted"] >= 2 and s["top_rulesets"][0]["stage"] == "config-input"
    assert s["top_rulesets"][0]["ruleset"] == "words" and s["top_rulesets"][0]["mode"] == "enforce"
    assert sum(sum(b["counts"].values()) for b in s["series"]) == s["records"]
    assert {a["application"] for a in s["top_applications"]} >= {"app-a", "app-b"}
    mine = httpx.get(url + f"/v1/admin/stats?since={start}", headers=h(APP_TOKEN)).json()
    assert {a["application"] for a in mine["top_applications"]} == {"app-a"} and mine["application"] == "app-a"
    assert error(httpx.get(url + "/v1/admin/stats?application=app-b", headers=h(APP_TOKEN)), 403)["param"] == \
        "application"
    assert error(httpx.get(url + "/v1/admin/stats?group_by=x", headers=h(CENTRAL)), 400)["param"] == "group_by"
    assert error(httpx.get(url + "/v1/admin/stats?since=abc", headers=h(CENTRAL)), 400)["param"] == "since"
    assert error(httpx.get(url + f"/v1/admin/stats?since={start}&until={start - 5}", headers=h(CENTRAL)),
                 400)["param"] == "since"
    assert error(httpx.get(url + "/v1/admin/stats?since=0&bucket=1", headers=h(CENTRAL)), 400)["param"] == "bucket"
    assert httpx.get(url + "/v1/admin/stats").status_code == 401


def test_openapi_carries_the_validated_schemas(console_gw: Gateway) -> None:
    """G15 (first part): the bodies validated by a model are described by its JSON Schema in the document."""
    doc = httpx.get(console_gw.url + "/v1/admin/openapi.json").json()
    schemas = doc["components"]["schemas"]
    op = doc["paths"]["/v1/admin/dry-run"]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/DryRunRequest"}
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/DryRunResponse")
    assert schemas["DryRunRequest"]["additionalProperties"] is False
    assert set(schemas["DryRunRequest"]["required"]) == {"application", "messages"}
    stage = doc["paths"]["/v1/admin/stages"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert stage["allOf"][0] == {"$ref": "#/components/schemas/StageSpec"}
    assert "rulesets" in schemas["StageSpec"]["properties"] and "RulesetSpec" in schemas and "ActionSpec" in schemas
    assert "PolicySpec" in schemas and "/v1/admin/stats" in doc["paths"]
    for ref in _refs(doc):  # every reference resolves
        assert ref.split("/")[-1] in schemas, ref


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_evaluate_accepts_an_admin_token_with_an_application(console_gw: Gateway) -> None:
    """G4: /v1/guard/evaluate with an admin token names the application in the body (central: any known one;
    app tokens: their own); application keys work as before."""
    from tests.console.conftest import KEY_A

    url = console_gw.url + "/v1/guard/evaluate"
    body = {"messages": [{"role": "user", "content": "say configured-word"}], "policy_ids": ["config_words"]}
    r = httpx.post(url, headers=h(CENTRAL), json={**body, "application": "app-b"})
    assert r.status_code == 200 and r.json()["evaluation"]["status"] == "FAIL", r.text
    assert httpx.post(url, headers=h(APP_TOKEN), json={**body, "application": "app-a"}).json()["evaluation"]["status"] == "FAIL"
    assert error(httpx.post(url, headers=h(APP_TOKEN), json={**body, "application": "app-b"}), 403)["param"] == "application"
    assert error(httpx.post(url, headers=h(CENTRAL), json=body), 400)["param"] == "application"
    assert error(httpx.post(url, headers=h(CENTRAL), json={**body, "application": "nope"}), 400)["param"] == "application"
    assert error(httpx.post(url, headers=h("wrong"), json=body), 401)["code"] == "invalid_api_key"
    assert httpx.post(url, headers=h(KEY_A), json=body).json()["evaluation"]["status"] == "FAIL"


def test_training_rows_have_ids_and_are_edited_paged_and_deleted(console_gw: Gateway) -> None:
    """G9: rows carry id, created, author and source; PATCH/DELETE one row; ?source=&label=&limit=&after=;
    DELETE ?source= removes one source's rows; unknown fields and parameters are refused by name."""
    url = console_gw.url + "/v1/admin/policies"
    assert httpx.post(url, headers=h(APP_TOKEN), json={"id": "g9-rows", "type": "contains",
                                                       "keywords": ["x"]}).status_code == 201
    data = url + "/g9-rows/data"
    r = httpx.post(data, headers=h(APP_TOKEN), json={"data": [
        {"example": "one", "compliance": "FAIL"}, {"example": "two", "compliance": "PASS"},
        {"example": "three", "compliance": "FAIL"}]})
    assert r.status_code == 201, r.text
    error_body = error(httpx.post(data, headers=h(APP_TOKEN), json={"data": [{"example": "x", "compliance": "FAIL"}],
                                                                    "rows": []}), 400)
    assert error_body["param"] == "rows"
    page = httpx.get(data, headers=h(CENTRAL)).json()
    rows = page["data"]
    assert [(r["example"], r["compliance"], r["source"], r["author"]) for r in rows] == [
        ("one", "FAIL", "manual", "app:app-a"), ("two", "PASS", "manual", "app:app-a"),
        ("three", "FAIL", "manual", "app:app-a")]
    assert all(r["object"] == "training_row" and abs(r["created"] - time.time()) < 60 for r in rows)
    assert page["counts"] == {"rows": 3, "FAIL": 2, "PASS": 1, "manual": 3, "synthetic": 0, "feedback": 0}
    ids = [r["id"] for r in rows]
    # paging and filters
    first = httpx.get(data, headers=h(CENTRAL), params={"limit": 2}).json()
    assert [r["id"] for r in first["data"]] == ids[:2] and first["has_more"] and first["last_id"] == ids[1]
    rest = httpx.get(data, headers=h(CENTRAL), params={"limit": 2, "after": first["last_id"]}).json()
    assert [r["id"] for r in rest["data"]] == ids[2:] and not rest["has_more"]
    fails = httpx.get(data, headers=h(CENTRAL), params={"label": "fail"}).json()["data"]
    assert [r["example"] for r in fails] == ["one", "three"]
    assert httpx.get(data, headers=h(CENTRAL), params={"source": "synthetic"}).json()["data"] == []
    for params, param in (({"limit": 0}, "limit"), ({"limit": "x"}, "limit"), ({"after": -1}, "after"),
                          ({"label": "MAYBE"}, "label"), ({"source": "bot"}, "source"), ({"page": 2}, "page")):
        assert error(httpx.get(data, headers=h(CENTRAL), params=params), 400)["param"] == param, params
    # edit one row
    r = httpx.patch(f"{data}/{ids[1]}", headers=h(APP_TOKEN), json={"example": "two, edited", "compliance": "fail"})
    assert r.status_code == 200, r.text
    assert {k: r.json()[k] for k in ("id", "example", "compliance", "source")} == {
        "id": ids[1], "example": "two, edited", "compliance": "FAIL", "source": "manual"}
    for body, param in (({"label": "FAIL"}, "label"), ({}, "example"), ({"example": " "}, "example"),
                        ({"compliance": "MAYBE"}, "compliance"), ({"example": 3}, "example")):
        assert error(httpx.patch(f"{data}/{ids[1]}", headers=h(APP_TOKEN), json=body), 400)["param"] == param, body
    e = error(httpx.patch(f"{data}/999999", headers=h(APP_TOKEN), json={"compliance": "PASS"}), 404)
    assert (e["code"], e["param"]) == ("row_not_found", "row")
    assert error(httpx.patch(f"{data}/abc", headers=h(APP_TOKEN), json={"compliance": "PASS"}), 404)["param"] == "row"
    # another application's token may not touch them; config policies have no stored rows to edit
    assert httpx.post(url, headers=h(CENTRAL), json={"id": "g9-central", "type": "contains",
                                                     "keywords": ["x"]}).status_code == 201
    assert error(httpx.delete(url + f"/g9-central/data/{ids[0]}", headers=h(APP_TOKEN)), 403)["code"] == "forbidden"
    assert error(httpx.patch(url + f"/g9-central/data/{ids[0]}", headers=h(CENTRAL), json={"compliance": "PASS"}),
                 404)["code"] == "row_not_found"  # a row of another policy
    # delete one, then by source
    r = httpx.delete(f"{data}/{ids[0]}", headers=h(APP_TOKEN))
    assert r.json() == {"id": ids[0], "object": "training_row", "deleted": True}
    assert error(httpx.delete(f"{data}/{ids[0]}", headers=h(APP_TOKEN)), 404)["code"] == "row_not_found"
    httpx.post(data, headers=h(APP_TOKEN), json={"data": [{"example": "four", "compliance": "PASS"}]})
    assert error(httpx.delete(data, headers=h(APP_TOKEN)), 400)["param"] == "source"
    assert error(httpx.delete(data, headers=h(APP_TOKEN), params={"source": "manual", "x": 1}), 400)["param"] == "x"
    r = httpx.delete(data, headers=h(APP_TOKEN), params={"source": "synthetic"})
    assert r.json()["deleted"] == 0 and r.json()["total"] == 3
    r = httpx.delete(data, headers=h(APP_TOKEN), params={"source": "manual"})
    assert r.json()["deleted"] == 3 and r.json()["total"] == 0


def test_monitoring_records_latency_feedback_filters_and_cursor(console_gw: Gateway) -> None:
    """G12: records carry each metric's `seconds` and the feedback given on them; filters stage=, ruleset=,
    mode=monitor, errors=; `next_before` pages; unknown or bad parameters are 400 naming them."""
    from tests.console.conftest import KEY_B

    url = console_gw.url
    stage = {"name": "g12-watch", "on": "input", "scope": "application", "mode": "monitor", "models": ["gpt-g12"],
             "applications": ["app-b"], "rulesets": [
                 {"name": "g12-long", "rules": [{"metric": "length", "op": "gt", "value": 0}],
                  "action": {"type": "block"}}]}
    assert httpx.post(url + "/v1/admin/stages", headers=h(CENTRAL), json=stage).status_code == 201
    try:
        for text in ("g12 first", "g12 second", "g12 third configured-word"):  # the third: blocked before it
            r = httpx.post(url + "/v1/chat/completions", headers=h(KEY_B),
                           json={"model": "gpt-g12", "messages": [{"role": "user", "content": text}]})
            assert r.status_code == 200, r.text
        q = "/v1/monitoring?application=app-b&model=gpt-g12"
        deadline = time.monotonic() + 15
        while len(found := httpx.get(url + q, headers=h(CENTRAL)).json()["data"]) < 3:
            assert time.monotonic() < deadline, found
            time.sleep(0.2)
        blocked = found[0]
        assert blocked["texts"] == ["g12 third configured-word"] and blocked["action"] == "block"
        found = httpx.get(url + "/v1/monitoring?stage=g12-watch", headers=h(CENTRAL)).json()["data"]
        newest, older = found[:2]
        assert newest["texts"] == ["g12 second"] and newest["action"] is None
        [watch] = [s for s in newest["stages"] if s["stage"] == "g12-watch"]
        assert watch["mode"] == "monitor" and watch["triggered"] == ["g12-long"]
        assert set(watch["seconds"]) == {"length"} and 0 <= watch["seconds"]["length"] < 1
        assert newest["feedback"] == []
        # filters: ruleset, mode, errors, combined with the old ones
        assert [r["id"] for r in httpx.get(url + q + "&ruleset=g12-long", headers=h(CENTRAL)).json()["data"]][:2] == \
            [newest["id"], older["id"]]
        assert httpx.get(url + q + "&ruleset=words&mode=monitor", headers=h(CENTRAL)).json()["data"] == []
        enforced = httpx.get(url + q + "&mode=enforce", headers=h(CENTRAL)).json()["data"]
        assert [r["id"] for r in enforced] == [blocked["id"]]
        monitored = httpx.get(url + q + "&mode=monitor&stage=g12-watch", headers=h(CENTRAL)).json()["data"]
        assert [r["id"] for r in monitored] == [newest["id"], older["id"]]
        assert httpx.get(url + q + "&errors=true", headers=h(CENTRAL)).json()["data"] == []
        assert len(httpx.get(url + q + "&errors=false", headers=h(CENTRAL)).json()["data"]) == 3
        # the cursor
        page = httpx.get(url + "/v1/monitoring?stage=g12-watch&limit=1", headers=h(CENTRAL)).json()
        assert [r["id"] for r in page["data"]] == [newest["id"]] and page["next_before"] == newest["seq"]
        page = httpx.get(url + f"/v1/monitoring?stage=g12-watch&limit=1&before={page['next_before']}",
                         headers=h(CENTRAL)).json()
        assert [r["id"] for r in page["data"]] == [older["id"]]
        assert httpx.get(url + "/v1/monitoring?stage=g12-watch&limit=1000", headers=h(CENTRAL)).json()[
            "next_before"] is None
        # feedback state on the record
        r = httpx.post(url + "/v1/admin/feedback", headers=h(CENTRAL), json={
            "record_id": newest["id"], "on": "input", "policy_id": "config_words", "label": "PASS"})
        assert r.status_code == 201, r.text
        again = httpx.get(url + "/v1/monitoring?stage=g12-watch&limit=1", headers=h(CENTRAL)).json()["data"][0]
        assert again["feedback"] == [{"policy_id": "config_words", "label": "PASS", "applied": False}]
        # errors name the parameter
        for params, param in ((("mode", "sometimes"), "mode"), (("errors", "yes"), "errors"), (("stage", ""), "stage"),
                              (("ruleset", ""), "ruleset"), (("page", "2"), "page"), (("limit", "0"), "limit")):
            assert error(httpx.get(url + "/v1/monitoring", params=dict([params]), headers=h(CENTRAL)), 400)[
                "param"] == param, params
    finally:
        httpx.delete(url + "/v1/admin/stages/g12-watch", headers=h(CENTRAL))


def test_monitoring_filter_on_stage_outcomes() -> None:
    """The G12 predicate itself, on record bodies (errors and fail-open included, which a live gateway
    test cannot provoke cheaply)."""
    from gateway.admin.routes import record_filter

    def body(*stages: dict[str, Any]) -> dict[str, Any]:
        return {"stages": list(stages)}

    hit = {"stage": "s", "mode": "enforce", "triggered": ["r"], "errors": [], "fail_open": False}
    watch = {"stage": "w", "mode": "monitor", "triggered": ["m"], "errors": [], "fail_open": False}
    broken = {"stage": "b", "mode": "enforce", "triggered": [], "errors": ["judge: timeout"], "fail_open": True}
    quiet = {"stage": "q", "mode": "enforce", "triggered": [], "errors": [], "fail_open": False}
    assert record_filter({}) is None
    test = record_filter({"stage": "s"})
    assert test and test(body(hit)) and not test(body(quiet, watch))
    test = record_filter({"stage": "s", "ruleset": "m"})
    assert test and not test(body(hit, watch))  # the ruleset must have triggered in that stage
    test = record_filter({"mode": "monitor"})
    assert test and test(body(hit, watch)) and not test(body(hit))
    test = record_filter({"errors": "true"})
    assert test and test(body(quiet, broken)) and not test(body(hit)) and test(body({**quiet, "fail_open": True}))
    test = record_filter({"errors": "false", "mode": "enforce"})
    assert test and test(body(hit)) and not test(body(hit, broken)) and not test(body(quiet))


def test_policy_type_catalogue(console_gw: Gateway) -> None:
    """G15: GET /v1/admin/policy-types lists every type with its parameters as the metrics accept them."""
    from gateway.metrics import code, contains, judge, length, onnx_classifier, pii, regex
    from gateway.scoring.detectors import DETECTORS

    r = httpx.get(console_gw.url + "/v1/admin/policy-types", headers=h(APP_TOKEN))
    assert r.status_code == 200, r.text
    types = {t["type"]: t for t in r.json()["data"]}
    allowed = {"regex": regex._ALLOWED, "contains": contains._ALLOWED, "pii": pii._ALLOWED, "length": length._ALLOWED,
               "code": code._ALLOWED, "rubric": judge.PARAMS, "onnx_classifier": onnx_classifier._ALLOWED}
    for name, params in allowed.items():  # the catalogue names exactly what each metric accepts
        assert [p["name"] for p in types[name]["params"]] == list(params), name
    assert {p["name"]: p["required"] for p in types["regex"]["params"]}["patterns"] is True
    assert types["detector"]["params"][0]["schema"]["enum"] == list(DETECTORS)
    assert types["pii"]["params"][0]["schema"]["items"]["enum"] == sorted(pii.ENTITY_TYPES)
    assert (types["classifier"]["trainable"], types["similar"]["trainable"], types["regex"]["trainable"]) == (True, True, False)
    assert (types["code"]["writable"], types["onnx_classifier"]["writable"], types["rubric"]["writable"]) == (False, False, True)
    assert types["relevance"]["score"] == "compliance" and types["relevance"]["violated_when"] == "score < threshold"
    assert types["classifier"]["score"] == "risk"
    e = error(httpx.get(console_gw.url + "/v1/admin/policy-types?type=regex", headers=h(CENTRAL)), 400)
    assert (e["param"], e["code"]) == ("type", "unknown_parameter")
    error(httpx.get(console_gw.url + "/v1/admin/policy-types"), 401)


def test_metric_catalogue_builtins_and_policies(console_gw: Gateway) -> None:
    """G15: GET /v1/admin/metrics: built-ins and enforced policies, value kinds, the plan's valid operators."""
    from gateway.metrics.pii import ENTITY_TYPES

    url = console_gw.url + "/v1/admin/metrics"
    metrics = {m["name"]: m for m in httpx.get(url, headers=h(CENTRAL)).json()["data"]}
    assert metrics["pii"]["kind"] == "labels" and metrics["pii"]["labels"] == sorted(ENTITY_TYPES)
    assert "contains_any" in metrics["pii"]["ops"] and "contains" not in metrics["tokens"]["ops"]
    assert metrics["length"]["kind"] == "number" and metrics["prompt_injection"]["kind"] == "score"
    words = metrics["config_words"]
    assert (words["source"], words["kind"], words["type"], words["default"]) == (
        "policy", "score", "contains", {"op": "gt", "value": 0.5})
    assert "contains" not in words["ops"] and "gte" in words["ops"]
    body = {"id": "catalogue_regex", "type": "regex", "patterns": ["x{3}"], "threshold": 0.3}
    assert httpx.post(console_gw.url + "/v1/admin/policies", headers=h(APP_TOKEN), json=body).status_code == 201
    metrics = {m["name"]: m for m in httpx.get(url, headers=h(APP_TOKEN)).json()["data"]}
    assert metrics["catalogue_regex"]["default"] == {"op": "gt", "value": 0.3}
    stage = {"name": "catalogue-ops", "on": "input", "scope": "central", "rulesets": [
        {"name": "r", "rules": [{"metric": "tokens", "op": "contains", "value": "X"}], "action": {"type": "block"}}]}
    e = error(httpx.post(console_gw.url + "/v1/admin/stages", headers=h(CENTRAL), json=stage), 400)
    assert e["param"] == "rulesets[0].rules[0].value"  # an op the catalogue leaves out is refused by the plan
    e = error(httpx.get(url + "?kind=score", headers=h(CENTRAL)), 400)
    assert e["param"] == "kind"
    assert httpx.delete(console_gw.url + "/v1/admin/policies/catalogue_regex", headers=h(CENTRAL)).status_code == 200


def test_openapi_types_the_remaining_bodies(console_gw: Gateway) -> None:
    """G15 (rest): hand-validated bodies are written out; strict ones (additionalProperties false) are refused
    with the unknown field named, as the schema says."""
    doc = httpx.get(console_gw.url + "/v1/admin/openapi.json").json()

    def body(path: str, method: str) -> dict[str, Any]:
        return doc["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]

    assert body("/v1/admin/session", "post")["required"] == ["token"]
    row = body("/v1/admin/policies/{id}/data/{row}", "patch")
    assert set(row["properties"]) == {"example", "compliance"} and row["additionalProperties"] is False
    assert body("/v1/admin/policies/{id}/data", "post")["required"] == ["data"]
    assert set(body("/v1/admin/feedback", "post")["properties"]) == {"record_id", "policy_id", "label", "compliance", "on"}
    assert "threshold" in body("/v1/admin/policies/{id}", "patch")["properties"]
    assert "rulesets" in body("/v1/admin/stages/{name}", "patch")["properties"]
    assert "key" in body("/v1/admin/applications", "post")["properties"]
    assert body("/v1/admin/applications/{id}/keys", "delete")["properties"]["keep"]["minimum"] == 0
    untyped = sorted(f"{m.upper()} {p}" for p, ops in doc["paths"].items() for m, op in ops.items()
                     if op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
                     == {"type": "object"})
    assert all(u.endswith(("/train", "/pause", "/resume", "/apply-feedback", "/evaluate", "/adopt")) for u in untyped), untyped
    for ref in _refs(doc):
        assert ref.split("/")[-1] in doc["components"]["schemas"], ref
    # the strict bodies refuse an unknown field by name
    url = console_gw.url + "/v1/admin/feedback"
    e = error(httpx.post(url, headers=h(CENTRAL), json={"record_id": "x", "policy_id": "config_words",
                                                         "label": "PASS", "why": "typo"}), 400)
    assert e["param"] == "why"
    e = error(httpx.post(console_gw.url + "/v1/admin/applications", headers=h(CENTRAL),
                         json={"id": "schema-app", "rate": 5}), 400)
    assert e["param"] == "rate"
