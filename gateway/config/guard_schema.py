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

    metric: Name = Field(description="A policy id, or a built-in metric: pii, length, tokens.")
    op: Op | None = Field(None, description="Omitted with a policy: gt its threshold (lt for hallucination types).")
    value: Any = Field(None, description="The target: a number, a label, or a list of labels.")


class ActionSpec(_Frozen):
    type: Literal["passthrough", "block", "override", "redact", "correct", "handoff"] = Field(
        "passthrough", description="What the first triggered ruleset of a stage does.")
    message: str | None = Field(None, description="block/handoff: the refusal text (default: the stage's message).")
    responses: tuple[str, ...] = Field((), description="override: fixed answers, one picked at random.")
    respond_with: Literal["completion", "error"] = Field(
        "completion", description="completion: a normal answer with finish_reason content_filter (on "
                                  "/v1/responses a response with status incomplete, reason content_filter); "
                                  "error: an OpenAI error body with type guardrail_violation (always on "
                                  "/v1/embeddings).")
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
    name: Name = Field(description="Unique within its stage; a metric label.")
    rules: tuple[RuleSpec, ...] = Field(min_length=1, description="All must trigger (AND).")
    action: ActionSpec = Field(ActionSpec(), description="Applied when the ruleset triggers.")
    mode: Mode | None = Field(None, description="Overrides the stage's mode for this ruleset.")


class StreamSpec(_Frozen):
    holdback_chars: int = Field(64, ge=0, le=65536,
                                description="Streamed text held back unreleased (at least the longest span a "
                                            "pattern metric of the stage can match).")


class StageSpec(_Frozen):
    name: Name = Field(description="Unique; applications list their own stages by name.")
    on: Literal["input", "output"] = Field(description="The request (input) or the answer (output).")
    scope: Literal["central", "application"] = Field("application", description="Central stages run for "
                                                     "every application, before its own.")
    on_error: Literal["block", "allow"] = Field("block", description="What a failing or slow metric means: block "
                                                "answers 503 guard_unavailable; allow passes the content, counted "
                                                "as a fail-open.")
    mode: Mode = Field("enforce", description="monitor: evaluate, log and count, never act.")
    timeout_ms: float = Field(250.0, gt=0, description="Per metric; a slower metric counts as an error.")
    roles: tuple[str, ...] | None = Field(None, description=(
        "Message roles scanned (input default: user, tool; output: assistant). Others: system, developer, "
        "assistant (history), tool_definition (tool descriptions, schema texts)."))
    models: tuple[str, ...] | None = Field(None, min_length=1, description="Run only on requests for these models "
                                           "(the request's `model`, before routing). Default: all.")
    message: str = Field(DEFAULT_BLOCK_MESSAGE, description="Refusal used by block actions and fail-closed errors.")
    parallel: bool = Field(False, description="Input stages only: send the request upstream while this stage "
                           "runs, and release the answer only once it passes (a block cancels the upstream call). "
                           "Hides the stage's latency behind the upstream's; the provider sees requests the stage "
                           "then blocks, so it cannot redact.")
    stream: StreamSpec = Field(StreamSpec(), description="How output stages guard streamed answers.")
    rulesets: tuple[RulesetSpec, ...] = Field(min_length=1, description="In priority order (OR).")


class ExampleSpec(_Frozen):
    """Seed 001's labelled example; seed 000's Add Data shape `{example, compliance}` is read as the same."""

    type: Literal["PASS", "FAIL"]
    input_example: str = ""
    output_example: str = ""

    @model_validator(mode="before")
    @classmethod
    def _add_data_shape(cls, data: Any) -> Any:
        if isinstance(data, dict) and ("example" in data or "compliance" in data) and "type" not in data:
            rest = {k: v for k, v in data.items() if k not in ("example", "compliance")}
            label = data.get("compliance")
            return {**rest, "type": label.upper() if isinstance(label, str) else label,
                    "output_example": data.get("example")}
        return data


class PolicySpec(BaseModel):
    """Seed-001 policy. Keys other than these are the type's parameters (patterns, keywords, entities...)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: Name = Field(description="Unique; usable as a metric in rules.")
    type: str = Field(description="regex (patterns), contains (keywords), pii (entities), code (function).")
    rule: str = Field("", description="What the policy forbids, in words (used by `correct`).")
    examples: tuple[ExampleSpec, ...] = Field((), description="Labelled PASS/FAIL examples: {type, output_example, input_example} or {example, compliance}.")
    threshold: float = Field(0.5, ge=0.0, le=1.0, description="Violated when the risk score is above it; "
                                                                 "0 selects the calibrated threshold.")
    allowed_behaviors: tuple[str, ...] = Field((), description="What the policy allows, in words (classifier policies train on them as PASS).")
    disallowed_behaviors: tuple[str, ...] = Field((), description="What the policy forbids, in words (classifier policies train on them as FAIL).")

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
