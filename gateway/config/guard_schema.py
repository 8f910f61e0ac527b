"""The config shape of policies (seed 001) and stages, rulesets, rules and actions (seed 004)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
Op = Literal["gt", "gte", "lt", "lte", "eq", "neq", "contains", "contains_any", "contains_all", "empty", "not_empty"]
Mode = Literal["enforce", "monitor"]
DEFAULT_BLOCK_MESSAGE = "This request was blocked by a guardrail policy."


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RuleSpec(_Frozen):
    """`metric op value`; a rule naming a policy without `op` means `gt` (or `lt`) the policy's threshold."""

    metric: Name
    op: Op | None = None
    value: Any = None


class ActionSpec(_Frozen):
    type: Literal["passthrough", "block", "override", "redact", "correct", "handoff"] = "passthrough"
    message: str | None = Field(None, description="block/handoff: the refusal text (default: the stage's message).")
    responses: tuple[str, ...] = Field((), description="override: fixed answers, one picked at random.")
    respond_with: Literal["completion", "error"] = Field(
        "completion", description="completion: a normal answer with finish_reason content_filter; error: an "
                                  "OpenAI error body with type guardrail_violation.")
    placeholder: str = Field("<{label}>", description="redact: replacement text; {label} is the entity type.")
    model: str | None = Field(None, description="correct: the corrector model, routed like any request.")
    instructions: str | None = Field(None, description="correct: extra instructions for the corrector.")

    @model_validator(mode="after")
    def _required(self) -> ActionSpec:
        if self.type == "override" and not self.responses:
            raise ValueError("an override action needs `responses`: a non-empty list of answers")
        if self.type == "correct" and not self.model:
            raise ValueError("a correct action needs `model`: the corrector model that rewrites the answer")
        return self


class RulesetSpec(_Frozen):
    name: Name
    rules: tuple[RuleSpec, ...] = Field(min_length=1)
    action: ActionSpec = ActionSpec()
    mode: Mode | None = Field(None, description="Overrides the stage's mode for this ruleset.")


class StreamSpec(_Frozen):
    holdback_chars: int = Field(64, ge=0, le=65536,
                                description="Streamed text held back unreleased (at least the longest span a "
                                            "pattern metric of the stage can match).")


class StageSpec(_Frozen):
    name: Name
    on: Literal["input", "output"]
    scope: Literal["central", "application"] = "application"
    on_error: Literal["block", "allow"] = "block"
    mode: Mode = "enforce"
    timeout_ms: float = Field(250.0, gt=0, description="Per metric; a slower metric counts as an error.")
    roles: tuple[str, ...] | None = Field(None, description="Message roles scanned (input default: user, tool).")
    message: str = Field(DEFAULT_BLOCK_MESSAGE, description="Refusal used by block actions and fail-closed errors.")
    stream: StreamSpec = StreamSpec()
    rulesets: tuple[RulesetSpec, ...] = Field(min_length=1)


class ExampleSpec(_Frozen):
    type: Literal["PASS", "FAIL"]
    input_example: str = ""
    output_example: str = ""


class PolicySpec(BaseModel):
    """Seed-001 policy. Keys other than these are the type's parameters (patterns, keywords, entities...)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: Name
    type: str
    rule: str = ""
    examples: tuple[ExampleSpec, ...] = ()
    threshold: float = Field(0.5, ge=0.0, le=1.0)
    allowed_behaviors: tuple[str, ...] = ()
    disallowed_behaviors: tuple[str, ...] = ()

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
