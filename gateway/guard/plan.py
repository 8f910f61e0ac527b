"""Compile the config's policies and stages into an immutable plan; every problem names its key path."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.config.errors import ConfigError, ConfigIssue, format_path
from gateway.config.guard_schema import ActionSpec, PolicySpec, RuleSpec, StageSpec
from gateway.config.schema import GatewayConfig
from gateway.guard.operators import OPERATORS, check_target
from gateway.guard.policy import Policy, compile_policy
from gateway.metrics.types import Metric, MetricValue, ParamError
from gateway.metrics import BUILTINS, KINDS, make_metric
from gateway.scoring.runtime import ScoringRuntime  # loads no model: the runtime loads them on first use

log = logging.getLogger("gateway.guard")

DEFAULT_ROLES = {"input": ("user", "tool"), "output": ("assistant",)}
CONTEXT_ROLES = ("system", "developer")  # what output-side metrics compare an answer with, with the prompt
AUTO_HOLDBACK_CAP = 128
LOOKBACK_CAP = 1024


@dataclass(frozen=True, slots=True)
class Rule:
    metric: str
    op: str
    target: Any
    # For label targets (`pii contains_any [EMAIL_ADDRESS]`), redaction touches only those labels.
    redact_labels: frozenset[str] | None

    def triggers(self, value: MetricValue) -> bool:
        return OPERATORS[self.op](value.value, self.target)


@dataclass(frozen=True, slots=True)
class Ruleset:
    name: str
    rules: tuple[Rule, ...]
    action: ActionSpec
    mode: str


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    on: str
    scope: str
    on_error: str
    timeout_s: float
    roles: frozenset[str]
    message: str
    holdback_chars: int
    lookback_chars: int
    rulesets: tuple[Ruleset, ...]
    metrics: Mapping[str, Metric]  # every metric the rulesets name, measured once per evaluation
    models: frozenset[str] | None = None  # run only on requests for these models (None: every model)
    parallel: bool = False  # input: runs beside the upstream call (see StageSpec.parallel)
    # A stream guard releases text up to where a match could still start (`pending_from`), not a fixed
    # hold-back: every metric of the stage says where that is, and `stream.holdback_chars` is not set.
    eager: bool = False
    # whether any of its rulesets may act (`mode: monitor` ones never do); set from them, once
    enforcing: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "enforcing", any(rs.mode != "monitor" for rs in self.rulesets))

    def pending_from(self, text: str) -> int:
        """The earliest index of `text` where a span of one of the stage's metrics could still start
        (gateway.metrics.pending); a metric that cannot say holds back the stage's whole hold-back."""
        at = len(text)
        for metric in self.metrics.values():
            pending = getattr(metric, "pending_from", None)
            at = min(at, pending(text) if pending is not None else len(text) - self.holdback_chars)
            if at <= 0:
                return 0
        return at


@dataclass(frozen=True)
class GuardPlan:
    policies: Mapping[str, Policy]
    stages: Mapping[str, Stage]
    central: Mapping[str, tuple[Stage, ...]]                 # on -> central stages, in config order
    # what its model-based metrics score with; stages compiled later against this plan (a request's,
    # a dry run's, a pinned version) use it too
    runtime: ScoringRuntime
    by_app: Mapping[str, Mapping[str, tuple[Stage, ...]]] = field(default_factory=dict)
    # Applications that pinned a central stage to an older version see their own central list.
    central_by_app: Mapping[str, Mapping[str, tuple[Stage, ...]]] = field(default_factory=dict)

    def stages_for(self, app_id: str, on: str, extra: Sequence[Stage] = (),
                   model: str | None = None) -> tuple[Stage, ...]:
        """Central stages, then the application's, then stages the request added; with `model`, only
        the stages that run for that model (a stage naming `models` runs for those alone)."""
        own = self.by_app.get(app_id, {}).get(on, ())
        central = self.central_by_app[app_id] if app_id in self.central_by_app else self.central
        stages = (*central.get(on, ()), *own, *(s for s in extra if s.on == on))
        if model is None:
            return stages
        return tuple(s for s in stages if s.models is None or model in s.models)

    @property
    def empty(self) -> bool:
        return not self.stages


