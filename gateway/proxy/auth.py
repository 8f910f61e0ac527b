"""Client authentication: a bearer key (virtual key) identifies an application."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from gateway.config.schema import ApplicationConfig


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


class KeyRing:
    """Looks keys up by their SHA-256 so lookup time does not depend on how much of a key matched."""

    def __init__(self, applications: Iterable[ApplicationConfig]) -> None:
        self._config = {_digest(key): app for app in applications for key in app.keys}
        self._by_digest = dict(self._config)

    def set_stored(self, entries: Iterable[tuple[ApplicationConfig, Iterable[str]]]) -> None:
        """Applications from the store with their keys' hex SHA-256 digests (keys are never stored in
        clear); replaces the previous stored set in one assignment. Config keys win on a clash."""
        stored = {bytes.fromhex(h): app for app, hashes in entries for h in hashes}
        self._by_digest = {**stored, **self._config}

    def application(self, authorization: str | None) -> ApplicationConfig | None:
        """The application for an `Authorization: Bearer <key>` header value, or None."""
        if not authorization:
            return None
        scheme, _, key = authorization.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return None
        return self._by_digest.get(_digest(key.strip()))


def key_digest(key: str) -> str:
    """The hex SHA-256 a stored application keeps instead of its key."""
    return _digest(key).hex()

