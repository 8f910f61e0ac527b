"""Endpoint dialects: what is specific to each OpenAI endpoint the gateway proxies, one module each.

A dialect (`base.Dialect`) owns its endpoint's text readers (request and answer), its refusal bodies (whole
and streamed), whether a stop is answered in its own shape, its stream's choice shape (the chunks the
hold-back guard builds and the monitor reads) or its own monitor, and whether a guarded stream is asked
for whole. The request flow (handler, guard_flow, stream_guard) asks the dialect and never compares
endpoint names. A new OpenAI feature of one endpoint touches its one module:

    chat.py          /v1/chat/completions
    completions.py   /v1/completions
    responses.py     /v1/responses
    embeddings.py    /v1/embeddings, /v1/moderations
    passthrough.py   the JSON pass-through routes the input stages read (images, audio speech)
"""

from __future__ import annotations

from gateway.proxy.dialects import chat, completions, embeddings, passthrough, responses
from gateway.proxy.dialects.base import Dialect
from gateway.proxy.openai import Endpoint

__all__ = ["DIALECTS", "Dialect", "dialect", "of"]

DIALECTS: dict[str, Dialect] = {d.name: d for d in (
    chat.DIALECT, completions.DIALECT, responses.DIALECT, embeddings.DIALECT, embeddings.MODERATIONS_DIALECT,
    passthrough.IMAGES, passthrough.AUDIO_SPEECH)}
_NONE = Dialect()  # a name no dialect has: nothing read, a stop answered with an error body


def dialect(name: str) -> Dialect:
    """The dialect of an endpoint (or pass-through reader) by its name, e.g. "chat_completions"."""
    return DIALECTS.get(name, _NONE)


def of(endpoint: Endpoint) -> Dialect:
    """The dialect of a proxied route."""
    return dialect(endpoint.name)
