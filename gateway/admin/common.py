"""What every admin endpoint shares: bodies, answers, owners, the error mapping and revert."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request

from gateway.admin.auth import AdminAuth, Role
from gateway.policies.registry import Expected, Registry
from gateway.errors import GatewayError
from gateway.proxy.openai import dumps_json, request_too_deep
from gateway.wire import JSON, OpenAIError, RawResponse, error_response
from gateway.store import NotFound, Version

MAX_BODY = 4 * 1024 * 1024

Handler = Callable[[Request, Role], Awaitable[Any]]


def ok(payload: Any, status: int = 200) -> RawResponse:
    return RawResponse(status, [JSON], orjson.dumps(payload))


def owner(role: Role) -> str:
    return "central" if role.central else f"app:{role.application}"


def acting_on(registry: Registry, role: Role, app: Any, required: str, doing: str) -> str:
    """`app` must name a known application the token may act on: 400 `application: <required>.` if
    not, 403 `This token may only <doing>.` for another application's."""
    if not isinstance(app, str) or app not in registry.application_ids:
        raise OpenAIError(400, f"application: {required}.", code="invalid_request", param="application")
    if not role.may_see(app):
        raise OpenAIError(403, f"This token may only {doing}.", code="forbidden", param="application")
    return app


async def read_json(request: Request) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY:
        raise OpenAIError(413, "The request body is too large.", code="request_too_large")
    try:
        parsed = orjson.loads(body or b"{}")
    except orjson.JSONDecodeError as exc:
        raise OpenAIError(400, f"The request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(parsed, dict):
        raise OpenAIError(400, "The request body must be a JSON object.", code="invalid_request")
    dumps_json(parsed, request_too_deep)  # what is stored must be writable back: refused here, not a 500 on reads
    return parsed


NOTE_MAX = 500


def take_note(body: dict[str, Any]) -> str:
    """G11: the `note` a write may carry onto the version it makes (removed from `body`)."""
    note = body.pop("note", "")
    if not isinstance(note, str) or len(note) > NOTE_MAX:
        raise OpenAIError(400, f"note: a string of at most {NOTE_MAX} characters.", code="invalid_request",
                          param="note")
    return note.strip()


def _version_number(value: Any, param: str) -> int:
    if isinstance(value, str):
        text = value.strip()
        text = text[2:] if text.startswith("W/") else text
        text = text.strip('"')
        value = int(text) if text.isdigit() and len(text) < 19 else None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise OpenAIError(400, f"{param}: the version your change is based on, a whole number.",
                          code="invalid_request", param=param)
    return value


def take_expected(request: Request, body: dict[str, Any] | None) -> Expected:
    """G19: the version a write is based on, from `If-Match: <version>` or `expected_version` in the body
    (removed from `body`); both given must agree. None when neither is."""
    header = request.headers.get("if-match")
    field = body.pop("expected_version", None) if body is not None else None
    expected = None
    if header is not None:
        expected = (_version_number(header, "If-Match"), "If-Match")
    if field is not None:
        number = _version_number(field, "expected_version")
        if expected is not None and expected[0] != number:
            raise OpenAIError(400, f"expected_version: {number} disagrees with If-Match: {expected[0]}.",
                              code="invalid_request", param="expected_version")
        expected = (number, "expected_version")
    return expected


def digits(value: str, most: int) -> bool:
    """ASCII digits only (str.isdigit also takes '²', which int() refuses), at most `most` of them."""
    return 0 < len(value) <= most and value.isascii() and value.isdigit()


def query_int(value: str | None, default: int, name: str, most: int = 1000) -> int:
    """A query parameter's whole number from 1 to `most` (at most 4 digits), `default` when absent."""
    if value is None:
        return default
    if not digits(value, 4) or not 1 <= int(value) <= most:
        raise OpenAIError(400, f"'{name}' must be an integer from 1 to {most}.", code="invalid_value", param=name)
    return int(value)


def dry_run(request: Request, allowed: tuple[str, ...] = ()) -> bool:
    """G16: `?dry_run=true` (validate and answer what would be written, writing nothing). Any other
    query parameter than `dry_run` and `allowed` is refused."""
    from gateway.admin.console_api import refuse_unknown_query

    refuse_unknown_query(request, ("dry_run", *allowed))
    value = request.query_params.get("dry_run", "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise OpenAIError(400, "dry_run: true or false.", code="invalid_request", param="dry_run")
    return value in ("true", "1")


def refuse_unknown(body: dict[str, Any], known: tuple[str, ...], shape: str) -> None:
    for key in body:
        if key not in known:
            raise OpenAIError(400, f"{key}: unknown field; the body is {shape}.", code="invalid_request", param=key)


async def revert_to(registry: Registry, kind: str, doc: Version, request: Request, role: Role,
                    view: Callable[[Version], dict[str, Any]]) -> RawResponse:
    """The revert endpoints of policies and stages: `{"version": n, "note"?, "expected_version"?}` (or
    If-Match) makes version n current again, as a new version."""
    body = await read_json(request)
    refuse_unknown(body, ("version", "note", "expected_version"), "{version, note?, expected_version?}")
    note, expected = take_note(body), take_expected(request, body)
    version = body.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or not 0 < version < 2**63:
        raise OpenAIError(400, "version: required, a whole number from 1.", code="invalid_request",
                          param="version")
    try:
        new = await registry.revert(kind, doc.id, version, owner(role), note, expected=expected)
    except NotFound:
        raise OpenAIError(404, f"{kind.capitalize()} '{doc.id}' has no version {version}.",
                          code="version_not_found", param="version") from None
    return ok({**view(new), "reverted_to": version})


def wrap(admin: AdminAuth, handler: Handler) -> Callable[[Request], Awaitable[RawResponse]]:
    """Authenticate, run, and map errors to OpenAI-shaped answers (400 invalid, 503 store down)."""

    async def run(request: Request) -> RawResponse:
        try:
            role = admin.request_role(request)
            return await handler(request, role)
        except GatewayError as err:  # OpenAIError, InvalidChange 400, VersionConflict and StoreRegressed 409,
            response = error_response(err)  # StoreError 503 (gateway/errors.py); one without an answer: a 500
            if response is None:
                raise
            return response
    run.__doc__ = handler.__doc__ or handler.__name__.replace("_", " ").capitalize() + "."
    run.__name__ = handler.__name__
    return run


async def versions_of(store: Any, kind: str, doc: Version, view: Callable[[Version], dict[str, Any]],
                      request: Request | None = None) -> RawResponse:
    """The versions endpoints of policies and stages: every version, its note, which one is current;
    `?summary=true` (G11): without the bodies (id, version, time, author, note, current)."""
    summary = False
    if request is not None:
        from gateway.admin.console_api import refuse_unknown_query

        refuse_unknown_query(request, ("summary",))
        value = request.query_params.get("summary", "false").lower()
        if value not in ("true", "false", "1", "0"):
            raise OpenAIError(400, "summary: true or false.", code="invalid_request", param="summary")
        summary = value in ("true", "1")
    history = await store.versions(kind, doc.id)
    if summary:
        return ok({"object": "list", "data": [{"id": v.id, "object": kind, "version": v.version, "updated": v.created,
                                                "author": v.author, "note": v.note, "current": v.version == doc.version}
                                               for v in history]})
    return ok({"object": "list", "data": [{**view(v), "note": v.note, "current": v.version == doc.version}
                                          for v in history]})
