"""Asking a model on any configured upstream for one non-streamed chat answer (the `correct` action)."""

from __future__ import annotations

import orjson

from gateway.proxy.guard_flow import Complete
from gateway.proxy.upstream import Router

_TIMEOUT_S = 60.0


def make_completer(router: Router) -> Complete:
    async def complete(model: str, messages: list[dict[str, str]]) -> str:
        route = router.route(model)
        if route is None:
            raise LookupError(f"no upstream serves the corrector model {model!r}")
        upstream = route.upstream
        body = orjson.dumps({"model": model, "messages": messages, "temperature": 0})
        status, raw = await upstream.fetch("POST", "/chat/completions",
                                           [("content-type", "application/json"), *upstream.auth_headers], body,
                                           _TIMEOUT_S)
        if status != 200:
            raise RuntimeError(f"corrector model {model!r} answered HTTP {status}")
        content = orjson.loads(raw)["choices"][0]["message"]["content"]
        if not isinstance(content, str) or not content.strip():
            raise ValueError("the corrector returned no text")
        return content

    return complete
