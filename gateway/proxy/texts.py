"""Sans-IO: every scannable text of an OpenAI request or response, with the path to write it back, by
the endpoint's name; each endpoint's dialect (proxy/dialects/) walks its own fields (proxy/walk.py).

The same walk also finds what the guard cannot read: a text carrier of the wrong shape (a number where
OpenAI wants a string, an object where it wants a message) or a prompt sent as token ids. `unreadable`
reports the first one, so a request whose input is guarded can be refused instead of going upstream
unchecked.
"""

from __future__ import annotations

from typing import Any

from gateway.proxy.dialects import dialect
from gateway.proxy.dialects.base import Unread
from gateway.proxy.walk import TOOL_DEFINITION, Found, Path, write_back

__all__ = ["TOOL_DEFINITION", "Found", "Path", "Unread", "read_request", "read_response", "request_texts",
           "unreadable", "write_back"]


def read_request(endpoint: str, payload: dict[str, Any]) -> tuple[Found, Unread | None]:
    """In one walk: the request's texts, and the first place that carries input the guard cannot read
    (and why), or None."""
    return dialect(endpoint).read_request(payload)


def request_texts(endpoint: str, payload: dict[str, Any]) -> Found:
    """All texts of a request body, by role: every message (not only the last) and text content part."""
    return dialect(endpoint).read_request(payload)[0]


def unreadable(endpoint: str, payload: dict[str, Any]) -> Unread | None:
    """The first place of a request that carries input the guard cannot read, and why; None if none."""
    return dialect(endpoint).read_request(payload)[1]


def read_response(endpoint: str, payload: dict[str, Any]) -> tuple[Found, Unread | None]:
    """In one walk: a (non-streamed) answer's texts, and the first place that carries output the guard
    cannot read (and why), or None."""
    return dialect(endpoint).read_response(payload)
