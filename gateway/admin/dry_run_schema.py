"""The bodies of `POST /v1/admin/dry-run` (admin/dry_run.py): the request and the answer, as the
OpenAPI document (admin/openapi.py) shows them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class DryRunMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str = Field(max_length=200_000)


class DryRunRequest(BaseModel):
    """The body of POST /v1/admin/dry-run."""

    model_config = ConfigDict(extra="forbid")
    application: str = Field(description="The application whose stages run (an app token: its own).")
    model: str | None = Field(None, description="The request's model: stages naming `models` run for those only.")
    messages: list[DryRunMessage] = Field(min_length=1, max_length=200, description=(
        "The conversation. With on=output or both, the last assistant message is the answer checked by the "
        "output stages; the messages before it are the request."))
    on: Literal["input", "output", "both"] = Field("both", description="Which side's stages run.")
    stages: list[str] | None = Field(None, max_length=100, description=(
        "Only these stages (by name, or name@version for a stored version), in plan order. Default: all that "
        "apply."))
    draft_stages: list[dict[str, Any]] = Field([], max_length=20, description=(
        "Unsaved stage specs: one named like an applied stage replaces it, others are added (central after the "
        "central stages, application ones after the application's)."))
    include_paused: bool = Field(False, description="Also run paused stored stages that would apply.")


class DryRunRule(BaseModel):
    metric: str
    op: str
    target: Any
    value: Any = Field(description="What the metric measured (null: not measured or failed).")
    triggers: bool | None


class DryRunRuleset(BaseModel):
    name: str
    mode: str
    triggered: bool
    action: dict[str, Any]
    rules: list[DryRunRule]


class DryRunStage(BaseModel):
    stage: str
    on: str
    scope: str
    source: str = Field(description="plan, draft, paused or version")
    version: int | None
    scanned: bool
    mode: str
    ruleset: str | None
    action: str | None
    triggered: list[str]
    errors: list[str]
    fail_open: bool
    values: dict[str, Any]
    seconds: dict[str, float]
    rulesets: list[DryRunRuleset]


class DryRunSide(BaseModel):
    stages: list[DryRunStage]
    action: str | None
    stage: str | None
    ruleset: str | None
    texts: list[str] = Field(description="The checked texts after any redaction, in order.")
    original: list[str]
    skipped: str | None = Field(None, description="Why this side did not run (e.g. the input was stopped).")


class DryRunResponse(BaseModel):
    object: Literal["dry_run"]
    application: str
    model: str | None
    input: DryRunSide | None
    output: DryRunSide | None
    action: str | None = Field(description="The action the client would meet (the last that acted).")
    stage: str | None
    ruleset: str | None
    response: dict[str, Any] = Field(description=(
        "What the client would receive: {status, kind: forwarded|completion|error|unavailable|corrector, "
        "text, finish_reason}."))
    seconds: float
