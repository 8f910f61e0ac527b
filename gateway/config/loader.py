"""Read a YAML config file into a validated, immutable `GatewayConfig`, reporting every error."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from gateway.config.errors import ConfigError, ConfigIssue, format_path, show_value
from gateway.config.interpolate import interpolate
from gateway.config.schema import GatewayConfig

# What a config's policies and stages fail to compile into a plan: gateway.guard.plan.plan_issues. The
# layers above pass it (config sits below the engine and does not import it); without it, only the
# schema and the cross-checks run.
PlanCheck = Callable[[GatewayConfig], list[ConfigIssue]]


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false, so `on: input` keeps the key "on"."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None,
                check: PlanCheck | None = None) -> GatewayConfig:
    """Load and validate `path` (and compile its plan with `check`); raise `ConfigError` listing every
    problem found."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        where = "" if Path(path).is_absolute() else f" (looked in {Path.cwd()})"
        raise ConfigError(source, [ConfigIssue("", f"file not found{where}; name the config file with --config PATH "
                                                   "or the GATEWAY_CONFIG variable")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [ConfigIssue("", f"cannot read file: {exc}")]) from None
    return parse_config(text, source, os.environ if env is None else env, check)


def parse_config(text: str, source: str, env: Mapping[str, str], check: PlanCheck | None = None) -> GatewayConfig:
    """Validate YAML `text` (and compile its plan with `check`); `source` names it in errors."""
    try:
        tree = yaml.load(text, Loader=_Yaml12Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(source, [ConfigIssue("", _yaml_message(exc))]) from None
    if tree is None:
        tree = {}
    if not isinstance(tree, dict):
        raise ConfigError(source, [ConfigIssue("", f"top level must be a mapping, got {type(tree).__name__}")])
    issues: list[ConfigIssue] = []
    tree = interpolate(tree, env, issues)
    # Every error in one run: the items and sections the schema refuses are left out, and the rest is
    # still cross-checked and compiled; what would only follow from a left-out item is not reported.
    schema_issues: list[ConfigIssue] = []
    pruning = _Pruning()
    while True:
        try:
            config = GatewayConfig.model_validate(tree, context={"deployed": _deployed(tree)})
            break
        except ValidationError as exc:
            schema_issues = schema_issues or [_pydantic_issue(err) for err in exc.errors()]
            pruned = pruning.drop(tree, exc.errors())
            if pruned is None:
                raise ConfigError(source, issues + schema_issues) from None
            tree = pruned
    issues += schema_issues
    later = cross_check(config)
    plan_issues = check(config) if check is not None else []
    said = [i.path for i in later]
    # a policy that does not compile is reported once, not again by every rule that names it
    failed = {repr(config.policies[int(m.group(1))].id) for i in plan_issues
              if (m := re.match(r"policies\[(\d+)\]", i.path))}
    later += [i for i in plan_issues if not any(_under(i.path, p) for p in said)
              and (i.path.startswith("policies") or not any(f in i.message for f in failed))]
    issues += pruning.restore(later)
    if issues:
        raise ConfigError(source, issues)
    return config


_LISTS = ("upstreams", "applications", "policies", "stages")


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".") or path.startswith(prefix + "[")


class _Pruning:
    """The config minus what the schema refused: whole items of the top-level lists, else whole sections
    (their defaults apply). Remembers where the kept items were, to report later errors at their own paths."""

    def __init__(self) -> None:
        self.kept: dict[str, list[int]] = {}   # section -> original index of each kept item
        self.dropped_names: set[str] = set()
        self.gone: set[str] = set()            # sections left out whole
        self.thinned: set[str] = set()         # lists that lost items

    def drop(self, tree: dict[str, Any], errors: list[Any]) -> dict[str, Any] | None:
        items: dict[str, set[int]] = {}
        sections: set[str] = set()
        for err in errors:
            loc = tuple(err["loc"])
            if not loc or not isinstance(loc[0], str) or loc[0] not in tree:
                return None
            if loc[0] in _LISTS and len(loc) > 1 and isinstance(loc[1], int) and isinstance(tree[loc[0]], list):
                items.setdefault(loc[0], set()).add(loc[1])
            else:
                sections.add(loc[0])
        out = {k: v for k, v in tree.items() if k not in sections}
        self.gone |= sections
        for section, bad in items.items():
            if section in sections:
                continue
            old = tree[section]
            where = self.kept.get(section, list(range(len(old))))
            for i in bad:
                name = old[i].get("id", old[i].get("name")) if isinstance(old[i], dict) else None
                if isinstance(name, str):
                    self.dropped_names.add(name)
            out[section] = [item for i, item in enumerate(old) if i not in bad]
            self.kept[section] = [where[i] for i in range(len(old)) if i not in bad]
            self.thinned.add(section)
        return out if (sections or items) else None

    def restore(self, issues: list[ConfigIssue]) -> list[ConfigIssue]:
        out = []
        for issue in issues:
            section = re.match(r"[A-Za-z_]+", issue.path)
            top = section.group(0) if section else ""
            if top in self.gone or (issue.path == top and top in self.thinned):
                continue
            if any(repr(name) in issue.message for name in self.dropped_names):
                continue  # a reference to an item already reported as invalid
            path = issue.path
            if top in self.kept:
                path = re.sub(r"^(\w+)\[(\d+)\]", lambda m: f"{m.group(1)}[{self.kept[top][int(m.group(2))]}]", path)
            out.append(ConfigIssue(path, issue.message))
        return out


def cross_check(config: GatewayConfig) -> list[ConfigIssue]:
    """Rules that span sections: unique names, references that must resolve."""
    issues: list[ConfigIssue] = []
    if not config.upstreams:
        issues.append(ConfigIssue("upstreams", "at least one upstream is required"))
    issues += _duplicates("upstreams", [u.name for u in config.upstreams], "name")
    issues += _routing_issues(config)
    issues += _duplicates("applications", [a.id for a in config.applications], "id")
    seen_keys: dict[str, str] = {}
    for i, app in enumerate(config.applications):
        for j, key in enumerate(app.keys):
            where = f"applications[{i}].keys[{j}]"
            if key in seen_keys:
                issues.append(ConfigIssue(where, f"the same key is already used at {seen_keys[key]}"))
            seen_keys.setdefault(key, where)
    app_ids = {a.id for a in config.applications}
    for i, token in enumerate(config.admin.tokens):
        if token.role.startswith("app:") and token.role[4:] not in app_ids:
            issues.append(ConfigIssue(f"admin.tokens[{i}].role", f"no application with id {token.role[4:]!r}"))
        if token.token in seen_keys:
            issues.append(ConfigIssue(f"admin.tokens[{i}].token", f"equals the client key at {seen_keys[token.token]}"))
    issues += _duplicates("policies", [p.id for p in config.policies], "id")
    issues += _duplicates("stages", [s.name for s in config.stages], "name")
    stage_names = {s.name for s in config.stages}
    central = {s.name for s in config.stages if s.scope == "central"}
    for i, app in enumerate(config.applications):
        for j, stage in enumerate(app.stages):
            if stage not in stage_names:
                issues.append(ConfigIssue(f"applications[{i}].stages[{j}]", f"no stage named {stage!r} under `stages`"))
            elif stage in central:
                issues.append(ConfigIssue(f"applications[{i}].stages[{j}]",
                                          f"{stage!r} is a central stage: it applies to every application already"))
    return issues


def _deployed(tree: dict[str, Any]) -> frozenset[str]:
    """Upstream names that routing.groups[].deployments name (such an upstream needs no models of its own)."""
    routing = tree.get("routing")
    groups = routing.get("groups") if isinstance(routing, dict) else None
    return frozenset(d["upstream"] for g in groups or () if isinstance(g, dict)
                     for d in g.get("deployments") or () if isinstance(d, dict) and isinstance(d.get("upstream"), str))


def _routing_issues(config: GatewayConfig) -> list[ConfigIssue]:
    """Model groups name known upstreams; fallbacks and aliases name models something serves."""
    import fnmatch

    routing = config.routing
    issues = _duplicates("routing.groups", [g.name for g in routing.groups], "name")
    names = {u.name for u in config.upstreams}
    globs = [m for g in routing.groups for m in g.models] + [m for u in config.upstreams for m in u.models]

    def served(model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, glob) for glob in globs)

    for i, group in enumerate(routing.groups):
        for j, dep in enumerate(group.deployments):
            if dep.upstream not in names:
                issues.append(ConfigIssue(f"routing.groups[{i}].deployments[{j}].upstream",
                                          f"no upstream named {dep.upstream!r}"))
        for j, model in enumerate(group.fallbacks):
            if not served(routing.aliases.get(model, model)):
                issues.append(ConfigIssue(f"routing.groups[{i}].fallbacks[{j}]", f"no group or upstream serves {model!r}"))
    for alias, target in routing.aliases.items():
        if target in routing.aliases:
            issues.append(ConfigIssue(f"routing.aliases.{alias}", "an alias must name a model, not another alias"))
        elif not served(target):
            issues.append(ConfigIssue(f"routing.aliases.{alias}", f"no group or upstream serves {target!r}"))
    return issues


