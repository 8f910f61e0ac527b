"""What both HTTP surfaces (the proxy and the admin API) answer with: OpenAI-shaped errors and whole raw
responses. Below both, so that neither imports the other for them."""

from __future__ import annotations

import orjson
from starlette.types import Receive, Scope, Send

Headers = list[tuple[bytes, bytes]]
JSON = (b"content-type", b"application/json")


class OpenAIError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)


def error_body(message: str, type: str, code: str | None = None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


def stream_error_event(message: str, type: str, code: str | None = None) -> bytes:
    """An SSE event carrying an OpenAI error; the OpenAI SDKs raise it as an APIError."""
    return b"data: " + error_body(message, type, code) + b"\n\n"


class RawResponse:
    """A whole body with exactly the given headers (duplicates kept) plus a correct content-length."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Headers, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [*self.headers, (b"content-length", str(len(self.body)).encode())]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})
