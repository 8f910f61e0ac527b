"""Admin bearer tokens -> roles. `central` may do everything; `app:<id>` only its own application.

G2, console sessions: `POST /v1/admin/session {token}` turns a token into a cookie (`gg_session`,
HttpOnly, SameSite=Strict, Secure over https, 8 hours). The value is stateless and signed: the token's
digest and the expiry, HMAC-SHA256 under a key derived from every configured admin token, so changing the
tokens ends every session; the role is looked up from the current config on each request. The cookie is
read only when the request has no `Authorization` header, and a request other than GET/HEAD that relies
on it must come from the console's own origin (`Sec-Fetch-Site: same-origin`, or an `Origin` whose host
is the request's `Host`; a `Sec-Fetch-Site` other than same-origin is refused) with a JSON content type
(CSRF: a cross-site form or a simple request can have neither).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gateway.config.schema import AdminToken
from gateway.wire import OpenAIError

SESSION_COOKIE = "gg_session"
SESSION_TTL_S = 8 * 3600
_SAFE = ("GET", "HEAD")


@dataclass(frozen=True, slots=True)
class Role:
    central: bool
    application: str | None  # for `app:<id>` tokens

    def may_see(self, application: str) -> bool:
        return self.central or self.application == application


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AdminAuth:
    def __init__(self, tokens: Iterable[AdminToken], clock: Callable[[], float] = time.time) -> None:
        tokens = list(tokens)
        self._roles = {hashlib.sha256(t.token.encode()).digest(): t.role for t in tokens}
        self._key = hashlib.sha256(b"guardrail-gateway console session v1\0" + b"\0".join(
            sorted(f"{t.token}\0{t.role}".encode() for t in tokens))).digest()
        self._clock = clock

    def role(self, authorization: str | None) -> Role:
        scheme, _, token = (authorization or "").partition(" ")
        role = self._roles.get(hashlib.sha256(token.strip().encode()).digest()) if scheme.lower() == "bearer" else None
        if role is None:
            raise OpenAIError(401, "Invalid or missing admin token.", code="invalid_admin_token")
        return self._role(role)

    @staticmethod
    def _role(role: str) -> Role:
        return Role(True, None) if role == "central" else Role(False, role.removeprefix("app:"))

    # --- console sessions (G2) -------------------------------------------------------------------

    def open_session(self, token: str) -> tuple[Role, str, float]:
        """(role, cookie value, expiry) for a valid admin token; 401 naming `token` otherwise."""
        digest = hashlib.sha256(token.encode()).digest()
        role = self._roles.get(digest)
        if role is None:
            raise OpenAIError(401, "Invalid or missing admin token.", code="invalid_admin_token", param="token")
        expires = int(self._clock()) + SESSION_TTL_S
        payload = _b64(json.dumps({"d": digest.hex(), "e": expires}, separators=(",", ":")).encode())
        return self._role(role), f"{payload}.{self._sign(payload)}", float(expires)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def session(self, value: str) -> tuple[Role, float] | None:
        """The role and expiry of a session cookie; None when it is forged, expired or its token is gone."""
        payload, _, signature = value.partition(".")
        if not payload or not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        try:
            data = json.loads(_unb64(payload))
            role = self._roles.get(bytes.fromhex(data["d"]))
            expires = float(data["e"])
        except (ValueError, KeyError, TypeError):
            return None
        if role is None or expires <= self._clock():
            return None
        return self._role(role), expires

    def request_role(self, request: Any) -> Role:
        """The caller's role: the bearer token when there is an Authorization header, else the session
        cookie under the CSRF rules (module docstring)."""
        authorization = request.headers.get("authorization")
        if authorization is not None:
            return self.role(authorization)
        value = request.cookies.get(SESSION_COOKIE)
        if not value:
            raise OpenAIError(401, "Invalid or missing admin token.", code="invalid_admin_token")
        found = self.session(value)
        if found is None:
            raise OpenAIError(401, "The console session expired or is no longer valid; sign in again.",
                              code="invalid_session")
        if request.method not in _SAFE:
            check_same_origin(request, "a change made with the session cookie")
        return found[0]


def check_same_origin(request: Any, what: str) -> None:
    """403 `csrf_refused` unless the request comes from this origin with a JSON body (see the module doc)."""
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    host = request.headers.get("host", "")
    if site is not None and site != "same-origin":
        raise OpenAIError(403, f"Refused {what}: Sec-Fetch-Site is {site!r}, not same-origin.",
                          code="csrf_refused", param="Sec-Fetch-Site")
    if site is None and (origin is None or urlsplit(origin).netloc.lower() != host.lower()):
        raise OpenAIError(403, f"Refused {what}: it must come from the console's origin (Origin "
                               f"{origin or 'missing'}, host {host}).", code="csrf_refused", param="Origin")
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise OpenAIError(403, f"Refused {what}: the body must be JSON (Content-Type: application/json).",
                          code="csrf_refused", param="Content-Type")
