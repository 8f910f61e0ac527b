"""Sans-IO: the opt-in pass-through of other /v1 routes (images, audio, files, batches, stored responses...).

Each upstream lists, in `passthrough`, globs on the path under /v1 that it serves as they come. Which
upstream takes a request: a JSON body naming a `model` is routed like any request (aliases, groups,
globs), and every deployment that may serve it must pass the path; anything else (multipart, binary,
no body) goes to the first upstream whose pass-through globs match the path.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from gateway.proxy.dialects import Dialect
from gateway.proxy.dialects.passthrough import AUDIO_SPEECH, IMAGES
from gateway.proxy.upstream import Upstream

# The gateway's own routes under /v1: never passed through, whatever a glob says.
RESERVED = ("/models", "/admin", "/guard")
# JSON text fields the input stages read, by route (their readers: proxy/dialects/passthrough.py).
_READERS = {"/images/generations": IMAGES, "/images/edits": IMAGES, "/audio/speech": AUDIO_SPEECH}
# Routes whose multipart forms carry text the gateway does not read (it never parses a form): refused
# while an input stage that may act applies.
FORM_TEXT = frozenset({"/images/edits", "/audio/transcriptions", "/audio/translations"})
# Routes whose answers carry model text or text from earlier requests, which the output stages never
# see on a pass-through: refused while an output stage that may act applies.
_OUTPUT_TEXT = tuple(re.compile(fnmatch.translate(g)) for g in (
    "/responses/*", "/chat/completions", "/chat/completions/*", "/audio/transcriptions", "/audio/translations", "/files/*/content",
    "/conversations*", "/threads*"))


def _compile(globs: Iterable[str]) -> re.Pattern[str] | None:
    globs = list(globs)
    return re.compile("|".join(f"(?:{fnmatch.translate(g)})" for g in globs)) if globs else None


class PassThrough:
    """Which upstreams pass which paths (under /v1) through."""

    def __init__(self, upstreams: Iterable[Upstream]) -> None:
        self._by_upstream = {u.name: _compile(u.config.passthrough) for u in upstreams}
        self._table = [(rx, u) for u in upstreams if (rx := self._by_upstream[u.name]) is not None]

    @property
    def enabled(self) -> bool:
        return bool(self._table)

    def first(self, path: str) -> Upstream | None:
        """The first upstream whose pass-through globs match `path` (under /v1), if the path may pass."""
        if not acceptable(path):
            return None
        return next((u for rx, u in self._table if rx.match(path)), None)

    def passes(self, upstream: Upstream, path: str) -> bool:
        rx = self._by_upstream.get(upstream.name)
        return rx is not None and acceptable(path) and rx.match(path) is not None


def acceptable(path: str) -> bool:
    """A path under /v1 (as decoded by the server) that may be passed: not the gateway's own, made of the
    characters OpenAI's routes and ids use only (letters, digits, `_`, `-`, `.`, `/`), with no empty, `.`
    or `..` segments. Anything else could reach the upstream as another route than the glob matched: a
    `%2E%2E` encoded twice decodes to dot segments the upstream URL resolves, a `%3F` or `%23` decodes to a
    query or fragment delimiter that cuts the path the checks read."""
    if not path.startswith("/") or any(path == r or path.startswith(r + "/") for r in RESERVED):
        return False
    if _SAFE_PATH.fullmatch(path) is None:
        return False
    return not any(seg in ("", ".", "..") for seg in path[1:].split("/"))


_SAFE_PATH = re.compile(r"[A-Za-z0-9_./-]+")
# JSON-only routes whose body the input stages read: a body sent as anything else is refused (415), not
# streamed on unread.
JSON_ONLY = frozenset({"/images/generations", "/audio/speech"})
# Form uploads that name a model in a form field the gateway does not read: refused where allowed models
# are restricted, since the restriction could not be checked.
FORM_MODEL = frozenset({"/images/edits", "/images/variations", "/audio/transcriptions", "/audio/translations"})


def reader(path: str) -> Dialect | None:
    """The texts reader (proxy/dialects/passthrough.py) for a JSON body on `path`, or None: no text the
    stages read."""
    return _READERS.get(path)


def answers_with_text(path: str) -> bool:
    return any(rx.match(path) for rx in _OUTPUT_TEXT)