def build_plan(config: GatewayConfig, source: str = "config", runtime: ScoringRuntime | None = None) -> GuardPlan:
    """The plan for a validated config, scoring with `runtime` (default: a new one with the config's
    `scoring` settings); raises ConfigError if a policy or stage does not compile."""
    plan, issues = compile_plan(config.policies, config.stages, {a.id: a.stages for a in config.applications},
                                runtime if runtime is not None else ScoringRuntime(config.scoring))
    if issues:
        raise ConfigError(source, issues)
    return plan


def plan_issues(config: GatewayConfig, runtime: ScoringRuntime | None = None) -> list[ConfigIssue]:
    """What the config's policies and stages fail to compile into a plan: `load_config`'s `check`, so
    that one run reports the schema's, the cross-checks' and the plan's errors together. Model-based
    policies compile with `runtime` (default: a new one with the config's `scoring` settings)."""
    _, issues = compile_plan(config.policies, config.stages, {a.id: a.stages for a in config.applications},
                             runtime if runtime is not None else ScoringRuntime(config.scoring))
    return issues


class PlanCheck:
    """`load_config`'s `check` (plan_issues) that keeps the scoring runtime it compiled the plan with, so
    that the app serving the config reuses it (`create_app(..., scoring=check.runtime)`) and the models
    the check loaded do not load twice."""

    def __init__(self) -> None:
        self.runtime: ScoringRuntime | None = None

    def __call__(self, config: GatewayConfig) -> list[ConfigIssue]:
        self.runtime = ScoringRuntime(config.scoring)
        return plan_issues(config, self.runtime)


def compile_plan(policies: Sequence[PolicySpec], stages: Sequence[StageSpec],
                 app_stages: Mapping[str, Sequence[str]], runtime: ScoringRuntime,
                 compile_one: Callable[[PolicySpec], Policy] | None = None) -> tuple[GuardPlan, list[ConfigIssue]]:
    """Model-based metrics score with `runtime`. `compile_one` compiles one policy spec (default:
    compile_policy; the registry passes a cached one: a policy whose content did not change is not
    compiled again)."""
    if compile_one is None:
        def compile_one(spec: PolicySpec) -> Policy:
            return compile_policy(spec, runtime)
    issues: list[ConfigIssue] = []
    compiled_policies: dict[str, Policy] = {}
    for i, spec in enumerate(policies):
        try:
            compiled_policies[spec.id] = compile_one(spec)
        except ParamError as err:
            issues.append(ConfigIssue(format_path(("policies", i, *err.path)), err.message))
        except Exception as exc:  # a parameter shape no check foresaw: a config error, never a crash
            log.exception("policy %r failed to compile", spec.id)
            issues.append(ConfigIssue(format_path(("policies", i)),
                                      f"could not be compiled ({type(exc).__name__}: {str(exc)[:200]}); "
                                      "check its parameters"))
    compiled = compile_stages(stages, compiled_policies, ("stages",), issues, runtime)
    central: dict[str, tuple[Stage, ...]] = {
        on: tuple(s for s in compiled if s.scope == "central" and s.on == on) for on in ("input", "output")}
    by_name = {s.name: s for s in compiled}
    by_app = {app: {on: tuple(by_name[n] for n in names if n in by_name and by_name[n].on == on)
                    for on in ("input", "output")} for app, names in app_stages.items()}
    return GuardPlan(compiled_policies, by_name, central, runtime, by_app), issues


def compile_stages(specs: Sequence[StageSpec], policies: Mapping[str, Policy], prefix: tuple[str | int, ...],
                   issues: list[ConfigIssue], runtime: ScoringRuntime | None = None) -> list[Stage]:
    """Compile stage specs; problems are appended to `issues` with paths under `prefix`. Built-in
    detectors a rule names score with `runtime` (stages compiled against a plan pass `plan.runtime`)."""
    out = []
    for i, spec in enumerate(specs):
        stage = _compile_stage(spec, policies, (*prefix, i), issues, runtime)
        if stage is not None:
            out.append(stage)
    return out


