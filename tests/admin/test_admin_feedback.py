"""G13: feedback items against a real gateway process. Each item carries its id, the monitoring record it
labels (record_id, on), created and author; a policy's list is filtered by ?record_id=, and
GET /v1/admin/feedback?record_id= lists a record's items for every policy. DELETE /v1/admin/feedback/{item}
removes one: 404 for an unknown item; central may delete any item, an application admin the items on its
own policies and the unapplied items it gave itself; an applied item also loses the training row it
wrote, so wrong feedback no longer reaches the next training. An application token gives feedback only on
its own policies and on central ones that run on its traffic, and reads another's policy's items only
where they are its own or on its own records."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway, running_gateway

CENTRAL, ADMIN_A, ADMIN_B = "admin-central", "admin-app-a", "admin-app-b"
KEY_A, KEY_B = "sk-app-a", "sk-app-b"


def _config(upstream: str, port: int) -> str:
    return f"""
server: {{host: 127.0.0.1, port: {port}}}
upstreams: [{{name: main, base_url: "{upstream}", models: ["gpt-*"]}}]
applications:
  - {{id: app-a, keys: ["{KEY_A}"]}}
  - {{id: app-b, keys: ["{KEY_B}"]}}
admin:
  tokens:
    - {{token: {CENTRAL}, role: central}}
    - {{token: {ADMIN_A}, role: "app:app-a"}}
    - {{token: {ADMIN_B}, role: "app:app-b"}}
policies:
  - {{id: from_config, type: contains, keywords: ["configured-word"]}}
stages:
  - {{name: watch, scope: central, on: input, rulesets: [{{name: w, mode: monitor,
      rules: [{{metric: length, op: gt, value: 0}}], action: {{type: block}}}}]}}