def _duplicates(section: str, names: list[str], key: str) -> list[ConfigIssue]:
    first: dict[str, int] = {}
    issues = []
    for i, name in enumerate(names):
        if name in first:
            issues.append(ConfigIssue(f"{section}[{i}].{key}", f"duplicate {key} {name!r} (also {section}[{first[name]}])"))
        first.setdefault(name, i)
    return issues


def _pydantic_issue(err: Any) -> ConfigIssue:
    loc = tuple(err["loc"])
    path = format_path(loc)
    kind = err["type"]
    if kind == "extra_forbidden":
        return ConfigIssue(path, "unknown key" + _suggest(loc))
    if kind == "missing":
        return ConfigIssue(path, "required key is missing")
    if kind == "too_short":
        return ConfigIssue(path, f"must list at least {err['ctx']['min_length']} item(s)")
    message = err["msg"].removeprefix("Value error, ")
    return ConfigIssue(path, f"{message} (got {show_value(loc, err.get('input'))})")


def _suggest(loc: tuple[str | int, ...]) -> str:
    model = _model_at(loc[:-1])
    if model is None or not isinstance(loc[-1], str):
        return ""
    fields = list(model.model_fields)
    close = difflib.get_close_matches(loc[-1], fields, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f" (allowed: {', '.join(fields)}){hint}"


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc`, for listing its keys."""
    model: Any = GatewayConfig
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _inner_model(field.annotation)
        if model is None:
            return None
    return model


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def _yaml_message(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"invalid YAML: {problem}"