def _compile_stage(spec: StageSpec, policies: Mapping[str, Policy], path: tuple[str | int, ...],
                   issues: list[ConfigIssue], runtime: ScoringRuntime | None) -> Stage | None:
    before = len(issues)
    metrics: dict[str, Metric] = {}
    rulesets = []
    for j, rs in enumerate(spec.rulesets):
        rs_path = (*path, "rulesets", j)
        if rs.action.type == "correct" and spec.on == "input":
            issues.append(ConfigIssue(format_path((*rs_path, "action", "type")),
                                      "`correct` rewrites an answer: it is only valid in an output stage"))
        if rs.action.type == "redact" and spec.parallel:
            issues.append(ConfigIssue(format_path((*rs_path, "action", "type")),
                                      "`redact` changes the request, but a parallel stage runs after the request "
                                      "was sent upstream: use a stage without `parallel`"))
        rules = [_compile_rule(rule, policies, metrics, (*rs_path, "rules", k), issues, runtime)
                 for k, rule in enumerate(rs.rules)]
        rulesets.append(Ruleset(rs.name, tuple(r for r in rules if r is not None), rs.action, rs.mode or spec.mode))
    if spec.parallel and spec.on != "input":
        issues.append(ConfigIssue(format_path((*path, "parallel")),
                                  "only input stages can run beside the upstream call"))
    if len(issues) > before:
        return None
    roles = frozenset(spec.roles) if spec.roles is not None else frozenset(DEFAULT_ROLES[spec.on])
    longest = max((m.max_span_chars for m in metrics.values()), default=0)
    holdback = spec.stream.holdback_chars
    if "holdback_chars" not in spec.stream.model_fields_set:
        # Cover every span the stage's pattern metrics can match, up to a cap: e-mail addresses may be
        # 254 characters and URLs kilobytes, and holding that much back delays every stream's first token.
        holdback = max(holdback, min(longest, AUTO_HOLDBACK_CAP))
    # Rescanning reaches further back than the hold-back, so a longer span is still caught (and the
    # stream stopped before the rest of it leaves) even though its start was already released.
    lookback = max(holdback, min(longest, LOOKBACK_CAP))
    # An explicit hold-back is kept as it is; otherwise a stream releases text as soon as no match can
    # start in it, when every metric can say where that is (model-based detectors cannot: they keep it).
    eager = ("holdback_chars" not in spec.stream.model_fields_set
             and all(callable(getattr(m, "pending_from", None)) for m in metrics.values()))
    return Stage(spec.name, spec.on, spec.scope, spec.on_error, spec.timeout_ms / 1000.0, roles, spec.message,
                 holdback, lookback, tuple(rulesets), metrics,
                 frozenset(spec.models) if spec.models is not None else None, spec.parallel, eager)


def _compile_rule(rule: RuleSpec, policies: Mapping[str, Policy], metrics: dict[str, Metric],
                  path: tuple[str | int, ...], issues: list[ConfigIssue], runtime: ScoringRuntime | None) -> Rule | None:
    policy = policies.get(rule.metric)
    if policy is not None:
        metric, kind = policy.as_metric(), "score"
    elif rule.metric in BUILTINS:
        name, params = BUILTINS[rule.metric]
        kind = KINDS[name][1]
        metric = make_metric(name, params, runtime)
    else:
        known = sorted({*policies, *BUILTINS})
        issues.append(ConfigIssue(format_path((*path, "metric")),
                                  f"unknown metric {rule.metric!r}: not a policy id nor a built-in ({', '.join(known)})"))
        return None
    metrics.setdefault(rule.metric, metric)
    op, value = rule.op, rule.value
    if op is None:
        if policy is None:
            issues.append(ConfigIssue(format_path((*path, "op")), "required unless `metric` names a policy"))
            return None
        return Rule(rule.metric, "lt" if policy.higher_is_compliant else "gt", policy.effective_threshold(), None)
    target, error = check_target(op, value, kind)
    if error is not None:
        issues.append(ConfigIssue(format_path((*path, "value")), error))
        return None
    labels = target if isinstance(target, frozenset) else frozenset({target}) if op == "contains" else None
    return Rule(rule.metric, op, target, labels)
