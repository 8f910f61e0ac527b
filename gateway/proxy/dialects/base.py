"""The `Dialect` every endpoint dialect derives from: what the request flow asks of an endpoint."""

from __future__ import annotations

from typing import Any

from gateway.proxy.choices import ChoiceShape
from gateway.proxy.openai import Endpoint
from gateway.proxy.stream_monitor import AnswerMonitor, Check, StreamMonitor
from gateway.proxy.walk import Found, Path, Walk

Unread = tuple[Path, str]  # where a body carries what the guard cannot read, and why


class Dialect:
    """One endpoint's side of the request flow. This base reads nothing and answers a stop with an error
    body; each endpoint's dialect says what its own requests and answers carry."""

    name = ""  # the reader's name (proxy/texts.py), the endpoint's metric label
    endpoint: Endpoint | None = None  # the proxied route (None: a pass-through route's reader)
    answers_in_shape = False  # a stop is answered as the endpoint's own answer (else an error body, 400)
    choices: ChoiceShape | None = None  # its stream carries choices: monitored and guarded chunk by chunk
    whole_when_guarded = False  # a stream under output stages that may act is asked for whole, then told

    def read_request(self, payload: dict[str, Any]) -> tuple[Found, Unread | None]:
        """In one walk: the request's texts, and the first place that carries input the guard cannot read
        (and why), or None."""
        walk = Walk(strict=True)
        self.walk_request(walk, payload)
        return walk.result()

    def read_response(self, payload: dict[str, Any]) -> tuple[Found, Unread | None]:
        """In one walk: a (non-streamed) answer's texts, and the first place that carries output the guard
        cannot read (and why), or None."""
        walk = Walk()
        self.walk_response(walk, payload)
        return walk.result()

    def walk_request(self, walk: Walk, payload: dict[str, Any]) -> None:
        """Show `walk` every text of a request body."""

    def walk_response(self, walk: Walk, payload: dict[str, Any]) -> None:
        """Show `walk` every text of a non-streamed answer."""

    def check_guarded(self, payload: dict[str, Any]) -> None:
        """Refuse (OpenAIError) a request whose answer the output stages that may act could not check."""

    def refusal(self, model: str, text: str, note: dict[str, Any], request_id: str) -> dict[str, Any]:
        """A stop's whole answer in the endpoint's shape (with `answers_in_shape`)."""
        raise NotImplementedError(self.name)

    def refusal_stream(self, model: str, text: str, note: dict[str, Any], request_id: str) -> bytes:
        """The same answer as the event stream a streamed request asked for."""
        raise NotImplementedError(self.name)

    def monitor(self, check: Check) -> AnswerMonitor:
        """The relay of a stream watched by output stages that only monitor."""
        if self.choices is None:
            raise NotImplementedError(self.name)
        return StreamMonitor(self.choices, check)

    def events(self, answer: dict[str, Any]) -> bytes:
        """A checked whole answer told as the stream the client asked for (with `whole_when_guarded`)."""
        raise NotImplementedError(self.name)
