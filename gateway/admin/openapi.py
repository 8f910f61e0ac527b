"""An OpenAPI 3.1 document of the admin and guard API, generated from the routes themselves (paths,
methods, path parameters, the handlers' first docstring line), served at /v1/admin/openapi.json.

G15 (first part): bodies the API validates with a pydantic model carry that model's JSON Schema (stages,
policies, the dry-run request and answer, stats); the others stay `{"type": "object"}`. The console's
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
    from gateway.admin.dry_run import DryRunRequest, DryRunResponse
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
            ("/v1/admin/stats", "get"): (None, stats), "models": (StageSpec, PolicySpec, DryRunRequest, DryRunResponse)}


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
            if params:
                operation["parameters"] = params
            request, response = typed.get((route.path, method.lower()), (None, None))
            if method in ("POST", "PUT", "PATCH"):
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
