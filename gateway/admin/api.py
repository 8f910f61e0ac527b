"""The admin API as one list of routes: what gateway/app.py mounts and admin/openapi.py documents."""

from __future__ import annotations

from starlette.routing import Route

from gateway.admin.applications import application_routes
from gateway.admin.auth import AdminAuth
from gateway.admin.changes import changes_routes
from gateway.admin.console_api import console_api_routes
from gateway.admin.dry_run import dry_run_routes
from gateway.admin.policies import policy_routes
from gateway.admin.routes import admin_routes
from gateway.admin.stages import stage_routes
from gateway.admin.stats import stats_routes
from gateway.admin.store import store_routes
from gateway.config import GatewayConfig
from gateway.guard.monitor import MonitorLog
from gateway.metrics.context import Complete
from gateway.policies.registry import Registry
from gateway.proxy.guard_flow import GuardFlow
from gateway.proxy.auth import KeyRing


def admin_api(config: GatewayConfig, flow: GuardFlow, monitor: MonitorLog, complete: Complete, registry: Registry,
              keyring: KeyRing) -> list[Route]:
    """Every admin route, in the order the OpenAPI document lists them. The admin tokens' AdminAuth is
    built once here (it is the config's tokens and nothing else); the monitoring and evaluate routes
    build their own from the config."""
    admin = AdminAuth(config.admin.tokens)
    return [*admin_routes(config, flow, monitor, complete, registry.store, keyring),
            *policy_routes(admin, registry, monitor, complete),
            *stage_routes(admin, registry),
            *application_routes(admin, registry),
            *store_routes(admin, registry),
            *console_api_routes(admin, registry),
            *dry_run_routes(admin, registry),
            *stats_routes(admin, registry, monitor),
            *changes_routes(admin, registry)]
