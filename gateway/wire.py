"""What both HTTP surfaces (the proxy and the admin API) answer with: OpenAI-shaped errors and whole raw
responses. Below both, so that neither imports the other for them. The errors themselves and their one
mapping to OpenAI's shape (`to_openai`) are in gateway/errors.py; `error_response` answers with it."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

from gateway.errors import OpenAIError, error_body, to_openai

__all__ = ["Headers", "JSON", "OpenAIError", "RawResponse", "error_body", "error_response", "stream_error_event",
           "to_openai"]

Headers = list[tuple[bytes, bytes]]
JSON = (b"content-type", b"application/json")


def error_response(exc: BaseException) -> RawResponse | None:
    """`to_openai`'s answer for `exc` as a whole JSON response; None when `exc` carries none (a bug)."""
    answer = to_openai(exc)
    return None if answer is None else RawResponse(answer.status, [JSON], answer.body())


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
