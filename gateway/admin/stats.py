"""G14 of the console spec: `GET /v1/admin/stats` aggregates the monitoring log over a time window for the
Overview page: counts per action, enforced vs would-have-acted (monitor mode), metric errors and
fail-opens, a time series in buckets, and the top rulesets, applications and policies.

It reads the store's log newest first in pages of 1,000 up to `max_records` (default 20,000) and says so
with `truncated` when the window holds more: figures are then those of the newest records. With the store
down it answers from this replica's in-process buffer (`source: "memory"`). An application token sees its
own application's records only.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from typing import Any

from starlette.requests import Request
from starlette.routing import Route

from gateway.admin.auth import AdminAuth, Role
from gateway.admin.common import ok, wrap
from gateway.admin.console_api import refuse_unknown_query
from gateway.policies.registry import Registry
from gateway.guard.monitor import MonitorLog
from gateway.wire import OpenAIError
from gateway.store import StoreError

ACTED = ("block", "override", "redact", "correct", "handoff")
_PAGE = 1000
_MAX_BUCKETS = 500
_KNOWN = ("since", "until", "bucket", "application", "max_records")


def _number(request: Request, name: str, default: float, low: float, high: float) -> float:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not low <= value <= high:
        raise OpenAIError(400, f"{name}: a number from {low:g} to {high:g}.", code="invalid_value", param=name)
    return value


def aggregate(records: list[dict[str, Any]], since: float, until: float, bucket: float) -> dict[str, Any]:
    """The figures of the Overview from monitoring records (each an input or output check of a request)."""
    n_buckets = max(1, math.ceil((until - since) / bucket))
    series: list[Counter[str]] = [Counter() for _ in range(n_buckets)]
    actions: Counter[str] = Counter()
    monitor: Counter[str] = Counter()
    rulesets: dict[tuple[str, str, str, str], int] = {}
    apps: dict[str, Counter[str]] = {}
    policies: Counter[str] = Counter()
    requests: set[str] = set()
    errors = fail_open = 0
    for r in records:
        requests.add(str(r.get("id")))
        action = r.get("action")
        actions[action or "none"] += 1
        at = min(n_buckets - 1, max(0, int((float(r.get("time", since)) - since) // bucket)))
        series[at][action or "none"] += 1
        app = apps.setdefault(str(r.get("application")), Counter())
        app["records"] += 1
        if action in ACTED:
            app["acted"] += 1
        for st in r.get("stages", []):
            if st.get("errors"):
                errors += 1
            if st.get("fail_open"):
                fail_open += 1
            if st.get("action") and st.get("ruleset"):
                key = (st.get("stage", ""), st["ruleset"], st.get("mode", "enforce"), st["action"])
                rulesets[key] = rulesets.get(key, 0) + 1
                if st.get("mode") == "monitor":
                    monitor[st["action"]] += 1
                    app["would_have_acted"] += 1
            for metric in st.get("values", {}):
                policies[metric] += 1
    top_rulesets = [{"stage": s, "ruleset": rs, "mode": m, "action": a, "count": n}
                    for (s, rs, m, a), n in sorted(rulesets.items(), key=lambda kv: -kv[1])[:10]]
    top_apps = [{"application": a, "records": c["records"], "acted": c["acted"],
                 "would_have_acted": c["would_have_acted"]}
                for a, c in sorted(apps.items(), key=lambda kv: -kv[1]["records"])[:10]]
    return {
        "records": len(records), "requests": len(requests),
        "actions": dict(actions), "acted": sum(actions[a] for a in ACTED),
        "would_have_acted": sum(monitor.values()), "monitor_actions": dict(monitor),
        "errors": errors, "fail_open": fail_open,
        "series": [{"start": since + i * bucket, "counts": dict(c)} for i, c in enumerate(series)],
        "top_rulesets": top_rulesets, "top_applications": top_apps,
        "top_metrics": [{"metric": m, "count": n} for m, n in policies.most_common(10)],
    }


def stats_routes(admin: AdminAuth, registry: Registry, monitor: MonitorLog) -> list[Route]:
    store = registry.store

    async def stats(request: Request, role: Role) -> Any:
        """Aggregate figures of the monitoring log over a window: actions, monitor hits, errors, series, tops."""
        refuse_unknown_query(request, _KNOWN)
        now = time.time()
        until = _number(request, "until", now, 0, 1e11)
        since = _number(request, "since", until - 3600, 0, 1e11)
        if since >= until:
            raise OpenAIError(400, "since: must be before until.", code="invalid_value", param="since")
        bucket = _number(request, "bucket", max(60.0, (until - since) / 30), 1, 1e9)
        if (until - since) / bucket > _MAX_BUCKETS:
            raise OpenAIError(400, f"bucket: at most {_MAX_BUCKETS} buckets in the window; use a larger one.",
                              code="invalid_value", param="bucket")
        cap = int(_number(request, "max_records", 20_000, 1, 100_000))
        app = request.query_params.get("application")
        if not role.central:
            if app and app != role.application:
                raise OpenAIError(403, "This token may only read its own application's records.",
                                  code="forbidden", param="application")
            app = role.application
        match = {"application": app} if app else {}
        records: list[dict[str, Any]] = []
        truncated, source = False, "store"
        try:
            before: int | None = None
            while len(records) < cap:
                page = await store.records(min(_PAGE, cap - len(records)), before, since, until, None, **match)
                records += [r.body for r in page]
                if len(page) < min(_PAGE, cap - len(records) + len(page)):
                    break
                before = page[-1].seq
            else:
                truncated = bool(await store.records(1, before, since, until, None, **match))
        except StoreError:
            source = "memory"
            records = [r for r in monitor.query(app, None, cap) if since <= float(r.get("time", 0)) < until]
        return ok({"object": "stats", "since": since, "until": until, "bucket": bucket, "source": source,
                   "truncated": truncated, "application": app, **aggregate(records, since, until, bucket)})

    return [Route("/v1/admin/stats", wrap(admin, stats), methods=["GET"])]
