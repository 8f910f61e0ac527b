"""Sans-IO: the token usage of an answer (whole or streamed), read from its usage fields, else estimated
(4 characters a token) from its text and the request's size."""

from __future__ import annotations

import math
import re

_USAGE = re.compile(rb'"(prompt_tokens|completion_tokens|input_tokens|output_tokens)"\s*:\s*(\d+)')
_TEXT = re.compile(rb'"(?:content|text|delta|arguments)"\s*:\s*"((?:[^"\\]|\\.)*)"')
_CHARS_PER_TOKEN = 4


def read_usage(data: bytes) -> tuple[int, int] | None:
    found = {m.group(1): int(m.group(2)) for m in _USAGE.finditer(data)}
    if not found:
        return None
    return (found.get(b"prompt_tokens", found.get(b"input_tokens", 0)),
            found.get(b"completion_tokens", found.get(b"output_tokens", 0)))


_ENCODED = re.compile(rb"[A-Za-z0-9+/=_-]{256,}")  # base64 media (an image, audio): not prompt tokens


def estimate_tokens(chars: int) -> int:
    """Tokens of a text of `chars` characters, estimated (4 a token), as for an answer without usage."""
    return math.ceil(chars / _CHARS_PER_TOKEN)


def prompt_estimate(body: bytes) -> int:
    """A request body's prompt tokens, estimated: its size, 4 bytes a token, less its base64 runs
    (images and audio are billed otherwise and are not text a token limit should reserve for)."""
    encoded = sum(m.end() - m.start() for m in _ENCODED.finditer(body))
    return estimate_tokens(len(body) - encoded)


def answer_tokens(answer: bytes, prompt_chars: int) -> tuple[int, int]:
    """(prompt, completion) tokens of a whole answer: its usage (looked for at its end first), else estimated."""
    got = read_usage(answer[-4096:]) or read_usage(answer)
    if got is not None:
        return got
    return math.ceil(prompt_chars / _CHARS_PER_TOKEN), math.ceil(len(answer) / _CHARS_PER_TOKEN)


class Usage:
    """A stream's token usage: its usage event when it sends one, else estimated from its text (4 characters
    a token) and the request's size."""

    __slots__ = ("usage", "chars")

    def __init__(self) -> None:
        self.usage: tuple[int, int] | None = None
        self.chars = 0

    def feed(self, chunk: bytes) -> None:
        if b"_tokens" in chunk:
            got = read_usage(chunk)
            if got is not None:
                self.usage = got
        for m in _TEXT.finditer(chunk):
            self.chars += len(m.group(1))

    def tokens(self, prompt_chars: int) -> tuple[int, int]:
        if self.usage is not None:
            return self.usage
        if not self.chars:
            return 0, 0
        return math.ceil(prompt_chars / _CHARS_PER_TOKEN), math.ceil(self.chars / _CHARS_PER_TOKEN)
