"""Config file -> validated, immutable runtime objects; errors name the file, key path and value."""

from gateway.config.errors import ConfigError, ConfigIssue
from gateway.config.loader import load_config, parse_config
from gateway.config.schema import ApplicationConfig, GatewayConfig, ServerConfig, UpstreamConfig

__all__ = [
    "ApplicationConfig",
    "ConfigError",
    "ConfigIssue",
    "GatewayConfig",
    "ServerConfig",
    "UpstreamConfig",
    "load_config",
    "parse_config",
]
