"""G19 optimistic concurrency, G16 dry runs, G11 version notes, summaries and light policy reads, G8 the
held-out threshold curve: against a real gateway process."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.admin.test_policy_admin import CENTRAL, _config, _wait_trained, h
from tests.conftest import Gateway, running_gateway

P = "/v1/admin/policies"
S = "/v1/admin/stages"


@pytest.fixture(scope="module")
def gw(upstream: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with running_gateway(tmp_path_factory.mktemp("versions"), lambda port: _config(upstream, port)) as g:
        yield g


def error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    return r.json()["error"]


def versions(gw: Gateway, path: str) -> list[dict]:
    return httpx.get(gw.url + path + "/versions", headers=h(CENTRAL)).json()["data"]


def test_policy_writes_name_the_version_they_are_based_on(gw: Gateway) -> None:
    url = gw.url + P + "/g19"
    assert httpx.post(gw.url + P, headers=h(CENTRAL), json={"id": "g19", "type": "contains",
                                                            "keywords": ["a"]}).status_code == 201
    r = httpx.patch(url, headers=h(CENTRAL), json={"keywords": ["b"], "expected_version": 1})
    assert r.status_code == 200 and r.json()["version"] == 2
    e = error(httpx.patch(url, headers=h(CENTRAL), json={"keywords": ["c"], "expected_version": 1}), 409)
    assert e["code"] == "version_conflict" and e["param"] == "expected_version" and "version 2" in e["message"]
    e = error(httpx.patch(url, headers={**h(CENTRAL), "If-Match": '"1"'}, json={"keywords": ["c"]}), 409)
    assert e["code"] == "version_conflict" and e["param"] == "If-Match"
    assert httpx.patch(url, headers={**h(CENTRAL), "If-Match": "2"}, json={"keywords": ["c"]}).json()["version"] == 3
    assert len(versions(gw, P + "/g19")) == 3  # the refused writes wrote nothing
    e = error(httpx.patch(url, headers={**h(CENTRAL), "If-Match": "3"}, json={"expected_version": 2}), 400)
    assert e["param"] == "expected_version"
    assert error(httpx.patch(url, headers=h(CENTRAL), json={"expected_version": "three"}), 400)["param"] == \
        "expected_version"
    assert error(httpx.patch(url, headers={**h(CENTRAL), "If-Match": "*x"}, json={}), 400)["param"] == "If-Match"
    # revert and the seed-002 threshold endpoint take it too
    e = error(httpx.post(url + "/revert", headers=h(CENTRAL), json={"version": 1, "expected_version": 2}), 409)
    assert e["code"] == "version_conflict" and "version 3" in e["message"]
    assert httpx.post(url + "/revert", headers=h(CENTRAL), json={"version": 1, "expected_version": 3}).json()[
        "version"] == 4
    threshold = gw.url + "/v1/moderation/policy/g19/update-threshold"
    e = error(httpx.put(threshold, headers=h(CENTRAL), json={"classification_threshold": 0.3, "expected_version": 3}),
              409)
    assert e["code"] == "version_conflict"
    r = httpx.put(threshold, headers=h(CENTRAL), json={"classification_threshold": 0.3, "expected_version": 4})
    assert r.status_code == 200 and r.json()["version"] == 5
    assert len(versions(gw, P + "/g19")) == 5
    # without it, last write wins as before
    assert httpx.patch(url, headers=h(CENTRAL), json={"keywords": ["d"]}).json()["version"] == 6


def test_stage_writes_name_the_version_they_are_based_on(gw: Gateway) -> None:
    stage = {"name": "g19-stage", "scope": "central", "on": "input",
             "rulesets": [{"name": "r", "rules": [{"metric": "from_config"}], "action": {"type": "block"}}]}
    assert httpx.post(gw.url + S, headers=h(CENTRAL), json=stage).status_code == 201
    url = gw.url + S + "/g19-stage"
    assert httpx.patch(url, headers=h(CENTRAL), json={"mode": "monitor", "expected_version": 1}).json()["version"] == 2
    e = error(httpx.patch(url, headers=h(CENTRAL), json={"mode": "enforce", "expected_version": 1}), 409)
    assert e["code"] == "version_conflict" and e["param"] == "expected_version" and "version 2" in e["message"]
    e = error(httpx.post(url + "/revert", headers={**h(CENTRAL), "If-Match": "1"}, json={"version": 1}), 409)
    assert e["param"] == "If-Match"
    assert httpx.post(url + "/revert", headers={**h(CENTRAL), "If-Match": "2"}, json={"version": 1}).json()[
        "version"] == 3
    assert len(versions(gw, S + "/g19-stage")) == 3


def test_dry_run_validates_and_writes_nothing(gw: Gateway) -> None:
    body = {"id": "g16", "type": "regex", "patterns": ["PRJ-[0-9]+"], "note": "first"}
    r = httpx.post(gw.url + P + "?dry_run=true", headers=h(CENTRAL), json=body)
    assert r.status_code == 200, r.text
    assert r.json()["dry_run"] is True and r.json()["version"] == 1 and r.json()["patterns"] == ["PRJ-[0-9]+"]
    assert r.json()["note"] == "first"
    assert httpx.get(gw.url + P + "/g16", headers=h(CENTRAL)).status_code == 404
    e = error(httpx.post(gw.url + P + "?dry_run=true", headers=h(CENTRAL), json={**body, "patterns": ["(a)\\1"]}),
              400)
    assert e["param"] == "patterns[0]"
    assert error(httpx.post(gw.url + P + "?dry_run=maybe", headers=h(CENTRAL), json=body), 400)["param"] == "dry_run"
    assert error(httpx.post(gw.url + P + "?dryrun=1", headers=h(CENTRAL), json=body), 400)["param"] == "dryrun"
    assert httpx.post(gw.url + P, headers=h(CENTRAL), json=body).status_code == 201
    url = gw.url + P + "/g16"
    r = httpx.patch(url + "?dry_run=true", headers=h(CENTRAL), json={"patterns": ["X-[0-9]+"]})
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["patterns"] == ["X-[0-9]+"]
    e = error(httpx.patch(url + "?dry_run=true", headers=h(CENTRAL), json={"threshold": 7}), 400)
    assert e["param"] == "threshold"
    e = error(httpx.patch(url + "?dry_run=true", headers=h(CENTRAL), json={"expected_version": 9}), 409)
    assert e["code"] == "version_conflict"
    now = httpx.get(url, headers=h(CENTRAL)).json()
    assert now["version"] == 1 and now["patterns"] == ["PRJ-[0-9]+"]
    # stages
    stage = {"name": "g16-stage", "on": "input", "applications": ["app-a"],
             "rulesets": [{"name": "r", "rules": [{"metric": "g16"}], "action": {"type": "block"}}]}
    r = httpx.post(gw.url + S + "?dry_run=1", headers=h(CENTRAL), json=stage)
    assert r.status_code == 200 and r.json()["dry_run"] is True and r.json()["version"] == 1
    bad = {**stage, "rulesets": [{"name": "r", "rules": [{"metric": "no-such-policy"}], "action": {"type": "block"}}]}
    e = error(httpx.post(gw.url + S + "?dry_run=true", headers=h(CENTRAL), json=bad), 400)
    assert e["param"] and e["param"].startswith("rulesets")
    assert httpx.get(gw.url + S + "/g16-stage", headers=h(CENTRAL)).status_code == 404
    assert httpx.post(gw.url + S, headers=h(CENTRAL), json=stage).status_code == 201
    r = httpx.patch(gw.url + S + "/g16-stage?dry_run=true", headers=h(CENTRAL), json={"mode": "monitor"})
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["mode"] == "monitor"
    assert httpx.get(gw.url + S + "/g16-stage", headers=h(CENTRAL)).json()["version"] == 1


def test_notes_summaries_and_refused_fields(gw: Gateway) -> None:
    assert httpx.post(gw.url + P, headers=h(CENTRAL), json={"id": "g11", "type": "contains", "keywords": ["a"],
                                                            "note": "created"}).status_code == 201
    url = gw.url + P + "/g11"
    httpx.patch(url, headers=h(CENTRAL), json={"keywords": ["b"], "note": "widen it"})
    httpx.post(url + "/revert", headers=h(CENTRAL), json={"version": 1, "note": "too wide"})
    httpx.put(gw.url + "/v1/moderation/policy/g11/update-threshold", headers=h(CENTRAL),
              json={"classification_threshold": 0.4, "note": "stricter"})
    full = versions(gw, P + "/g11")
    assert [v["note"] for v in full] == ["created", "widen it", "revert to version 1: too wide", "stricter"]
    assert "keywords" in full[0]
    summary = httpx.get(url + "/versions?summary=true", headers=h(CENTRAL)).json()["data"]
    assert [set(v) for v in summary] == [{"id", "object", "version", "updated", "author", "note", "current"}] * 4
    assert [v["current"] for v in summary] == [False, False, False, True]
    assert error(httpx.get(url + "/versions?summary=perhaps", headers=h(CENTRAL)), 400)["param"] == "summary"
    assert error(httpx.get(url + "/versions?limit=2", headers=h(CENTRAL)), 400)["param"] == "limit"
    assert error(httpx.get(url + "?include=everything", headers=h(CENTRAL)), 400)["param"] == "include"
    assert error(httpx.patch(url, headers=h(CENTRAL), json={"note": 5}), 400)["param"] == "note"
    assert error(httpx.patch(url, headers=h(CENTRAL), json={"note": "x" * 501}), 400)["param"] == "note"
    for path, body, param in [
            ("/revert", {"version": 1, "comment": "x"}, "comment"),
            ("/train", {"notes": "x"}, "notes")]:
        assert error(httpx.post(url + path, headers=h(CENTRAL), json=body), 400)["param"] == param
    e = error(httpx.put(gw.url + "/v1/moderation/policy/g11/update-threshold", headers=h(CENTRAL),
                        json={"classification_threshold": 0.4, "reason": "x"}), 400)
    assert e["param"] == "reason"
    assert len(versions(gw, P + "/g11")) == 4
    stage = {"name": "g11-stage", "on": "input", "applications": ["app-a"], "note": "new stage",
             "rulesets": [{"name": "r", "rules": [{"metric": "g11"}], "action": {"type": "block"}}]}
    assert httpx.post(gw.url + S, headers=h(CENTRAL), json=stage).status_code == 201
    httpx.patch(gw.url + S + "/g11-stage", headers=h(CENTRAL), json={"mode": "monitor", "note": "watch first"})
    notes = [v["note"] for v in httpx.get(gw.url + S + "/g11-stage/versions?summary=true", headers=h(CENTRAL)).json()["data"]]
    assert notes == ["new stage", "watch first"]
    assert error(httpx.post(gw.url + S + "/g11-stage/revert", headers=h(CENTRAL), json={"version": 1, "x": 1}),
                 400)["param"] == "x"


def test_training_stores_a_threshold_curve(gw: Gateway) -> None:
    policy = {"id": "g8", "type": "classifier", "threshold": 0.0, "rule": "No talk of unreleased products",
              "disallowed_behaviors": ["revealing the codename of an unreleased product"],
              "allowed_behaviors": ["talking about released products"]}
    assert httpx.post(gw.url + P, headers=h(CENTRAL), json=policy, timeout=60).status_code == 201
    data = [{"example": f"Secret: project {n} ships in {m} with a new chip, do not tell anyone.",
             "compliance": "FAIL"} for n, m in [("Falcon", "May"), ("Otter", "June"), ("Lynx", "July"),
                                                ("Heron", "March"), ("Bison", "April"), ("Koala", "Fall")]]
    data += [{"example": t, "compliance": "PASS"} for t in [
        "Where can I buy the laptop you released last year?", "The printer on floor 2 is out of paper.",
        "What warranty does the current phone have?", "Lunch is at noon today.",
        "How do I reset my password?", "Our shipped tablet supports a stylus."]]
    assert httpx.post(gw.url + P + "/g8/data", headers=h(CENTRAL), json={"data": data}).status_code == 201
    r = httpx.post(gw.url + P + "/g8/train", headers=h(CENTRAL), json={"note": "first training"})
    assert r.status_code == 202, r.text
    job = _wait_trained(gw, "g8")
    assert job["status"] == "ready", job
    got = httpx.get(gw.url + P + "/g8", headers=h(CENTRAL)).json()
    head = got["head"]
    assert "w" not in head and job["metrics"]["threshold"] == head["threshold"]  # G8: the job names it
    assert "curve" not in job["metrics"]
    meta = head["meta"]
    assert meta["positives"] >= 5 and meta["negatives"] >= 5
    curve = meta["curve"]
    assert len(curve) == 50 and set(curve[0]) == {"threshold", "precision", "recall", "fpr", "f1"}
    ts = [c["threshold"] for c in curve]
    assert ts == sorted(ts) and 0 < ts[0] < 0.05 and 0.95 < ts[-1] < 1
    assert all(0 <= c[k] <= 1 for c in curve for k in ("precision", "recall", "fpr", "f1"))
    recalls, fprs = [c["recall"] for c in curve], [c["fpr"] for c in curve]
    assert recalls == sorted(recalls, reverse=True) and fprs == sorted(fprs, reverse=True)
    best = max(c["f1"] for c in curve)
    assert abs(best - meta["cv_f1"]) < 0.25  # the grid comes close to the calibrated best cut
    full = httpx.get(gw.url + P + "/g8?include=head", headers=h(CENTRAL)).json()["head"]
    assert len(full["w"]) > 100
    listed = [p for p in httpx.get(gw.url + P, headers=h(CENTRAL)).json()["data"] if p["id"] == "g8"][0]
    assert "w" not in listed["head"] and listed["head"]["meta"]["curve"] == curve
    assert versions(gw, P + "/g8")[-1]["note"] == "first training"


def test_application_dry_runs_write_nothing_and_make_no_key(gw: Gateway) -> None:
    A = "/v1/admin/applications"
    r = httpx.post(gw.url + A + "?dry_run=true", headers=h(CENTRAL), json={"id": "g16-app", "rpm": 5})
    assert r.status_code == 200, r.text
    assert r.json()["dry_run"] is True and r.json()["version"] == 1 and r.json()["rpm"] == 5
    assert "key" not in r.json()
    assert httpx.get(gw.url + A + "/g16-app", headers=h(CENTRAL)).status_code == 404
    assert "g16-app" not in {a["id"] for a in httpx.get(gw.url + A, headers=h(CENTRAL)).json()["data"]}
    e = error(httpx.post(gw.url + A + "?dry_run=true", headers=h(CENTRAL), json={"id": "g16-app", "stages": ["nope"]}),
              400)
    assert e["param"] == "stages[0]"
    assert error(httpx.post(gw.url + A + "?dry_run=true", headers=h(CENTRAL), json={"id": "app-a"}), 409)
    assert error(httpx.post(gw.url + A + "?dryrun=1", headers=h(CENTRAL), json={"id": "g16-app"}), 400)["param"] == "dryrun"
    assert httpx.get(gw.url + A + "/g16-app", headers=h(CENTRAL)).status_code == 404
    assert httpx.post(gw.url + A, headers=h(CENTRAL), json={"id": "g16-app"}).status_code == 201
    r = httpx.patch(gw.url + A + "/g16-app?dry_run=true", headers=h(CENTRAL), json={"tpm": 100})
    assert r.status_code == 200 and r.json()["dry_run"] is True and r.json()["version"] == 2 and r.json()["tpm"] == 100
    now = httpx.get(gw.url + A + "/g16-app", headers=h(CENTRAL)).json()
    assert now["version"] == 1 and now["tpm"] is None


def test_keys_are_listed_by_id_and_revoked_one_by_one(gw: Gateway) -> None:
    """G17: each key's id (a SHA-256 prefix, never the key), creation time and limits; DELETE .../keys/{id}
    revokes that key alone (before: only 'keep the newest n', so a leaked older key took the newer ones)."""
    import time

    from gateway.proxy.auth import key_digest

    A = "/v1/admin/applications"
    start = time.time()
    first = httpx.post(gw.url + A, headers=h(CENTRAL), json={"id": "g17-app"}).json()["key"]
    second = httpx.post(gw.url + A + "/g17-app/keys", headers=h(CENTRAL), json={"rpm": 7}).json()["key"]
    third = httpx.post(gw.url + A + "/g17-app/keys", headers=h(CENTRAL)).json()["key"]
    listed = httpx.get(gw.url + A + "/g17-app", headers=h(CENTRAL)).json()["key_list"]
    assert [k["id"] for k in listed] == [key_digest(k)[:16] for k in (first, second, third)]
    assert all(start - 1 <= k["created"] <= time.time() + 1 for k in listed)
    assert listed[1]["rpm"] == 7 and "rpm" not in listed[0]
    assert not any(key in str(listed) for key in (first, second, third))

    def chat(key: str) -> int:
        return httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                          json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).status_code

    assert [chat(k) for k in (first, second, third)] == [200, 200, 200]
    r = httpx.delete(gw.url + A + f"/g17-app/keys/{listed[1]['id']}", headers=h(CENTRAL))
    assert r.status_code == 200, r.text
    assert [k["id"] for k in r.json()["key_list"]] == [listed[0]["id"], listed[2]["id"]] and r.json()["keys"] == 2
    assert [chat(k) for k in (first, second, third)] == [200, 401, 200]
    assert error(httpx.delete(gw.url + A + f"/g17-app/keys/{listed[1]['id']}", headers=h(CENTRAL)), 404)["code"] \
        == "key_not_found"
    assert error(httpx.delete(gw.url + A + "/g17-app/keys/abc", headers=h(CENTRAL)), 400)["param"] == "key_id"
    assert error(httpx.delete(gw.url + A + "/g17-app/keys/" + "z" * 16, headers=h(CENTRAL)), 400)["param"] == "key_id"
    # keep-n still works and keeps the times of the keys it keeps
    r = httpx.request("DELETE", gw.url + A + "/g17-app/keys", headers=h(CENTRAL), json={"keep": 1})
    assert [k["id"] for k in r.json()["key_list"]] == [listed[2]["id"]]
    assert r.json()["key_list"][0]["created"] == listed[2]["created"]
    assert [chat(k) for k in (first, third)] == [401, 200]


def test_concurrent_key_changes_lose_nothing(gw: Gateway) -> None:
    """Found by a review: adding and revoking keys read the application and wrote it back with no
    compare-and-set, so of concurrent changes the last write won: a new key answered 201 and then 401,
    a revoked key kept working after its 200. Now each change is a compare-and-set, re-applied on conflict."""
    import asyncio

    from gateway.proxy.auth import key_digest

    A = "/v1/admin/applications"
    first = httpx.post(gw.url + A, headers=h(CENTRAL), json={"id": "g17-race"}).json()["key"]

    async def go() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=gw.url, headers=h(CENTRAL), timeout=30) as client:
            adds = [client.post(A + "/g17-race/keys") for _ in range(8)]
            revoke = client.delete(A + f"/g17-race/keys/{key_digest(first)[:16]}")
            return list(await asyncio.gather(revoke, *adds))

    answers = asyncio.run(go())
    assert [r.status_code for r in answers] == [200] + [201] * 8, [r.text for r in answers]
    added = [r.json()["key"] for r in answers[1:]]
    listed = {k["id"] for k in httpx.get(gw.url + A + "/g17-race", headers=h(CENTRAL)).json()["key_list"]}
    assert listed == {key_digest(k)[:16] for k in added}
    codes = [httpx.post(gw.url + "/v1/chat/completions", headers={"Authorization": f"Bearer {k}"},
                        json={"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}).status_code
             for k in (first, *added)]
    assert codes == [401] + [200] * 8
