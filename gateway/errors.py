"""Every exception the gateway raises, in one tree, and the one mapping of them to OpenAI-shaped errors.

Our exception hierarchy:

* GatewayError
  x OpenAIError                 an error already in its answer's shape (status, message, type, code, param)
  x UpstreamError               an upstream model API failed
    + UpstreamTimeout             a deadline fired (`phase`: connect, first_byte, idle, total)
    + UpstreamUnreachable         no connection, or it broke before the answer was complete
      - UpstreamTooLarge            an answer read whole was over the gateway's memory cap
  x BackendError                a store or Redis the gateway keeps its state in failed
    + StoreError                  the policy store is unreachable or refused (503 store_unavailable)
    + RedisError                  the rate limiter's Redis answered an error
  x ConflictError               the stored state is not what the write expected (409)
    + VersionConflict             a write based on another version (409 version_conflict)
    + StoreRegressed              the store holds less than the running plan (409 store_regressed)
  x NotFound                    a stored document or version that is not there (a KeyError)
  x InvalidInput                a bad config, parameter or change, naming where it is
    + ConfigError                 a config file that cannot be used (every issue, by key path)
    + ParamError                  a bad metric parameter (`path` inside the params mapping)
    + InvalidChange               a policy/stage change that would not compile (400 invalid_policy)
    + EvaluateError               a Guard Evaluate API request that cannot run (400 invalid_request)
  x GuardError                  the guard could not check a text
    + PolicyFailed                a policy could not score a text (502 policy_error)
    + MissingKnowledge            a factual policy on `knowledge: context` met a request without one
    + UnreadableStream            a guarded stream held what the guard cannot read
  x ModelError                  the encoder cannot be found or built (the message says what to do)
  x ToolError                   the benchmark harness
    + BenchError                  a target could not be started, verified or measured
    + RawHTTPError                the raw HTTP client read something it does not understand
    + LoadError                   a load generator failed or printed something unreadable

Each class is importable from the module that raised it before this tree existed (store, metrics.types,
proxy.upstream...). Where a class was a RuntimeError, ValueError or KeyError it still is (a second base),
so an `except` written against the builtin keeps catching it. Two private control-flow exceptions stay in
their modules, based on GatewayError: scoring.build._Stopped and proxy.gate._BodyTooLarge.

`to_openai(exc)` is the one mapping to OpenAI's error shape: an OpenAIError answers as itself, a
GatewayError with an answer of its own (`openai()`) with that answer, anything else with None, which the
caller answers as its 500 (a bug: logged with its traceback, the text kept out of the answer). Errors
with a phase- or site-specific answer (upstream timeouts, a missing document) are answered where they
are caught, with the message that names what failed."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

if TYPE_CHECKING:  # config.errors imports this module for ConfigError
    from gateway.config.errors import ConfigIssue


class GatewayError(Exception):
    """The root of every exception the gateway defines."""

    def openai(self) -> OpenAIError | None:
        """This error's answer in OpenAI's shape; None when it has none of its own (a 500 where it escapes)."""
        return None


def error_body(message: str, type: str, code: str | None = None, param: str | None = None) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": type, "param": param, "code": code}})


class OpenAIError(GatewayError):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)

    def openai(self) -> OpenAIError:
        return self


def to_openai(exc: BaseException) -> OpenAIError | None:
    """The OpenAI-shaped answer (status and body) for `exc`; None for an exception that carries none."""
    return exc.openai() if isinstance(exc, GatewayError) else None


def internal_error(message: str) -> OpenAIError:
    """The 500 of an error that carries no answer: `message` only, never the exception's text."""
    return OpenAIError(500, message, type="server_error", code="internal_error")


# Upstream failures ---------------------------------------------------------------------------------

class UpstreamError(GatewayError):
    """An upstream model API failed; the proxy answers 502/504 naming the upstream and the phase."""


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer, or send its next chunk, within its timeout. `phase` names which
    deadline fired: connect, first_byte (the headers), idle or total."""

    def __init__(self, message: str, phase: str = "other") -> None:
        super().__init__(message)
        self.phase = phase


class UpstreamUnreachable(UpstreamError):
    """The connection could not be made, or broke before the answer was complete."""


class UpstreamTooLarge(UpstreamUnreachable):
    """An answer read whole (not streamed) was larger than the gateway holds in memory for one request."""


# Store and Redis failures ----------------------------------------------------------------------------

class BackendError(GatewayError):
    """A store or Redis the gateway keeps its state in failed."""


class StoreError(BackendError, RuntimeError):
    """The store is unreachable or refused the operation (the admin API answers 503)."""

    def openai(self) -> OpenAIError:
        return OpenAIError(503, "The policy store is unreachable; the gateway keeps enforcing its last good "
                                "plan. Retry later.", code="store_unavailable")


class RedisError(BackendError):
    """An error reply from the rate limiter's Redis (proxy/limits.py)."""


