"""One exception tree (gateway/errors.py) and one mapping to OpenAI's error shape (`to_openai`).

Every exception class defined in gateway/ derives from GatewayError; the names it had before the tree
still import from where they were defined; and `to_openai` gives each kind its status and code."""

from __future__ import annotations

import ast
import builtins
import importlib
from pathlib import Path

import orjson
import pytest

from gateway import errors
from gateway.errors import GatewayError, OpenAIError, to_openai

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gateway"

# Exception classes that may keep a base outside GatewayError, each with its reason. Empty: where a
# class was a RuntimeError, ValueError or KeyError it still is, as a second base beside its kind (an
# `except KeyError` around a store lookup, `except ValueError` around parameter parsing keep working).
ALLOWED: dict[str, str] = {}

def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def exception_classes() -> list[tuple[str, str]]:
    """(module, class name) of every class in gateway/ whose base names an exception: a builtin one, or
    a name ending in Error/Exception, or one of the classes found so far (fixpoint over the package)."""
    classes: list[tuple[str, str, list[str]]] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bases = [ast.unparse(b).rpartition(".")[2] for b in node.bases]
                classes.append((_module_name(path), node.name, bases))
    builtin = {n for n, o in vars(builtins).items() if isinstance(o, type) and issubclass(o, BaseException)}
    known = set(builtin) | {"GatewayError"}
    found: dict[tuple[str, str], None] = {}
    changed = True
    while changed:
        changed = False
        for module, name, bases in classes:
            if (module, name) not in found and any(b in known or b.endswith(("Error", "Exception")) for b in bases):
                found[(module, name)] = None
                known.add(name)
                changed = True
    return sorted(found)


def test_the_scan_finds_the_known_exceptions() -> None:
    found = {name for _, name in exception_classes()}
    assert {"GatewayError", "OpenAIError", "StoreError", "NotFound", "ParamError", "ConfigError", "UpstreamTimeout",
            "UpstreamTooLarge", "RateLimited", "_BodyTooLarge", "_Stopped", "BenchError"} <= found


@pytest.mark.parametrize("module,name", exception_classes())
def test_every_exception_class_derives_from_gateway_error(module: str, name: str) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert isinstance(cls, type) and issubclass(cls, BaseException), (module, name)
    if name in ALLOWED:
        return
    assert issubclass(cls, GatewayError), f"{module}.{name} is not a GatewayError (gateway/errors.py)"


# Where each class was defined before the tree: the name still imports from there.
OLD_HOMES = {
    "gateway.wire": ["OpenAIError"],
    "gateway.proxy.openai": ["OpenAIError"],
    "gateway.policies.registry": ["StoreRegressed", "VersionConflict", "InvalidChange"],
    "gateway.admin.evaluate": ["EvaluateError", "PolicyFailed"],
    "gateway.config.errors": ["ConfigError"],
    "gateway.metrics.model": ["MissingKnowledge"],
    "gateway.metrics.types": ["ParamError"],
    "gateway.scoring.build": ["ModelError"],
    "gateway.store.base": ["StoreError", "NotFound"],
    "gateway.store": ["StoreError", "NotFound"],
    "gateway.proxy.limits": ["RedisError"],
    "gateway.proxy.upstream": ["UpstreamTimeout", "UpstreamUnreachable", "UpstreamTooLarge"],
    "gateway.proxy.stream_guard": ["UnreadableStream"],
    "gateway.bench.procs": ["BenchError"],
    "gateway.bench.rawhttp": ["RawHTTPError"],
    "gateway.bench.load": ["LoadError"],
}


@pytest.mark.parametrize("module", sorted(OLD_HOMES))
def test_old_names_still_import_from_their_modules(module: str) -> None:
    loaded = importlib.import_module(module)
    for name in OLD_HOMES[module]:
        assert getattr(loaded, name) is getattr(errors, name), (module, name)


def test_builtin_bases_are_kept() -> None:
    """What an `except` written against a builtin caught before, it still catches."""
    assert issubclass(errors.NotFound, KeyError) and str(errors.NotFound("p")) == "'p'"
    for cls in (errors.StoreError, errors.StoreRegressed, errors.VersionConflict, errors.MissingKnowledge,
                errors.ModelError, errors.BenchError, errors.RawHTTPError, errors.LoadError):
        assert issubclass(cls, RuntimeError), cls
    for cls in (errors.ParamError, errors.InvalidChange, errors.EvaluateError):
        assert issubclass(cls, ValueError), cls
    assert issubclass(errors.UpstreamTooLarge, errors.UpstreamUnreachable)


def _answer(exc: BaseException) -> tuple[int, str | None, str, dict]:
    answer = to_openai(exc)
    assert answer is not None, exc
    body = orjson.loads(answer.body())["error"]
    return answer.status, answer.code, answer.type, body


def test_each_kind_maps_to_its_status_and_code() -> None:
    assert _answer(OpenAIError(418, "teapot", code="tea"))[:2] == (418, "tea")
    status, code, type_, body = _answer(errors.InvalidChange("threshold", "must be in [0, 1]"))
    assert (status, code, type_) == (400, "invalid_policy", "invalid_request_error")
    assert body == {"message": "threshold: must be in [0, 1]", "type": "invalid_request_error",
                    "param": "threshold", "code": "invalid_policy"}
    status, code, _, body = _answer(errors.EvaluateError("messages", "required"))
    assert (status, code, body["message"], body["param"]) == (400, "invalid_request", "messages: required", "messages")
    status, code, _, body = _answer(errors.VersionConflict("policy", "pii", 2, 3, "If-Match"))
    assert (status, code, body["param"]) == (409, "version_conflict", "If-Match")
    assert body["message"].startswith("Policy 'pii' is at version 3, not 2: someone changed it")
    status, code, _, body = _answer(errors.StoreRegressed("store at 1, plan at 2"))
    assert (status, code) == (409, "store_regressed")
    assert "(store at 1, plan at 2)" in body["message"]
    status, code, type_, body = _answer(errors.StoreError("connection refused"))
    assert (status, code, type_) == (503, "store_unavailable", "invalid_request_error")
    assert "connection refused" not in body["message"]
    status, code, type_, body = _answer(errors.PolicyFailed("rubric"))
    assert (status, code, type_) == (502, "policy_error", "server_error")
    assert body["message"] == "Policy 'rubric' could not be scored; the gateway's log has the reason."


def test_a_rate_limit_answers_as_itself() -> None:
    from gateway.proxy.handler import RateLimited
    from gateway.proxy.limits import Verdict

    limited = RateLimited(Verdict(denied="requests per minute", retry_after_s=2.0))
    answer = to_openai(limited)
    assert answer is limited and answer.status == 429 and answer.code == "rate_limit_exceeded"


@pytest.mark.parametrize("exc", [
    errors.UpstreamTimeout("slow", "idle"), errors.UpstreamUnreachable("down"), errors.NotFound("x"),
    errors.ParamError(("patterns", 0), "bad"), errors.MissingKnowledge("none"), errors.UnreadableStream("odd"),
    errors.ModelError("missing"), errors.RedisError("ERR"), errors.BenchError("x"), ValueError("x"), TypeError("x"),
])
def test_errors_without_an_answer_of_their_own_are_left_to_the_callers_500(exc: BaseException) -> None:
    """Upstream failures and missing documents are answered where they are caught, naming the phase or
    the document; the rest (and any non-gateway exception) is a bug: the caller's 500, its text kept out."""
    assert to_openai(exc) is None
    internal = errors.internal_error("Internal gateway error.")
    assert (internal.status, internal.code, internal.type) == (500, "internal_error", "server_error")