"""


def h(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def gw(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("feedback"), lambda port: _config(upstream, port)) as g:
        yield g


def _record(gw: Gateway, key: str, text: str) -> str:
    r = httpx.post(gw.url + "/v1/chat/completions", headers=h(key), timeout=10,
                   json={"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})
    assert r.status_code == 200, r.text
    return r.headers["x-guardrail-request-id"]


def _give(gw: Gateway, token: str, record_id: str, policy: str, label: str) -> dict[str, Any]:
    r = httpx.post(gw.url + "/v1/admin/feedback", headers=h(token),
                   json={"record_id": record_id, "policy_id": policy, "label": label})
    assert r.status_code == 201, r.text
    return r.json()


def _list(gw: Gateway, token: str, policy: str, query: str = "") -> list[dict[str, Any]]:
    r = httpx.get(gw.url + f"/v1/admin/policies/{policy}/feedback{query}", headers=h(token))
    assert r.status_code == 200, r.text
    return r.json()["data"]


def _delete(gw: Gateway, token: str, item: Any) -> httpx.Response:
    return httpx.delete(gw.url + f"/v1/admin/feedback/{item}", headers=h(token))


def _policy(gw: Gateway, token: str, policy_id: str) -> None:
    r = httpx.post(gw.url + "/v1/admin/policies", headers=h(token),
                   json={"id": policy_id, "type": "contains", "keywords": ["zzz"]})
    assert r.status_code == 201, r.text


def _apply(gw: Gateway, token: str, policy_id: str, application: str) -> None:
    r = httpx.post(gw.url + f"/v1/admin/policies/{policy_id}/apply", headers=h(token),
                   json={"application": application, "action": {"type": "block"}})
    assert r.status_code == 201, r.text


def test_items_carry_record_time_author_and_are_filtered_by_record(gw: Gateway) -> None:
    _policy(gw, ADMIN_A, "fb-list")
    r1, r2 = _record(gw, KEY_A, "first record"), _record(gw, KEY_A, "second record")
    before = time.time()
    given = _give(gw, ADMIN_A, r1, "fb-list", "fail")
    assert given["record_id"] == r1 and given["on"] == "input" and given["author"] == "app:app-a"
    assert before - 1 <= given["created"] <= time.time() + 1
    assert given["label"] == "FAIL" and given["applied"] is False and given["training_row"] is None
    _give(gw, CENTRAL, r2, "fb-list", "PASS")
    items = _list(gw, ADMIN_A, "fb-list")
    assert [(f["record_id"], f["author"], f["label"]) for f in items] == [(r1, "app:app-a", "FAIL"),
                                                                          (r2, "central", "PASS")]
    assert items[0] == given and isinstance(items[0]["id"], int)
    assert [f["record_id"] for f in _list(gw, CENTRAL, "fb-list", f"?record_id={r2}")] == [r2]
    assert _list(gw, CENTRAL, "fb-list", f"?record_id={r2}&on=output") == []
    assert _list(gw, CENTRAL, "fb-list", "?record_id=unknown") == []
    for query, param in (("?on=sideways", "on"), ("?recordid=x", "recordid"), ("?record_id=", "record_id")):
        r = httpx.get(gw.url + "/v1/admin/policies/fb-list/feedback" + query, headers=h(CENTRAL))
        assert r.status_code == 400 and r.json()["error"]["param"] == param, (query, r.text)


def test_a_records_feedback_for_every_policy(gw: Gateway) -> None:
    _policy(gw, CENTRAL, "fb-central")
    _policy(gw, ADMIN_A, "fb-mine")
    mine, theirs = _record(gw, KEY_A, "app a's record"), _record(gw, KEY_B, "app b's record")
    _give(gw, CENTRAL, mine, "fb-central", "PASS")
    _give(gw, ADMIN_A, mine, "fb-mine", "FAIL")
    _give(gw, CENTRAL, theirs, "fb-central", "FAIL")
    url = gw.url + "/v1/admin/feedback"
    found = httpx.get(url, params={"record_id": mine}, headers=h(ADMIN_A)).json()
    assert found["record_id"] == mine
    assert [(f["policy_id"], f["author"]) for f in found["data"]] == [("fb-central", "central"),
                                                                      ("fb-mine", "app:app-a")]
    assert httpx.get(url, params={"record_id": mine, "on": "output"}, headers=h(CENTRAL)).json()["data"] == []
    assert len(httpx.get(url, params={"record_id": theirs}, headers=h(CENTRAL)).json()["data"]) == 1
    r = httpx.get(url, params={"record_id": theirs}, headers=h(ADMIN_A))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = httpx.get(url, headers=h(CENTRAL))
    assert r.status_code == 400 and r.json()["error"]["param"] == "record_id"


def test_delete_unknown_and_permissions(gw: Gateway) -> None:
    _policy(gw, CENTRAL, "fb-perm-central")
    _apply(gw, CENTRAL, "fb-perm-central", "app-a")  # so app-a may label it
    _policy(gw, ADMIN_A, "fb-perm-mine")
    record = _record(gw, KEY_A, "permission record")
    for item in (10**9, "abc", 2**70):
        r = _delete(gw, CENTRAL, item)
        assert r.status_code == 404 and r.json()["error"]["code"] == "feedback_not_found", (item, r.text)
    central_item = _give(gw, CENTRAL, record, "fb-perm-central", "PASS")
    r = _delete(gw, ADMIN_A, central_item["id"])  # central's item on central's policy
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    on_mine = _give(gw, CENTRAL, record, "fb-perm-mine", "PASS")  # central's item on app-a's policy
    own = _give(gw, ADMIN_A, record, "fb-perm-central", "FAIL")  # app-a's unapplied item on central's policy
    on_config = _give(gw, CENTRAL, record, "from_config", "FAIL")
    for token, item in ((ADMIN_A, on_mine), (ADMIN_A, own), (CENTRAL, on_config), (CENTRAL, central_item)):
        r = _delete(gw, token, item["id"])
        assert r.status_code == 200, r.text
        assert r.json()["deleted"] is True and r.json()["id"] == item["id"] and r.json()["training_row_deleted"] is None
        assert _delete(gw, token, item["id"]).status_code == 404
    assert _list(gw, CENTRAL, "fb-perm-central") == [] and _list(gw, CENTRAL, "fb-perm-mine") == []


def test_deleting_an_applied_item_removes_its_training_row(gw: Gateway) -> None:
    _policy(gw, ADMIN_A, "fb-applied")
    _policy(gw, CENTRAL, "fb-applied-central")
    _apply(gw, ADMIN_A, "fb-applied-central", "app-a")
    wrong, right = _record(gw, KEY_A, "a wrongly labelled case"), _record(gw, KEY_A, "a rightly labelled case")
    bad = _give(gw, ADMIN_A, wrong, "fb-applied", "PASS")
    good = _give(gw, ADMIN_A, right, "fb-applied", "FAIL")
    base = gw.url + "/v1/admin/policies/fb-applied"
    assert httpx.post(base + "/apply-feedback", headers=h(ADMIN_A)).json()["applied"] == 2
    items = {f["id"]: f for f in _list(gw, ADMIN_A, "fb-applied")}
    rows = {row["id"]: row for row in httpx.get(base + "/data?source=feedback", headers=h(ADMIN_A)).json()["data"]}
    assert items[bad["id"]]["applied"] and sorted(rows) == sorted(f["training_row"] for f in items.values())
    assert rows[items[bad["id"]]["training_row"]]["example"] == "a wrongly labelled case"
    r = _delete(gw, ADMIN_A, bad["id"])
    assert r.status_code == 200, r.text
    assert r.json()["training_row_deleted"] == items[bad["id"]]["training_row"] and r.json()["applied"] is True
    left = httpx.get(base + "/data?source=feedback", headers=h(ADMIN_A)).json()["data"]
    assert [row["id"] for row in left] == [items[good["id"]]["training_row"]]
    assert [f["id"] for f in _list(gw, ADMIN_A, "fb-applied")] == [good["id"]]
    # An application admin's own item, once applied to central's policy, is central's to delete.
    own = _give(gw, ADMIN_A, wrong, "fb-applied-central", "PASS")
    httpx.post(gw.url + "/v1/admin/policies/fb-applied-central/apply-feedback", headers=h(CENTRAL))
    r = _delete(gw, ADMIN_A, own["id"])
    assert r.status_code == 403 and "training row" in r.json()["error"]["message"]
    r = _delete(gw, CENTRAL, own["id"])
    assert r.status_code == 200 and r.json()["training_row_deleted"] is not None
    assert httpx.get(gw.url + "/v1/admin/policies/fb-applied-central/data", headers=h(CENTRAL)).json()["data"] == []


def test_an_item_applied_before_rows_were_kept_takes_one_matching_row(tmp_path) -> None:
    """Feedback applied by an older gateway (mark_applied, no row id kept): deleting it removes one feedback
    row of the same text and label, not a manual row, and not the twin of another item."""
    import asyncio

    from gateway.policies.data import delete_feedback
    from gateway.store import Example, open_store

    async def body() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'old.db'}")
        try:
            items = [await store.add_feedback(0, "p", "FAIL", "same text", record=f"r{i}:input") for i in range(2)]
            await store.add_examples("p", [Example("same text", "FAIL"), *[
                Example("same text", "FAIL", source="feedback") for _ in items]])
            await store.mark_applied([f.seq for f in items])
            gone, row = await delete_feedback(store, items[0].seq)
            assert gone is not None and gone.row == 0 and row is not None
            left = await store.examples("p")
            assert [(e.source, e.seq != row) for e in left] == [("manual", True), ("feedback", True)]
            assert (await delete_feedback(store, items[0].seq)) == (None, None)
        finally:
            await store.close()
    asyncio.run(body())


def _refused(r: httpx.Response, param: str) -> None:
    assert r.status_code == 403, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["code"] == "forbidden", r.text
    assert "app-a" not in error["message"] and "app:" not in error["message"], r.text  # never who owns it


def test_another_application_neither_reads_nor_labels_a_policy(gw: Gateway) -> None:
    """An application token lists another application's policy's items only where it gave them or they are
    on its own records, and gives feedback only on its own policies and on central ones that run on its
    traffic: never on another application's policy (even one it runs on its own traffic), which would
    put its texts into that policy's training data."""
    _policy(gw, ADMIN_A, "fb-iso-a")
    _policy(gw, CENTRAL, "fb-iso-central")
    ra, rb = _record(gw, KEY_A, "app a's private text"), _record(gw, KEY_B, "app b's own text")
    a_own = _give(gw, ADMIN_A, ra, "fb-iso-a", "FAIL")
    central_on_a = _give(gw, CENTRAL, ra, "fb-iso-a", "PASS")
    central_on_b = _give(gw, CENTRAL, rb, "fb-iso-a", "FAIL")
    everything = [a_own["id"], central_on_a["id"], central_on_b["id"]]
    assert [f["id"] for f in _list(gw, ADMIN_A, "fb-iso-a")] == everything  # the owner sees all
    assert [f["id"] for f in _list(gw, CENTRAL, "fb-iso-a")] == everything
    assert [f["id"] for f in _list(gw, ADMIN_B, "fb-iso-a")] == [central_on_b["id"]]
    assert _list(gw, ADMIN_B, "fb-iso-a", f"?record_id={ra}") == []
    give = {"record_id": rb, "policy_id": "fb-iso-a", "label": "PASS"}
    _refused(httpx.post(gw.url + "/v1/admin/feedback", headers=h(ADMIN_B), json=give), "policy_id")
    _apply(gw, ADMIN_B, "fb-iso-a", "app-b")  # running app-a's policy on its own traffic changes nothing
    rb2 = _record(gw, KEY_B, "app b's text, measured by app a's policy")
    for record in (rb, rb2):
        _refused(httpx.post(gw.url + "/v1/admin/feedback", headers=h(ADMIN_B), json={**give, "record_id": record}),
                 "policy_id")
    r = httpx.post(gw.url + "/v1/admin/policies/fb-iso-a/apply-feedback", headers=h(ADMIN_B))
    assert r.status_code == 403 and "app-a" not in r.json()["error"]["message"], r.text
    r = _delete(gw, ADMIN_B, central_on_b["id"])  # central's item on app-a's policy
    assert r.status_code == 403 and "app-a" not in r.json()["error"]["message"], r.text
    assert [f["id"] for f in _list(gw, ADMIN_A, "fb-iso-a")] == everything
    # A central policy: labelled once it runs on app-b's traffic; a config policy that runs nowhere: not.
    give = {"record_id": rb, "policy_id": "fb-iso-central", "label": "FAIL"}
    _refused(httpx.post(gw.url + "/v1/admin/feedback", headers=h(ADMIN_B), json=give), "policy_id")
    _refused(httpx.post(gw.url + "/v1/admin/feedback", headers=h(ADMIN_B), json={**give, "policy_id": "from_config"}),
             "policy_id")
    _apply(gw, CENTRAL, "fb-iso-central", "app-b")
    b_own = _give(gw, ADMIN_B, rb, "fb-iso-central", "FAIL")
    central_on_a_central = _give(gw, CENTRAL, ra, "fb-iso-central", "PASS")
    assert [f["id"] for f in _list(gw, ADMIN_B, "fb-iso-central")] == [b_own["id"]]
    assert [f["id"] for f in _list(gw, ADMIN_A, "fb-iso-central")] == [central_on_a_central["id"]]
    assert [f["id"] for f in _list(gw, CENTRAL, "fb-iso-central")] == [b_own["id"], central_on_a_central["id"]]
    assert _give(gw, ADMIN_A, ra, "fb-iso-a", "PASS")["author"] == "app:app-a"  # app-a labels its own still


