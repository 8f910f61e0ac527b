"""An OpenAPI 3.1 document of the admin and guard API, generated from the routes themselves (paths,
methods, path parameters, the handlers' first docstring line), served at /v1/admin/openapi.json.

G15: bodies the API validates with a pydantic model carry that model's JSON Schema (stages, policies, the
dry-run request and answer, stats); the bodies handlers check by hand (session, PATCH bodies, training
rows, feedback, applications, keys, apply, pins, revert, threshold) are written out in `_bodies`. A body
not listed stays `{"type": "object"}`. The console's
"API reference" page (#/api) renders this document."""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import Route

from gateway import __version__

_PARAM = re.compile(r"{(\w+)}")
_ERROR = {"description": "An OpenAI-shaped error: {error: {message, type, param, code}}"}


def _schemas() -> dict[Any, Any]:
    """(path, method) -> (request model or schema, response model or schema); None where untyped."""
    from gateway.admin.dry_run_schema import DryRunRequest, DryRunResponse
    from gateway.config.guard_schema import PolicySpec, StageSpec

    stage = {"allOf": [{"$ref": "#/components/schemas/StageSpec"},
                       {"type": "object", "properties": {"applications": {
                           "type": "array", "items": {"type": "string"},
                           "description": "Application stages: the applications it is attached to."}}}]}
    stats = {"type": "object", "description": ("GET /v1/admin/stats: guarded records, actions, would-have-acted, metric errors "
                                                  "and fail-open passes over a window, a series over time and the top rulesets, "
                                                  "applications and metrics."),
             "properties": {k: {} for k in ("since", "until", "bucket", "source", "truncated", "records", "requests",
                                            "actions", "acted", "would_have_acted", "errors", "fail_open",
                                            "series", "top_rulesets", "top_applications", "top_metrics")}}
    return {("/v1/admin/dry-run", "post"): (DryRunRequest, DryRunResponse),
            ("/v1/admin/stages", "post"): (stage, None), ("/v1/admin/policies", "post"): (PolicySpec, None),
            ("/v1/admin/stats", "get"): (None, stats), **_bodies(), **_FEED,
            "models": (StageSpec, PolicySpec, DryRunRequest, DryRunResponse)}