class ConflictError(GatewayError):
    """The stored state is not the one the write expected (409)."""


class VersionConflict(ConflictError, RuntimeError):
    """A write that named the version it was based on (If-Match / expected_version) while the document
    is at another one (admin API: 409 version_conflict, G19). The store raises it from its compare-and-set
    (`Store.put(..., expected_version=)`) with the param "expected_version"; the registry names the
    caller's (If-Match or expected_version)."""

    def __init__(self, kind: str, doc_id: str, expected: int, current: int, param: str = "expected_version") -> None:
        super().__init__(f"{kind} {doc_id!r} is at version {current}, not {expected}")
        self.kind, self.doc_id, self.expected, self.current, self.param = kind, doc_id, expected, current, param

    def openai(self) -> OpenAIError:
        return OpenAIError(409, f"{self.kind.capitalize()} '{self.doc_id}' is at version {self.current}, not "
                                f"{self.expected}: someone changed it since you read it. Reload it (version "
                                f"{self.current}) and make your change again.", code="version_conflict",
                           param=self.param)


class StoreRegressed(ConflictError, RuntimeError):
    """The store holds less than the running plan was built from (admin API: 409 until adopted)."""

    def openai(self) -> OpenAIError:
        return OpenAIError(409, f"The policy store holds less than the gateway enforces ({self}); writes are "
                                "refused until a central admin adopts it (POST /v1/admin/store/adopt) or it is "
                                "restored.", code="store_regressed")


class NotFound(GatewayError, KeyError):
    """A stored document or version that is not there. Still a KeyError (its str() is the key's repr);
    each place that catches it answers a 404 naming what it looked for."""


# Config, parameter and change errors -----------------------------------------------------------------

class InvalidInput(GatewayError):
    """A bad config, parameter or change; the message names where it is."""


class ConfigError(InvalidInput):
    """A config file that cannot be used; carries every issue found, not only the first."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = tuple(issues)
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.source}: {len(self.issues)} error(s)"]
        lines += [f"  {issue}" for issue in self.issues]
        return "\n".join(lines)


class ParamError(InvalidInput, ValueError):
    """A bad metric parameter; `path` is relative to the params mapping, e.g. ('patterns', 2)."""

    def __init__(self, path: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class InvalidChange(InvalidInput, ValueError):
    """A change that would not compile; `param` names the field (admin API: 400)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message

    def openai(self) -> OpenAIError:
        return OpenAIError(400, f"{self.param}: {self.message}", code="invalid_policy", param=self.param)


class EvaluateError(InvalidInput, ValueError):
    """A Guard Evaluate API request that cannot run; `param` names the field (400 invalid_request)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param

    def openai(self) -> OpenAIError:
        return OpenAIError(400, f"{self.param}: {self}", code="invalid_request", param=self.param)


# Guard and policy errors -----------------------------------------------------------------------------

class GuardError(GatewayError):
    """The guard could not check a text."""


class PolicyFailed(GuardError):
    """A policy could not score the text (its judge did not answer usably, its model failed...)."""

    def __init__(self, policy_id: str) -> None:
        super().__init__(f"Policy '{policy_id}' could not be scored; the gateway's log has the reason.")
        self.policy_id = policy_id

    def openai(self) -> OpenAIError:
        return OpenAIError(502, str(self), type="server_error", code="policy_error")


class MissingKnowledge(GuardError, RuntimeError):
    """A factual policy grounded on the request's context met a request without one."""


class UnreadableStream(GuardError):
    """A guarded stream held something the guard cannot read: a line that is no SSE field (` data:` with
    a leading space, a bare JSON line) or data that is not JSON. Relayed, it would pass unchecked;
    dropped, the stream would look complete. The proxy ends the stream with an error event instead."""


# The model runtime -----------------------------------------------------------------------------------

class ModelError(GatewayError, RuntimeError):
    """The encoder cannot be found or built; the message says what to install or run."""


# The benchmark harness -------------------------------------------------------------------------------

class ToolError(GatewayError):
    """The benchmark harness (gateway/bench) failed."""


class BenchError(ToolError, RuntimeError):
    """A benchmark target could not be started, verified or measured."""


class RawHTTPError(ToolError, RuntimeError):
    """The server answered something this client does not read, or hung up."""


class LoadError(ToolError, RuntimeError):
    """A load generator failed or printed something we cannot read."""
