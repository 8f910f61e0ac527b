"""Client authentication: a key (virtual key) identifies an application, and may carry its own limits.

The key comes as `Authorization: Bearer <key>`, or as OpenAI's `x-api-key` or Azure's `api-key` header
(SDKs configured for Anthropic-style or Azure clients send those).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from gateway.config.schema import ApplicationConfig, KeyRule
from gateway.proxy.limits import Rule, expires


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class Entry:
    """What a key stands for: its application, the application's rule, its own rule and a short id for limit
    cells and logs (a digest prefix: never the key)."""

    app: ApplicationConfig
    app_rule: Rule
    key_rule: Rule | None
    key_id: str


def app_rule(app: ApplicationConfig) -> Rule:
    return Rule(tuple(getattr(app, "models", ()) or ()), getattr(app, "rpm", None), getattr(app, "tpm", None))


def key_rule(rule: KeyRule) -> Rule:
    return Rule(tuple(rule.models), rule.rpm, rule.tpm, expires(rule.expires_at))


def _entries(app: ApplicationConfig, digests: Iterable[bytes]) -> dict[bytes, Entry]:
    rules: dict[bytes, Rule] = {}
    for r in getattr(app, "key_rules", ()) or ():
        digest = _digest(r.key) if r.key is not None else bytes.fromhex(r.key_sha256 or "")
        rules[digest] = key_rule(r)
    shared = app_rule(app)
    return {d: Entry(app, shared, rules.get(d), d[:8].hex()) for d in digests}


class KeyRing:
    """Looks keys up by their SHA-256 so lookup time does not depend on how much of a key matched."""

    def __init__(self, applications: Iterable[ApplicationConfig]) -> None:
        self._config: dict[bytes, Entry] = {}
        for app in applications:
            self._config.update(_entries(app, [_digest(k) for k in app.keys]))
        self._by_digest = dict(self._config)

    def set_stored(self, entries: Iterable[tuple[ApplicationConfig, Iterable[str]]]) -> None:
        """Applications from the store with their keys' hex SHA-256 digests (keys are never stored in
        clear); replaces the previous stored set in one assignment. Config keys win on a clash."""
        stored: dict[bytes, Entry] = {}
        for app, hashes in entries:
            stored.update(_entries(app, [bytes.fromhex(h) for h in hashes]))
        self._by_digest = {**stored, **self._config}

    def application(self, authorization: str | None) -> ApplicationConfig | None:
        """The application for an `Authorization: Bearer <key>` header value, or None."""
        entry = self.lookup(bearer(authorization))
        return entry.app if entry is not None else None

    def lookup(self, key: str | None) -> Entry | None:
        if not key:
            return None
        return self._by_digest.get(_digest(key))


def bearer(authorization: str | None) -> str | None:
    """The key of an `Authorization: Bearer <key>` value, or None."""
    if not authorization:
        return None
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None
    return key.strip()


def key_digest(key: str) -> str:
    """The hex SHA-256 a stored application keeps instead of its key."""
    return _digest(key).hex()
