"""Process settings: where the config is and how to serve it, from GATEWAY_* variables and CLI flags."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

DEFAULT_CONFIG = "config/gateway.yaml"
DEFAULT_LOG_LEVEL = "info"


@dataclass(frozen=True, slots=True)
class Settings:
    """Flags override environment variables, which override the config file's `server` section."""

    config_path: str = DEFAULT_CONFIG
    host: str | None = None
    port: int | None = None
    log_level: str = DEFAULT_LOG_LEVEL

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        port = env.get("GATEWAY_PORT")
        return cls(
            config_path=env.get("GATEWAY_CONFIG", DEFAULT_CONFIG),
            host=env.get("GATEWAY_HOST") or None,
            port=int(port) if port else None,
            log_level=env.get("GATEWAY_LOG_LEVEL", DEFAULT_LOG_LEVEL),
        )

    def with_flags(self, **flags: object) -> Settings:
        """Apply the CLI flags that were given (None means not given)."""
        return replace(self, **{k: v for k, v in flags.items() if v is not None})  # type: ignore[arg-type]
