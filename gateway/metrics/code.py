"""`code`: a metric written as a Python function, named in the config.

Params:
  function: "package.module:function_name" (required; the part after ":" may be dotted, e.g.
            "pkg.mod:Scorer.score" for a static method). Imported when the metric is built: a
            module that cannot be imported, a missing attribute or a non-callable one is a ParamError
            on `function`. The config is trusted code: it can name any importable function.
  params:   optional mapping of keyword arguments; the function is called as `fn(text, **params)`.
            When the function's signature is known, arguments it cannot take are a ParamError.

The function may return a bool, an int, a float (not NaN), a set/frozenset/list/tuple of str labels
(-> frozenset), or a MetricValue (used as is). Any other return raises TypeError at measure time (a
NaN raises ValueError) and the engine applies the stage's `on_error`; so does anything the function
raises. The function must be pure and thread-safe like every metric; it is called on the event
loop's worker threads, so keep it CPU-cheap. `max_span_chars` is 0: spans a function returns are
used for redaction, but the stream guard holds back nothing for them.
"""

from __future__ import annotations

import importlib
import inspect
import math
import numbers
import re
from collections.abc import Callable, Mapping
from typing import Any, Self

from gateway.metrics.types import MetricValue, ParamError

_ALLOWED = ("function", "params")
_SPEC = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*):"
                   r"([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)$")
_EXPECTED = "bool, int, float, a set/frozenset/list/tuple of str labels, or MetricValue"


def load_function(spec: str) -> Callable[..., Any]:
    """Import "module:attr.path"; raise ParamError(("function",), reason) on any failure."""
    match = _SPEC.match(spec)
    if match is None:
        raise ParamError(("function",), f"must look like 'package.module:function_name', got {spec!r}")
    module_name, attr_path = match.groups()
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise ParamError(("function",), f"cannot import module {module_name!r}: {err}") from None
    except Exception as err:  # noqa: BLE001 -- the module itself raised while being imported
        raise ParamError(("function",), f"importing module {module_name!r} failed: "
                                        f"{type(err).__name__}: {err}") from None
    done: list[str] = []
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            owner = f"{module_name}:{'.'.join(done)}" if done else f"module {module_name!r}"
            raise ParamError(("function",), f"{owner} has no attribute {part!r}") from None
        done.append(part)
    if not callable(target):
        raise ParamError(("function",), f"{spec!r} is not callable (it is of type {type(target).__name__})")
    return target  # type: ignore[no-any-return]


def to_metric_value(result: Any, origin: str = "code metric") -> MetricValue:
    """Normalise what a metric function returned; TypeError/ValueError for anything unusable."""
    if isinstance(result, MetricValue):
        return result
    if isinstance(result, bool):
        return MetricValue(result)
    if isinstance(result, numbers.Integral):
        return MetricValue(int(result))
    if isinstance(result, numbers.Real):
        value = float(result)
        if math.isnan(value):
            raise ValueError(f"{origin} returned NaN")
        return MetricValue(value)
    if isinstance(result, (set, frozenset, list, tuple)):
        for label in result:
            if not isinstance(label, str):
                raise TypeError(f"{origin} returned a {type(result).__name__} with the label {label!r} "
                                f"of type {type(label).__name__}; labels must be str")
        return MetricValue(frozenset(result))
    raise TypeError(f"{origin} returned {type(result).__name__}; expected {_EXPECTED}")


class CodeMetric:
    """Calls `fn(text, **params)`; as thread-safe as the function it calls."""

    __slots__ = ("_fn", "function", "max_span_chars", "params")

    def __init__(self, function: str, fn: Callable[..., Any], params: Mapping[str, Any] | None = None) -> None:
        self.function = function
        self.params = dict(params or {})
        self.max_span_chars = 0
        self._fn = fn

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Self:
        unknown = [key for key in params if key not in _ALLOWED]
        if unknown:
            raise ParamError((unknown[0],), f"unknown parameter; allowed: {', '.join(_ALLOWED)}")
        spec = params.get("function")
        if not isinstance(spec, str):
            raise ParamError(("function",), "required: 'package.module:function_name'")
        kwargs = params.get("params", {})
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, Mapping):
            raise ParamError(("params",), f"must be a mapping of keyword arguments, not {type(kwargs).__name__}")
        for key in kwargs:
            if not isinstance(key, str) or not key.isidentifier():
                raise ParamError(("params", str(key)), "keyword argument names must be identifiers")
        fn = load_function(spec)
        try:
            signature = inspect.signature(fn)
        except (TypeError, ValueError):  # some builtins have no introspectable signature
            signature = None
        if signature is not None:
            try:
                signature.bind("", **kwargs)
            except TypeError as err:
                raise ParamError(("params",), f"{spec} cannot be called as fn(text, **params): {err}") from None
        return cls(spec, fn, kwargs)

    def measure(self, text: str) -> MetricValue:
        return to_metric_value(self._fn(text, **self.params), f"code metric {self.function}")

    def __repr__(self) -> str:
        return f"CodeMetric({self.function!r})"