def test_a_repeated_parameter_is_refused_by_name(gw: Gateway) -> None:
    _policy(gw, CENTRAL, "fb-repeat")
    for url in ("/v1/admin/policies/fb-repeat/feedback", "/v1/admin/feedback"):
        for query, param in (("?record_id=a&record_id=b", "record_id"), ("?record_id=a&on=input&on=output", "on")):
            r = httpx.get(gw.url + url + query, headers=h(CENTRAL))
            assert r.status_code == 400 and r.json()["error"]["param"] == param, (url, query, r.text)


def test_an_item_applied_after_the_permission_check_is_kept(tmp_path) -> None:
    """An application admin deletes the unapplied item it gave on central's policy while central applies
    it: the store checks `unapplied` as it deletes, so the item and its training row stay (409)."""
    import asyncio
    from types import SimpleNamespace

    from starlette.datastructures import QueryParams

    from gateway.admin.auth import Role
    from gateway.admin.policy_data import PolicyData
    from gateway.store import open_store
    from gateway.wire import OpenAIError

    async def body() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'race.db'}")
        try:
            item = await store.add_feedback(0, "central-p", "FAIL", "t", record="r1:input", author="app:app-a")

            class Stale:  # the permission check reads the item unapplied; then central applies it
                def __getattr__(self, name: str) -> Any:
                    return getattr(store, name)

                async def feedback_item(self, seq: int) -> Any:
                    found = await store.feedback_item(seq)
                    await store.apply_feedback("central-p", "central")
                    return found

            admin = PolicyData.__new__(PolicyData)
            admin.store = Stale()  # type: ignore[assignment]
            request: Any = SimpleNamespace(path_params={"item": str(item.seq)}, query_params=QueryParams(""))
            with pytest.raises(OpenAIError) as refused:
                await admin.delete_feedback(request, Role(False, "app-a"))
            assert refused.value.status == 409 and refused.value.param == "item", refused.value.message
            kept = await store.feedback_item(item.seq)
            assert kept is not None and kept.applied and kept.row
            assert [e.seq for e in await store.examples("central-p", source="feedback")] == [kept.row]
        finally:
            await store.close()
    asyncio.run(body())


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_legacy_item_never_takes_a_row_another_item_keeps(tmp_path, kind: str) -> None:
    """An item applied before rows were kept, whose own row is gone, and a newer item of the same text and
    label applied since (its row kept): deleting the old item leaves the newer item's row, and a row
    written before the old item was given (it cannot be its row)."""
    import asyncio
    import uuid

    from gateway.policies.data import delete_feedback
    from gateway.store import Example, open_store
    from tests.redisutil import drop_prefix

    url, prefix = "redis://127.0.0.1:6379/0", f"test-legacy-{uuid.uuid4().hex[:10]}:"

    async def body() -> None:
        store = open_store(f"sqlite:///{tmp_path / 'legacy.db'}" if kind == "sqlite" else url, prefix=prefix)
        try:
            await store.add_examples("p", [Example("same text", "FAIL", source="feedback")])  # older than the item
            time.sleep(0.01)
            old = await store.add_feedback(0, "p", "FAIL", "same text", record="r1:input")
            await store.mark_applied([old.seq])  # applied the old way: no row id kept (and its row is gone)
            new = await store.add_feedback(0, "p", "FAIL", "same text", record="r2:input", author="central")
            [applied] = await store.apply_feedback("p", "central")
            assert applied.seq == new.seq and applied.row
            before = [e.seq for e in await store.examples("p")]
            gone, row = await delete_feedback(store, old.seq)
            assert gone is not None and gone.seq == old.seq and row is None
            assert [e.seq for e in await store.examples("p")] == before
            assert (await delete_feedback(store, new.seq))[1] == applied.row
        finally:
            await store.close()
    try:
        asyncio.run(body())
    finally:
        drop_prefix(url, prefix)
