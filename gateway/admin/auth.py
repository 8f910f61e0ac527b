"""Admin bearer tokens -> roles. `central` may do everything; `app:<id>` only its own application."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.config.schema import AdminToken
from gateway.wire import OpenAIError


@dataclass(frozen=True, slots=True)
class Role:
    central: bool
    application: str | None  # for `app:<id>` tokens

    def may_see(self, application: str) -> bool:
        return self.central or self.application == application


class AdminAuth:
    def __init__(self, tokens: Iterable[AdminToken]) -> None:
        self._roles = {hashlib.sha256(t.token.encode()).digest(): t.role for t in tokens}

    def role(self, authorization: str | None) -> Role:
        scheme, _, token = (authorization or "").partition(" ")
        role = self._roles.get(hashlib.sha256(token.strip().encode()).digest()) if scheme.lower() == "bearer" else None
        if role is None:
            raise OpenAIError(401, "Invalid or missing admin token.", code="invalid_admin_token")
        return Role(True, None) if role == "central" else Role(False, role.removeprefix("app:"))