def _obj(properties: dict[str, Any], required: tuple[str, ...] = (), description: str = "",
         extra: bool = False, **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": extra}
    if required:
        out["required"] = list(required)
    if description:
        out["description"] = description
    return {**out, **more}


_STR = {"type": "string", "minLength": 1}
_LABEL = {"enum": ["PASS", "FAIL"], "description": "Case-insensitive."}
ROW = {"anyOf": [
    _obj({"example": _STR, "compliance": _LABEL, "synthetic": {"type": "boolean"}}, ("example", "compliance"),
         "Seed 000's Add Data row."),
    _obj({"type": _LABEL, "input_example": _STR, "output_example": _STR}, ("type",),
         "Seed 001's example (input_example or output_example).")]}
_LIMITS = {"models": {"type": "array", "items": {"type": "string"}, "description": "Model names or globs."},
           "rpm": {"type": ["integer", "null"], "minimum": 1}, "tpm": {"type": ["integer", "null"], "minimum": 1}}
KEY = _obj({**_LIMITS, "expires_at": {"type": ["string", "number", "null"],
                                      "description": "ISO 8601 time or Unix seconds."}},
           description="Per-key limits (models, rpm, tpm, expiry).")
APPLICATION = {"id": {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"},
               "stages": {"type": "array", "items": {"type": "string"}, "description": "Its own stages, in order."},
               "allow_request_stages": {"type": "boolean", "default": True}, **_LIMITS,
               "key": {**KEY, "description": "Limits for the key made with it (create only)."}}
_LAX: dict[str, Any] = {"extra": True}  # the handler ignores unknown fields (not refused yet)
_NOTE = {"type": "string", "maxLength": 500, "description": "G11: a note on the version this write makes."}
_EXPECTED = {"type": "integer", "minimum": 0, "description": "G19: the version the change is based on (or the "
             "If-Match header); another current version answers 409 version_conflict."}
_WHERE = {"application": _STR, "models": {"type": "array", "items": _STR, "minItems": 1},
          "on": {"enum": ["input", "output"], "default": "input"}}
_FEEDBACK_ITEM = _obj({"id": {"type": "integer"}, "object": {"const": "feedback"}, "policy_id": _STR,
                       "record_id": {"type": ["string", "null"]}, "on": {"enum": ["input", "output", None]},
                       "label": _LABEL, "text": {"type": "string"}, "applied": {"type": "boolean"},
                       "training_row": {"type": ["integer", "null"],
                                        "description": "The training row applying it wrote."},
                       "created": {"type": "number", "description": "Unix time."},
                       "author": {"type": ["string", "null"], "description": "central or app:<id>."}},
                      description="G13: a feedback item (null record_id/author: given before they were kept).",
                      extra=True)
_FEEDBACK_LIST = _obj({"object": {"const": "list"}, "data": {"type": "array", "items": _FEEDBACK_ITEM}},
                      extra=True)


# size: a table, one body schema per admin route that validates its body by hand, read as one list
def _bodies() -> dict[Any, Any]:
    """G15 (rest): the bodies handlers validate by hand, written out. `additionalProperties: false` where the
    handler refuses an unknown field by name (400 `param`); true (`_LAX`) where it still ignores one."""
    from gateway.config.guard_schema import ActionSpec, PolicySpec, StageSpec

    policy_props = {k: v for k, v in PolicySpec.model_json_schema(
        ref_template="#/components/schemas/{model}")["properties"].items() if k != "id"}
    stage_props = {k: v for k, v in StageSpec.model_json_schema(
        ref_template="#/components/schemas/{model}")["properties"].items() if k != "name"}
    action = {"$ref": f"#/components/schemas/{ActionSpec.__name__}"}
    base, apps = "/v1/admin/policies/{id}", "/v1/admin/applications"
    return {
        ("/v1/admin/session", "post"): (_obj({"token": {**_STR, "description": "An admin token."}}, ("token",),
                                             "Sign in: the answer sets the gg_session cookie."), None),
        (base, "patch"): (_obj({**policy_props, "note": _NOTE, "expected_version": _EXPECTED}, (), "Changed fields, merged into the current version; id and owner "
                                                 "cannot change. Other keys are the type's parameters "
                                                 "(GET /v1/admin/policy-types).", extra=True), None),
        ("/v1/admin/stages/{name}", "patch"): (_obj({**stage_props, "note": _NOTE, "expected_version": _EXPECTED,
                                                     "applications": {
            "type": "array", "items": {"type": "string"}}}, (), "Changed spec fields, merged into the current "
                                                                 "spec; name cannot change."), None),
        (base + "/data", "post"): (_obj({"data": {"type": "array", "items": ROW, "minItems": 1}}, ("data",),
                                        "Add Data: labelled rows."), None),
        (base + "/data/{row}", "patch"): (_obj({"example": _STR, "compliance": _LABEL}, (),
                                               "A training row's new text or label.", minProperties=1), None),
        ("/v1/admin/feedback", "post"): (_obj({"record_id": _STR, "policy_id": _STR, "label": _LABEL,
                                               "compliance": {**_LABEL, "description": "Another name for label."},
                                               "on": {"enum": ["input", "output"], "default": "input"}},
                                              ("record_id", "policy_id"),
                                              "The correct label for a policy on a monitoring record."),
                                         _FEEDBACK_ITEM),
        ("/v1/admin/feedback", "get"): (None, _FEEDBACK_LIST),
        (base + "/feedback", "get"): (None, _FEEDBACK_LIST),
        ("/v1/admin/feedback/{item}", "delete"): (None, {"allOf": [_FEEDBACK_ITEM, _obj({
            "deleted": {"const": True}, "training_row_deleted": {"type": ["integer", "null"], "description": (
                "An applied item's training row, deleted with it.")}}, extra=True)]}),
        (base + "/revert", "post"): (_obj({"version": {"type": "integer", "minimum": 1}, "note": _NOTE,
                                           "expected_version": _EXPECTED}, ("version",)), None),
        ("/v1/admin/stages/{name}/revert", "post"): (_obj({"version": {"type": "integer", "minimum": 1}, "note": _NOTE,
                                                           "expected_version": _EXPECTED}, ("version",)), None),
        ("/v1/moderation/policy/{id}/update-threshold", "put"): (_obj({"classification_threshold": {
            "type": "number", "minimum": 0, "maximum": 1}, "note": _NOTE, "expected_version": _EXPECTED},
            ("classification_threshold",)), None),
        (base + "/train", "post"): (_obj({"note": _NOTE}, (), "Start a training job."), None),
        (base + "/generate", "post"): (_obj({"model": _STR, "count": {"type": "integer", "minimum": 1,
                                                                      "maximum": 200, "default": 20}}, **_LAX), None),
        (base + "/apply", "post"): (_obj({**_WHERE, "action": action, "timeout_ms": {"type": "integer"}}, (),
                                         "Where to apply: application, models, or both.", **_LAX), None),
        (base + "/apply", "delete"): (_obj(_WHERE, (), "Where to remove it from.", **_LAX), None),
        ("/v1/admin/stages/{name}/pin", "put"): (_obj({"application": _STR, "version": {"type": "integer",
                                                                                         "minimum": 1}},
                                                      ("application", "version"), **_LAX), None),
        (apps, "post"): (_obj(APPLICATION, ("id",), "A new application; the answer shows its key once."), None),
        (apps + "/{id}", "patch"): (_obj({k: v for k, v in APPLICATION.items() if k not in ("id", "key")}), None),
        (apps + "/{id}/keys", "post"): (KEY, None),
        (apps + "/{id}/keys", "delete"): (_obj({"keep": {"type": "integer", "minimum": 0, "default": 1}}, (),
                                               "Revoke every key but the newest `keep`.", **_LAX), None),
        ("/v1/admin/policy-types", "get"): (None, _obj({"object": {"const": "list"}, "data": {"type": "array"}},
                                                       (), "Policy types with their parameters.", extra=True)),
        ("/v1/admin/metrics", "get"): (None, _obj({"object": {"const": "list"}, "data": {"type": "array"}},
                                                  (), "Metrics a rule may name.", extra=True)),
    }


_CHANGE = _obj({"object": {"const": "change"}, "seq": {"type": "integer", "description": "The feed's order and cursor."},
                "kind": {"enum": ["policy", "stage", "application", "pin"]}, "id": {"type": "string"},
                "version": {"type": "integer", "description": "The version written (deleted: the one that was current)."},
                "action": {"enum": ["write", "delete"]}, "author": {"type": "string"}, "created": {"type": "number"},
                "note": {"type": "string"}, "owner": {"type": "string", "description": "central or app:<id>."}},
               description="A change: metadata only, never the object's body.")
_JOB = _obj({"object": {"const": "training_job"}, "policy": {"type": "string"},
             "status": {"enum": ["training_queued", "training", "ready", "failed"]}, "started": {"type": "number"},
             "updated": {"type": "number"}, "finished": {"type": "number"}, "version": {"type": "integer"},
             "error": {"type": "string"}, "author": {"type": "string"}, "replica": {"type": "string"},
             "owner": {"type": "string", "description": "The policy's owner: central or app:<id>."},
             "metrics": {"type": "object"}}, ("policy", "status"), extra=True)
_FEED = {  # G18
    ("/v1/admin/changes", "get"): (None, _obj({"object": {"const": "list"}, "data": {"type": "array", "items": _CHANGE},
                                               "next_before": {"type": ["integer", "null"], "description":
                                                               "The next page's `before` (null: no more)."}})),
    ("/v1/admin/jobs", "get"): (None, _obj({"object": {"const": "list"}, "data": {"type": "array", "items": _JOB}})),
}
_LIMIT = {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}
_DRY = {"name": "dry_run", "in": "query", "schema": {"type": "boolean", "default": False},
        "description": "G16: validate and answer the would-be body (or the 400); nothing is written."}
_IF_MATCH = {"name": "If-Match", "in": "header", "schema": {"type": "string"},
             "description": "G19: the version the change is based on (as expected_version)."}
_SUMMARY = {"name": "summary", "in": "query", "schema": {"type": "boolean", "default": False},
            "description": "G11: versions without their bodies."}
_RECORD = [{"name": "record_id", "in": "query", "schema": {"type": "string", "minLength": 1},
            "description": "G13: only the items on this monitoring record."},
           {"name": "on", "in": "query", "schema": {"enum": ["input", "output"]},
            "description": "G13: which of the request's records (default: both)."}]
_QUERY: dict[tuple[str, str], list[dict[str, Any]]] = {
    ("/v1/admin/feedback", "get"): [{**_RECORD[0], "required": True}, _RECORD[1]],
    ("/v1/admin/policies/{id}/feedback", "get"): _RECORD,
    ("/v1/admin/policies", "post"): [_DRY], ("/v1/admin/stages", "post"): [_DRY],
    ("/v1/admin/applications", "post"): [_DRY], ("/v1/admin/applications/{id}", "patch"): [_DRY],
    ("/v1/admin/policies/{id}", "patch"): [_DRY, _IF_MATCH], ("/v1/admin/stages/{name}", "patch"): [_DRY, _IF_MATCH],
    ("/v1/admin/policies/{id}/revert", "post"): [_IF_MATCH], ("/v1/admin/stages/{name}/revert", "post"): [_IF_MATCH],
    ("/v1/moderation/policy/{id}/update-threshold", "put"): [_IF_MATCH],
    ("/v1/admin/policies/{id}/versions", "get"): [_SUMMARY], ("/v1/admin/stages/{name}/versions", "get"): [_SUMMARY],
    ("/v1/admin/changes", "get"): [
        {"name": "since", "in": "query", "schema": {"type": "number", "minimum": 0}, "description": "A Unix time."},
        _LIMIT, {"name": "before", "in": "query", "schema": {"type": "integer", "minimum": 0},
                 "description": "A change's seq: the next page (`next_before`)."}],
    ("/v1/admin/jobs", "get"): [_LIMIT],
    ("/v1/admin/policies/{id}", "get"): [{"name": "include", "in": "query", "schema": {"enum": ["head"]},
                                          "description": "G11: include the trained head's weights."}],
}


def _ref(model: Any, components: dict[str, Any]) -> dict[str, Any]:
    if isinstance(model, dict):
        return model
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def openapi_document(routes: list[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    typed = _schemas()
    components: dict[str, Any] = {}
    for model in typed.pop("models"):
        _ref(model, components)
    for route in routes:
        doc = (route.endpoint.__doc__ or route.name.replace("_", " ")).strip().splitlines()[0]
        for method in sorted(m for m in (route.methods or ()) if m != "HEAD"):
            operation: dict[str, Any] = {
                "operationId": f"{method.lower()}_{route.name}",
                "summary": doc,
                "security": [{"bearer": []}],
                "responses": {"200": {"description": "OK"}, "400": _ERROR, "401": _ERROR, "403": _ERROR,
                              "404": _ERROR, "503": _ERROR},
            }
            params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                      for name in _PARAM.findall(route.path)]
            params += _QUERY.get((route.path, method.lower()), [])
            if params:
                operation["parameters"] = params
            request, response = typed.get((route.path, method.lower()), (None, None))
            if method in ("POST", "PUT", "PATCH") or (method == "DELETE" and request is not None):
                body = _ref(request, components) if request is not None else {"type": "object"}
                operation["requestBody"] = {"content": {"application/json": {"schema": body}}}
            if response is not None:
                operation["responses"]["200"] = {"description": "OK", "content": {
                    "application/json": {"schema": _ref(response, components)}}}
            paths.setdefault(route.path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "guardrail-gateway admin and guard API", "version": __version__,
                 "description": "Admin tokens (central or app:<id>) for /v1/admin and /v1/moderation; "
                                "application keys for /v1/guard/evaluate."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": components},
        "paths": paths,
    }
