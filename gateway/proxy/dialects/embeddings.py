"""/v1/embeddings and /v1/moderations: input only. Their answers carry no text the output stages read,
they never stream, and a stop is answered with an error body (an embedding has no way to say no)."""

from __future__ import annotations

from typing import Any

from gateway.proxy.dialects.base import Dialect
from gateway.proxy.openai import EMBEDDINGS, MODERATIONS
from gateway.proxy.walk import Walk


class Embeddings(Dialect):
    name = EMBEDDINGS.name
    endpoint = EMBEDDINGS

    def walk_request(self, walk: Walk, payload: dict[str, Any]) -> None:
        walk.prompt(payload.get("input"), ("input",), "user")


class Moderations(Dialect):
    name = MODERATIONS.name
    endpoint = MODERATIONS

    def walk_request(self, walk: Walk, payload: dict[str, Any]) -> None:
        """A string, an array of strings, or an array of parts (text, image_url)."""
        value = payload.get("input")
        if isinstance(value, list) and any(isinstance(v, dict) for v in value):
            walk.content(value, ("input",), "user")
        else:
            walk.prompt(value, ("input",), "user")


DIALECT = Embeddings()
MODERATIONS_DIALECT = Moderations()
