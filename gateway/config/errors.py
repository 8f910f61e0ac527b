"""Config errors that name the file, the key path and the bad value, never a traceback."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import ConfigError  # noqa: F401  (re-exported; defined there)

# Keys whose values are credentials: an error about them never prints the value.
SECRET_KEYS = frozenset({"api_key", "token", "tokens", "keys", "headers", "password"})


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem at one key path, e.g. `upstreams[0].base_url`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def format_path(parts: tuple[str | int, ...]) -> str:
    """('upstreams', 0, 'base_url') -> 'upstreams[0].base_url'."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def is_secret_path(parts: tuple[str | int, ...]) -> bool:
    return any(isinstance(p, str) and p in SECRET_KEYS for p in parts)


def show_value(parts: tuple[str | int, ...], value: object) -> str:
    """The bad value as the user wrote it, unless it sits under a secret key."""
    if is_secret_path(parts):
        return "<redacted>"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
