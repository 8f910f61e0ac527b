"""GET /v1/models: the union of the upstreams' own model lists, or the names the config spells out."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson

from gateway.proxy.openai import model_entry
from gateway.proxy.routing import Routing
from gateway.proxy.upstream import Router, Upstream, UpstreamTimeout, UpstreamUnreachable

log = logging.getLogger("gateway.models")
_TTL_S = 60.0
_FETCH_TIMEOUT_S = 5.0
_GLOB_CHARS = frozenset("*?[")


class ModelCatalog:
    """Caches each upstream's model list for a minute; a failing upstream falls back to config names."""

    def __init__(self, upstreams: list[Upstream], router: Router, routing: Routing | None = None) -> None:
        self._upstreams = upstreams
        self._router = router
        self._routing = routing
        self._cache: dict[str, tuple[float, list[dict[str, Any]]]] = {}

    async def models(self) -> list[dict[str, Any]]:
        lists = await asyncio.gather(*(self._models_of(u) for u in self._upstreams))
        if self._routing is not None:  # model groups' and aliases' own names come first
            lists.insert(0, [model_entry(name, owner) for name, owner in self._routing.exact_names()])
        seen: set[str] = set()
        out = []
        for entries in lists:
            for entry in entries:
                if entry["id"] not in seen:
                    seen.add(entry["id"])
                    out.append(entry)
        return out

    async def _models_of(self, upstream: Upstream) -> list[dict[str, Any]]:
        cached = self._cache.get(upstream.name)
        now = time.monotonic()
        if cached and now - cached[0] < _TTL_S:
            return cached[1]
        entries = [model_entry(name, upstream.name) for name in upstream.config.models
                   if not _GLOB_CHARS & set(name)]
        if upstream.config.discover_models:
            fetched = await self._fetch(upstream)
            # Only models this upstream would actually serve: an earlier upstream's glob may claim a name.
            entries += [e for e in fetched if self._serves(upstream, e["id"])]
        self._cache[upstream.name] = (now, entries)
        return entries

    def _serves(self, upstream: Upstream, model: str) -> bool:
        route = self._router.route(model)
        return route is not None and route.upstream is upstream

    async def _fetch(self, upstream: Upstream) -> list[dict[str, Any]]:
        try:
            status, body = await upstream.fetch("GET", "/models", upstream.auth_headers, timeout_s=_FETCH_TIMEOUT_S)
            if status != 200:
                raise ValueError(f"status {status}")
            data = orjson.loads(body).get("data", [])
            return [model_entry(str(m["id"]), str(m.get("owned_by", upstream.name)), int(m.get("created", 0)))
                    for m in data if isinstance(m, dict) and "id" in m]
        except (UpstreamTimeout, UpstreamUnreachable, orjson.JSONDecodeError, AttributeError, TypeError,
                ValueError) as exc:
            log.warning("model list unavailable", extra={"fields": {"upstream": upstream.name,
                                                                    "error": type(exc).__name__}})
            return []
