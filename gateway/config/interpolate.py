"""`${VAR}` and `${VAR:-default}` substitution from the environment, with `$$` as a literal `$`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gateway.config.errors import ConfigIssue, format_path

_PATTERN = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{([^}]*)\}?")


def interpolate(tree: Any, env: Mapping[str, str], issues: list[ConfigIssue]) -> Any:
    """Return `tree` with every string interpolated; problems are appended to `issues`."""
    return _walk(tree, (), env, issues)


def _walk(node: Any, path: tuple[str | int, ...], env: Mapping[str, str], issues: list[ConfigIssue]) -> Any:
    if isinstance(node, str):
        return _substitute(node, path, env, issues) if "$" in node else node
    if isinstance(node, dict):
        return {k: _walk(v, (*path, str(k)), env, issues) for k, v in node.items()}
    if isinstance(node, list):
        return [_walk(v, (*path, i), env, issues) for i, v in enumerate(node)]
    return node


def _substitute(text: str, path: tuple[str | int, ...], env: Mapping[str, str], issues: list[ConfigIssue]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default, bad = match.group(1), match.group(2), match.group(3)
        if name is None:
            issues.append(ConfigIssue(format_path(path), f"malformed variable reference '${{{bad}}}'"
                                      " (expected ${NAME} or ${NAME:-default})"))
            return ""
        value = env.get(name)
        if value is not None and (value != "" or default is None):
            return value
        if default is not None:
            return default
        issues.append(ConfigIssue(format_path(path), f"environment variable {name} is not set"
                                  f" (set it, or write ${{{name}:-default}})"))
        return ""

    return _PATTERN.sub(replace, text)
