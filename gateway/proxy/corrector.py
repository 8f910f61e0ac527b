"""Asking a model for one non-streamed chat answer (the `correct` action), routed like any request:
aliases, routing groups (their deployments tried in turn, healthy ones first), then the upstreams' globs."""

from __future__ import annotations

import time

from gateway.proxy.dialects.chat import Chat
from gateway.proxy.guard_flow import Complete
from gateway.proxy.openai import CHAT
from gateway.proxy.routing import Deployment, Routing
from gateway.proxy.upstream import UpstreamTimeout, UpstreamUnreachable

_TIMEOUT_S = 60.0


def make_completer(routing: Routing) -> Complete:
    async def complete(model: str, messages: list[dict[str, str]]) -> str:
        target = routing.resolve(model)
        if target is None:
            raise LookupError(f"no upstream serves the corrector model {model!r}")
        group = target.group
        tried: set[Deployment] = set()
        failure: Exception | None = None
        for _ in group.deployments:  # one attempt per deployment: a correction is not worth more
            dep = group.pick(tried, time.monotonic())
            if dep in tried:
                break
            tried.add(dep)
            name = dep.model or target.model or model
            upstream = dep.upstream
            body = Chat.ask(name, messages)
            try:
                status, raw = await upstream.fetch("POST", CHAT.path,
                                                   [("content-type", "application/json"), *upstream.auth_headers],
                                                   body, _TIMEOUT_S, name)
            except (UpstreamTimeout, UpstreamUnreachable, OSError) as exc:
                failure = exc
                continue
            if status >= 500 or status == 429:
                failure = RuntimeError(f"corrector model {model!r} answered HTTP {status}")
                continue
            if status != 200:
                raise RuntimeError(f"corrector model {model!r} answered HTTP {status}")
            content = Chat.answer_text(raw)
            if not isinstance(content, str) or not content.strip():
                raise ValueError("the corrector returned no text")
            return content
        raise failure if failure is not None else LookupError(f"no deployment serves the corrector model {model!r}")

    return complete
