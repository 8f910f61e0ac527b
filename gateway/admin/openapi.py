"""An OpenAPI 3.1 document of the admin and guard API, generated from the routes themselves (paths,
methods, path parameters, the handlers' first docstring line), served at /v1/admin/openapi.json."""

from __future__ import annotations

import re
from typing import Any

from starlette.routing import Route

from gateway import __version__

_PARAM = re.compile(r"{(\w+)}")
_ERROR = {"description": "An OpenAI-shaped error: {error: {message, type, param, code}}"}


def openapi_document(routes: list[Route]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
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
            if method in ("POST", "PUT", "PATCH"):
                operation["requestBody"] = {"content": {"application/json": {"schema": {"type": "object"}}}}
            paths.setdefault(route.path, {})[method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "guardrail-gateway admin and guard API", "version": __version__,
                 "description": "Admin tokens (central or app:<id>) for /v1/admin and /v1/moderation; "
                                "application keys for /v1/guard/evaluate."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }
