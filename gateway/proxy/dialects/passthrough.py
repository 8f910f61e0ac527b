"""The JSON bodies of pass-through routes whose text the input stages read (proxy/passthrough.py): their
requests only; what they answer is relayed as it comes, and a stop is answered with an error body."""

from __future__ import annotations

from typing import Any

from gateway.proxy.dialects.base import Dialect
from gateway.proxy.walk import Walk


class Images(Dialect):
    """/images/generations and /images/edits sent as JSON."""

    name = "images"

    def walk_request(self, walk: Walk, payload: dict[str, Any]) -> None:
        walk.text(payload.get("prompt"), ("prompt",), "user")


class AudioSpeech(Dialect):
    """/audio/speech: the text spoken, and how to speak it."""

    name = "audio_speech"

    def walk_request(self, walk: Walk, payload: dict[str, Any]) -> None:
        walk.text(payload.get("input"), ("input",), "user")
        walk.text(payload.get("instructions"), ("instructions",), "user", optional=True)


IMAGES = Images()
AUDIO_SPEECH = AudioSpeech()
