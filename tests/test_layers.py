"""Imports in gateway/ run one way, from a higher layer to a lower one (DESIGN §4: handler -> engine ->
metrics -> scoring). Every import counts, including the ones inside functions: a deferred import that
only hides a cycle is still an edge. A module may import its own layer or any layer below it.

    cli, app                                  (composition roots, the process)
    admin, bench                              (the admin API, the benchmark harness)
    policies                                  (the policy lifecycle: registry, versions, training, data)
    proxy                                     (the OpenAI surface: the request flow)
    guard                                     (the engine: plans, stages, rules, actions)
    metrics                                   (every metric and the metric vocabulary)
    scoring                                   (the model runtime: ONNX sessions, encoder, heads)
    config, errors, store, telemetry, wire, settings, scrub, tasks, text   (the bottom)
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gateway"

# First dotted part under gateway/ -> layer (higher imports lower).
LAYERS: dict[str, int] = {
    "cli": 7, "__main__": 7, "app": 7, "serving": 7,
    "admin": 6, "console": 6, "bench": 6, "echo": 6,   # echo: the bench's mock upstream
    "policies": 5,
    "proxy": 4,
    "guard": 3,
    "metrics": 2,
    "scoring": 1,
    "config": 0, "errors": 0, "store": 0, "telemetry": 0, "wire": 0, "settings": 0, "scrub": 0, "tasks": 0, "text": 0,
}

# Upward imports that cannot be removed, each with its reason: (importing module, imported module).
ALLOWED: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) for every import of a gateway module in the file, at any depth."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "gateway" or (node.module is None and node.level):
                found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, target))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("gateway."):
            # a module named in a string (sys.modules, importlib) is an edge too
            if (PACKAGE / node.value.split(".")[1]).exists() or (PACKAGE / f"{node.value.split('.')[1]}.py").exists():
                found.append((node.lineno, node.value))
    return [(line, name) for line, name in found if name.startswith("gateway.")]


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def upward_imports() -> list[str]:
    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _module_name(path)
        for line, target in _imports(path):
            low, high = _layer(source), _layer(target)
            if low is None or high is None or high <= low or (source, target) in ALLOWED:
                continue
            bad.append(f"{path.relative_to(ROOT)}:{line} {source} -> {target}")
    return bad


def test_every_gateway_package_has_a_layer() -> None:
    names = {p.stem if p.suffix == ".py" else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").exists()}
    assert names <= set(LAYERS), f"give these a layer in tests/test_layers.py: {sorted(names - set(LAYERS))}"


def test_no_import_runs_from_a_lower_layer_to_a_higher_one() -> None:
    bad = upward_imports()
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_allow_list_holds_only_live_edges() -> None:
    live = {(_module_name(p), t) for p in PACKAGE.rglob("*.py") for _, t in _imports(p)}
    assert ALLOWED <= live, f"stale allow-list entries: {sorted(ALLOWED - live)}"


if __name__ == "__main__":
    for edge in upward_imports():
        print(edge)
