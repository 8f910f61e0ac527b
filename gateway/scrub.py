"""Keeping the upstreams' credentials out of what the gateway relays and logs.

An upstream that refuses its key often echoes it ("Incorrect API key provided: sk-ab****wxyz"), and a
metric's exception text can carry whatever its code held. `SecretScrubber` is compiled once from the
config; it rewrites upstream error bodies, every relayed upstream header value, and the error texts of
failing metrics. A 2xx answer's body, streamed or not, is never scanned.
"""

from __future__ import annotations

import builtins

import re
from collections.abc import Iterable

import orjson

from gateway.config.schema import UpstreamConfig

REDACTED = "[REDACTED]"
MIN_SECRET_CHARS = 8    # anything shorter is no secret, and replacing it would mangle ordinary text
_MASK_PREFIX_CHARS = 6  # OpenAI's masked echo keeps the key's first characters, then asterisks, then its last 4
ERROR_MESSAGE_CHARS = 200
# Upstream `headers` entries whose values are credentials (an Azure `api-key`, a custom authorization).
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key"})


class SecretScrubber:
    """Replaces the configured secrets (and OpenAI's masked echo of them) by `[REDACTED]`."""

    __slots__ = ("_bytes", "_text")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        alternatives: set[str] = set()
        for secret in secrets:
            if len(secret) < MIN_SECRET_CHARS:
                continue
            alternatives.add(re.escape(secret))
            escaped = orjson.dumps(secret)[1:-1].decode()  # as it appears inside a JSON string
            if escaped != secret:
                alternatives.add(re.escape(escaped))
            if len(secret) >= 2 * _MASK_PREFIX_CHARS:
                alternatives.add(re.escape(secret[:_MASK_PREFIX_CHARS]) + r"[A-Za-z0-9_\-]*\*{3,}[A-Za-z0-9_\-]*")
        if not alternatives:
            self._text: re.Pattern[str] | None = None
            self._bytes: re.Pattern[bytes] | None = None
            return
        pattern = "|".join(sorted(alternatives, key=len, reverse=True))  # the longest form wins
        self._text = re.compile(pattern)
        self._bytes = re.compile(pattern.encode("latin-1"))  # config secrets are printable ASCII

    @classmethod
    def from_upstreams(cls, upstreams: Iterable[UpstreamConfig]) -> SecretScrubber:
        """Every upstream's `api_key`, and the values of its credential `headers` (a bearer's token too)."""
        secrets: list[str] = []
        for upstream in upstreams:
            if upstream.api_key:
                secrets.append(upstream.api_key)
            for name, value in upstream.headers.items():
                if name.lower() in CREDENTIAL_HEADERS:
                    secrets.append(value)
                    scheme, _, token = value.partition(" ")
                    if token.strip() and scheme.isalpha():
                        secrets.append(token.strip())
        return cls(secrets)

    def __bool__(self) -> bool:
        return self._text is not None

    def text(self, value: str) -> str:
        return value if self._text is None else self._text.sub(REDACTED, value)

    def bytes(self, value: builtins.bytes) -> builtins.bytes:
        return value if self._bytes is None else self._bytes.sub(REDACTED.encode(), value)

    def headers(self, headers: list[tuple[builtins.bytes, builtins.bytes]]) -> list[tuple[builtins.bytes, builtins.bytes]]:
        """`headers` with every value scrubbed; one scan of all values when none carries a secret."""
        if self._bytes is None or not self._bytes.search(b"\n".join(v for _, v in headers)):
            return headers
        return [(k, self.bytes(v)) for k, v in headers]

    def error(self, exc: BaseException, limit: int = ERROR_MESSAGE_CHARS) -> str:
        """'Type: message' for logs and the monitoring log: the message scrubbed, then cut to `limit`."""
        message = self.text(str(exc))
        if len(message) > limit:
            message = message[:limit] + "..."
        return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


NO_SECRETS = SecretScrubber()
