"""G2 console sessions: a signed, stateless HttpOnly cookie instead of a token kept by the page.

Against the real gateway: sign-in, whoami, sign-out, the cookie's attributes, and the CSRF rules (the
cookie only without an Authorization header; a change only from the same origin with a JSON body).
In process, with an injected clock: expiry after 8 hours, forged and foreign cookies, and that
changing the configured tokens ends every session."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from starlette.requests import Request

from gateway.admin.auth import SESSION_TTL_S, AdminAuth
from gateway.config.schema import AdminToken
from gateway.wire import OpenAIError
from tests.conftest import Gateway
from tests.console.conftest import APP_TOKEN, CENTRAL


def error(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert set(body) == {"message", "type", "param", "code"}
    return body


def sign_in(gw: Gateway, token: str = CENTRAL) -> str:
    r = httpx.post(gw.url + "/v1/admin/session", json={"token": token})
    assert r.status_code == 200, r.text
    return r.cookies["gg_session"]


def test_sign_in_whoami_and_sign_out(console_gw: Gateway) -> None:
    r = httpx.post(console_gw.url + "/v1/admin/session", json={"token": APP_TOKEN})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["object"], body["role"], body["application"]) == ("session", "application", "app-a")
    header = r.headers["set-cookie"]
    assert header.startswith("gg_session=") and "HttpOnly" in header and "SameSite=Strict" in header
    assert f"Max-Age={SESSION_TTL_S}" in header and "Path=/" in header and "Secure" not in header  # plain http
    cookies = {"gg_session": r.cookies["gg_session"]}
    who = httpx.get(console_gw.url + "/v1/admin/session", cookies=cookies).json()
    assert who["role"] == "application" and who["application"] == "app-a" and who["expires"] == body["expires"]
    # the cookie reads what the token could, and only that
    assert httpx.get(console_gw.url + "/v1/admin/whoami", cookies=cookies).json()["application"] == "app-a"
    assert httpx.get(console_gw.url + "/v1/monitoring", cookies=cookies).status_code == 200
    assert error(httpx.get(console_gw.url + "/v1/admin/applications", cookies=cookies), 403)["code"] == "forbidden"
    assert error(httpx.delete(console_gw.url + "/v1/admin/session", cookies=cookies), 403)["code"] == "csrf_refused"
    out = httpx.request("DELETE", console_gw.url + "/v1/admin/session", cookies=cookies, json={},
                        headers={"origin": console_gw.url})
    assert out.json() == {"object": "session", "deleted": True} and "Max-Age=0" in out.headers["set-cookie"]
    # errors name the field
    assert error(httpx.post(console_gw.url + "/v1/admin/session", json={"token": "nope"}), 401)["param"] == "token"
    assert error(httpx.post(console_gw.url + "/v1/admin/session", json={}), 400)["param"] == "token"
    assert error(httpx.post(console_gw.url + "/v1/admin/session", json={"token": CENTRAL, "ttl": 9}), 400)[
        "param"] == "ttl"
    assert error(httpx.post(console_gw.url + "/v1/admin/session", content=f"token={CENTRAL}",
                            headers={"content-type": "application/x-www-form-urlencoded"}), 400)["param"] == \
        "Content-Type"
    e = error(httpx.post(console_gw.url + "/v1/admin/session", json={"token": CENTRAL},
                         headers={"origin": "https://evil.example"}), 403)
    assert (e["code"], e["param"]) == ("csrf_refused", "Origin")  # no login CSRF
    assert error(httpx.get(console_gw.url + "/v1/admin/session"), 401)["code"] == "invalid_admin_token"
    assert error(httpx.get(console_gw.url + "/v1/admin/session", cookies={"gg_session": "x.y"}), 401)[
        "code"] == "invalid_session"


def test_csrf_rules_for_changes_made_with_the_cookie(console_gw: Gateway) -> None:
    cookies = {"gg_session": sign_in(console_gw)}
    url = console_gw.url + "/v1/admin/policies"
    host = console_gw.url.removeprefix("http://")
    body = {"id": "csrf-probe", "type": "contains", "keywords": ["x"]}
    same = {"origin": console_gw.url}
    # refused: no origin at all, another origin, a cross-site fetch, a form's content type
    for headers, param in (({}, "Origin"), ({"origin": "https://evil.example"}, "Origin"),
                           ({"origin": "null"}, "Origin"),
                           ({"sec-fetch-site": "cross-site", "origin": console_gw.url}, "Sec-Fetch-Site"),
                           ({"sec-fetch-site": "same-site"}, "Sec-Fetch-Site")):
        e = error(httpx.post(url, json=body, cookies=cookies, headers=headers), 403)
        assert (e["code"], e["param"]) == ("csrf_refused", param), headers
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        e = error(httpx.post(url, content=b'{"id": "csrf-probe"}', cookies=cookies,
                             headers={**same, "content-type": content_type}), 403)
        assert (e["code"], e["param"]) == ("csrf_refused", "Content-Type"), content_type
    assert httpx.get(url + "/csrf-probe", headers=h(CENTRAL)).status_code == 404  # nothing was created
    # accepted: the console's own origin (Origin host = Host, or Sec-Fetch-Site: same-origin) with JSON
    assert httpx.post(url, json=body, cookies=cookies, headers=same).status_code == 201
    r = httpx.patch(url + "/csrf-probe", json={"keywords": ["y"]}, cookies=cookies,
                    headers={"sec-fetch-site": "same-origin"})
    assert r.status_code == 200, r.text
    assert httpx.request("DELETE", url + "/csrf-probe", json={}, cookies=cookies,
                         headers={"origin": f"http://{host}"}).status_code == 200
    # the cookie is ignored when an Authorization header is present: a bad bearer is a 401 even with it
    assert error(httpx.get(url, cookies=cookies, headers={"authorization": "Bearer wrong"}), 401)[
        "code"] == "invalid_admin_token"
    # the guard evaluate API (G4) takes the session under the same rules
    ev = {"application": "app-a", "messages": [{"role": "user", "content": "hello"}]}
    assert error(httpx.post(console_gw.url + "/v1/guard/evaluate", json=ev, cookies=cookies), 403)[
        "code"] == "csrf_refused"
    r = httpx.post(console_gw.url + "/v1/guard/evaluate", json=ev, cookies=cookies, headers=same)
    assert r.status_code == 200, r.text


def h(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def request(cookie: str, method: str = "GET", **headers: str) -> Request:
    raw = [(b"cookie", f"gg_session={cookie}".encode()), (b"host", b"gw.test")]
    raw += [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": method, "path": "/", "headers": raw, "query_string": b""})


TOKENS = [AdminToken(token="t-central", role="central"), AdminToken(token="t-app", role="app:a")]


def test_sessions_expire_after_8_hours() -> None:
    clock = Clock(1_000_000.0)
    auth = AdminAuth(TOKENS, clock=clock)
    role, cookie, expires = auth.open_session("t-app")
    assert role.application == "a" and expires == 1_000_000 + 8 * 3600
    assert auth.request_role(request(cookie)).application == "a"
    clock.now += 8 * 3600 - 1
    assert auth.request_role(request(cookie)).application == "a"
    clock.now += 1
    with pytest.raises(OpenAIError) as err:
        auth.request_role(request(cookie))
    assert (err.value.status, err.value.code) == (401, "invalid_session")


def test_forged_foreign_and_rotated_sessions_are_refused() -> None:
    clock = Clock(1_000_000.0)
    auth = AdminAuth(TOKENS, clock=clock)
    _, cookie, _ = auth.open_session("t-app")
    payload, _, signature = cookie.partition(".")
    import base64
    import json

    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    central_digest = __import__("hashlib").sha256(b"t-central").hexdigest()
    for forged in (f"{payload}.{signature[:-2]}xx", f"{payload}x.{signature}", "", ".", "garbage",
                   base64.urlsafe_b64encode(json.dumps({**data, "d": central_digest}).encode()).decode().rstrip("=")
                   + "." + signature,
                   base64.urlsafe_b64encode(json.dumps({**data, "e": data["e"] + 10**6}).encode()).decode().rstrip("=")
                   + "." + signature):
        assert auth.session(forged) is None, forged
    # another gateway's tokens, or this one's after a token changed: every session ends
    assert AdminAuth(TOKENS[:1] + [AdminToken(token="t-app2", role="app:a")], clock=clock).session(cookie) is None
    assert AdminAuth([TOKENS[1], TOKENS[0]], clock=clock).session(cookie) is not None  # order does not matter
    assert AdminAuth(TOKENS, clock=clock).session(cookie) is not None
    with pytest.raises(OpenAIError) as err:
        auth.open_session("t-unknown")
    assert (err.value.status, err.value.param) == (401, "token")


def test_csrf_rules_in_process() -> None:
    auth = AdminAuth(TOKENS, clock=Clock(0.0))
    _, cookie, _ = auth.open_session("t-central")
    json_type = {"content_type": "application/json; charset=utf-8"}
    assert auth.request_role(request(cookie, "POST", origin="http://gw.test", **json_type)).central
    assert auth.request_role(request(cookie, "DELETE", sec_fetch_site="same-origin", **json_type)).central
    assert auth.request_role(request(cookie, "GET", origin="https://evil.example")).central  # reads: no rule
    for method, headers, param in (("POST", {"origin": "http://evil.test", **json_type}, "Origin"),
                                   ("PATCH", {**json_type}, "Origin"),
                                   ("PUT", {"sec_fetch_site": "none", **json_type}, "Sec-Fetch-Site"),
                                   ("POST", {"origin": "http://gw.test"}, "Content-Type"),
                                   ("POST", {"origin": "http://gw.test", "content_type": "text/plain"}, "Content-Type")):
        with pytest.raises(OpenAIError) as err:
            auth.request_role(request(cookie, method, **headers))
        assert (err.value.status, err.value.code, err.value.param) == (403, "csrf_refused", param), headers
    # a bearer header wins over the cookie, whatever the cookie says
    with pytest.raises(OpenAIError) as err:
        auth.request_role(request(cookie, "GET", authorization="Bearer nope"))
    assert err.value.status == 401
