"""The policy-type registry (gateway/guard/policy_types.py, issue 26) is the one list of policy types: the
config accepts exactly its names, every lexical one has a metric class, every model one a builder, the
admin catalogue lists exactly its names, and its fields agree with each other."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.admin.catalogue import PARAMS, policy_types
from gateway.config.guard_schema import PolicySpec
from gateway.errors import ParamError
from gateway.guard.policy import compile_policy, host_access
from gateway.guard.policy_types import POLICY_TYPES, TRAINABLE
from gateway.metrics import KINDS

NAMES = set(POLICY_TYPES)


def _accepted(name: str) -> bool:
    """Whether a policy of type `name` gets past the type check (its parameters may still be wrong)."""
    try:
        compile_policy(PolicySpec(id="p", type=name))
    except ParamError as e:
        return e.path != ("type",)
    except TypeError:  # a model type compiled without a scoring runtime: the type itself was accepted
        return True
    return True


def test_the_config_accepts_exactly_the_registered_types() -> None:
    candidates = NAMES | set(KINDS) | set(PARAMS) | {"telepathy", "secrets", "Regex", ""}
    assert {name for name in candidates if _accepted(name)} == NAMES
    with pytest.raises(ParamError) as info:
        compile_policy(PolicySpec(id="p", type="telepathy"))
    assert str(info.value) == f"unknown policy type 'telepathy'; known: {', '.join(sorted(NAMES))}"


def test_every_lexical_type_has_a_metric_class_and_every_metric_class_a_type() -> None:
    lexical = {name for name, t in POLICY_TYPES.items() if t.lexical}
    assert lexical and lexical <= set(KINDS), lexical - set(KINDS)
    assert set(KINDS) <= NAMES, set(KINDS) - NAMES


class _Reached(Exception):
    pass


class _Runtime:
    """A scoring runtime that stops the build at its first use: the type's builder was found."""

    def __getattr__(self, name: str) -> Any:
        raise _Reached(name)


@pytest.mark.parametrize("name", sorted(n for n, t in POLICY_TYPES.items() if t.family == "model"))
def test_every_model_type_has_a_builder(name: str) -> None:
    from gateway.metrics.model import compile_model_policy

    try:
        compile_model_policy(PolicySpec(id="p", type=name), _Runtime())  # type: ignore[arg-type]
    except ParamError as e:
        assert e.path != ("type",), str(e)
    except _Reached:
        pass


def test_the_catalogue_lists_exactly_the_registry() -> None:
    listed = policy_types()
    assert [t["type"] for t in listed] == sorted(NAMES)
    assert set(PARAMS) == NAMES
    for entry in listed:
        t = POLICY_TYPES[entry["type"]]
        assert (entry["family"], entry["description"], entry["trainable"], entry["writable"]) == (
            t.family, t.description, t.trainable, t.host_reason is None)
        assert entry["score"] == ("compliance" if t.higher_is_compliant else "risk")


def test_the_fields_agree() -> None:
    for name, t in POLICY_TYPES.items():
        assert t.name == name
        assert t.description, name
        # lexical and judge types name the threshold 0 selects; a model's comes from the model
        assert (t.calibrated_threshold is None) == (t.family == "model"), name
        assert not t.relabelled or t.lexical, name                 # only lexical metrics have spans to relabel
        assert not t.higher_is_compliant or t.family == "model", name  # the hallucination models
        refused = host_access(PolicySpec(id="p", type=name))
        assert (refused is not None) == (t.host_reason is not None), name
    assert TRAINABLE == ("classifier", "similar")
    assert all(POLICY_TYPES[name].family == "model" for name in TRAINABLE)


@pytest.mark.parametrize("name", sorted(n for n, t in POLICY_TYPES.items() if t.family == "model"))
def test_every_model_type_refuses_a_parameter_it_does_not_have(name: str) -> None:
    """A model-based policy with an unknown key is a 400 naming it, as for the lexical types (before,
    classifier, similar, detector and the hallucination types stored any key they were sent)."""
    from gateway.metrics.model import compile_model_policy

    with pytest.raises(ParamError) as info:
        compile_model_policy(PolicySpec(id="p", type=name, bogus=1), _Runtime())  # type: ignore[arg-type]
    assert info.value.path == ("bogus",) and "unknown parameter" in str(info.value)


def test_model_parameters_are_the_catalogues() -> None:
    """What a model-based type accepts is what the catalogue (GET /v1/admin/policy-types) shows."""
    from gateway.metrics.model import MODEL_PARAMS

    model = {n for n, t in POLICY_TYPES.items() if t.family == "model" and n != "onnx_classifier"}
    assert set(MODEL_PARAMS) == model
    for name in model:
        assert set(MODEL_PARAMS[name]) == {p["name"] for p in PARAMS[name]}, name


def test_a_trained_version_keeps_what_training_stored() -> None:
    """A stored version of a trained classifier or similar policy carries its head, examples and record:
    they compile (the builder is reached), they are not refused as unknown."""
    from gateway.metrics.model import compile_model_policy

    for name in TRAINABLE:
        body = {"head": {}, "trained": {"rows": 1}, "training_examples": []}
        with pytest.raises((_Reached, ParamError)) as info:
            compile_model_policy(PolicySpec(id="p", type=name, **body), _Runtime())  # type: ignore[arg-type]
        if isinstance(info.value, ParamError):  # the head itself may be refused (an empty one here), not as unknown
            assert "unknown parameter" not in str(info.value), str(info.value)
