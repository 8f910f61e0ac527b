"""No module of gateway/ holds the scoring runtime or anything like it (issue 26, step 2: the app owns its
models). `create_app` builds the ScoringRuntime and passes it down (plan, registry, training, the evaluate
API); CLI commands and tests build their own. A module-level runtime was hidden state: set as a side effect
of loading a config, shared by every app in the process, replaced when another config said otherwise.

Two checks, over the source (ast), each with an allow-list whose entries say why:
- `global` statements anywhere in gateway/: a module that rebinds its own state at run time;
- module-level instances in gateway/scoring and gateway/metrics (the layers that hold models): a name bound
  to a call of a class (`Name(...)`, `module.Name(...)`) or of a cache decorator, or annotated with a model
  type (`_X: ScoringRuntime | None = None`).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "gateway"

# (module path under gateway/, name): why this process-wide state is not per app.
ALLOWED_GLOBAL_STATEMENTS: dict[tuple[str, str], str] = {
    # The static token table is a file in the model cache, built once per process in a background thread
    # (`serve` and `demo` ask for that before any app exists); the thread attaches it to loaded encoders.
    ("scoring/build.py", "_static_mode"): "how a missing static table is built: now or in the background",
    ("scoring/build.py", "_static_thread"): "the one background build of the static table",
    # Pure lookup tables derived from unicodedata, built lazily once: the same for every app.
    ("text/normalize.py", "_tables_built"): "the normalisation tables, built on first use",
}

# (module path under gateway/, name): why this module-level object is not app state.
ALLOWED_INSTANCES: dict[tuple[str, str], str] = {
    ("metrics/contains.py", "_NOTHING"): "a frozen MetricValue (a constant)",
    ("metrics/pii.py", "_NOTHING"): "a frozen MetricValue (a constant)",
    ("metrics/regex.py", "_NOTHING"): "a frozen MetricValue (a constant)",
    ("scoring/build.py", "_static_stop"): "set at process exit: stops the background static-table build",
    # Encoders register here so that a static table built later (in the background) reaches every loaded
    # one, whichever app loaded it; weak references, so it keeps no encoder alive.
    ("scoring/encoder.py", "_LOADED"): "weak set of loaded encoders, for the background static table",
}

MODEL_TYPES = ("ScoringRuntime", "EmbeddingService", "Encoder", "Head", "SupportHead", "InferenceSession")
CACHES = ("lru_cache", "cache", "WeakSet", "WeakValueDictionary")


def _sources(*dirs: str) -> list[tuple[str, ast.Module]]:
    roots = [PACKAGE / d for d in dirs] if dirs else [PACKAGE]
    return [(str(p.relative_to(PACKAGE)), ast.parse(p.read_text(), str(p)))
            for root in roots for p in sorted(root.rglob("*.py"))]


def _callee(node: ast.expr) -> str:
    while isinstance(node, ast.Call):  # lru_cache(maxsize=4)(fn): the outer call's callee is a call
        node = node.func
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


def _instances(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, name) for module-level names bound to an instance or annotated with a model type."""
    found = []
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value, annotation = node.targets, node.value, None
        elif isinstance(node, ast.AnnAssign):
            targets, value, annotation = [node.target], node.value, node.annotation
        else:
            continue
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        callee = _callee(value) if isinstance(value, ast.Call) else ""
        is_instance = callee[:1].isupper() or callee in CACHES
        typed = annotation is not None and any(t in ast.unparse(annotation) for t in MODEL_TYPES)
        if is_instance or typed:
            found += [(node.lineno, name) for name in names]
    return found


def test_no_global_statements_outside_the_allow_list() -> None:
    found = [(path, node.lineno, name) for path, tree in _sources() for node in ast.walk(tree)
             if isinstance(node, ast.Global) for name in node.names]
    unexpected = [f"gateway/{path}:{line} global {name}" for path, line, name in found
                  if (path, name) not in ALLOWED_GLOBAL_STATEMENTS]
    assert not unexpected, "module state rebound at run time (pass it as an argument instead):\n" + "\n".join(unexpected)
    stale = set(ALLOWED_GLOBAL_STATEMENTS) - {(path, name) for path, _, name in found}
    assert not stale, f"allow-list entries that no longer exist: {sorted(stale)}"


def test_no_module_level_instances_in_scoring_and_metrics() -> None:
    found = [(path, line, name) for path, tree in _sources("scoring", "metrics") for line, name in _instances(tree)]
    unexpected = [f"gateway/{path}:{line} {name}" for path, line, name in found if (path, name) not in ALLOWED_INSTANCES]
    assert not unexpected, ("module-level objects in the model layers (the app owns its models: build them in "
                            "create_app or a CLI command and pass them down):\n" + "\n".join(unexpected))
    stale = set(ALLOWED_INSTANCES) - {(path, name) for path, _, name in found}
    assert not stale, f"allow-list entries that no longer exist: {sorted(stale)}"


def test_the_check_sees_a_runtime_global() -> None:
    """The shape removed in step 2 (`_RUNTIME: ScoringRuntime | None = None` + `global _RUNTIME`) is caught."""
    tree = ast.parse("_RUNTIME: ScoringRuntime | None = None\n_LOCK = threading.Lock()\n"
                     "_heads = functools.lru_cache(maxsize=4)(load)\nLIMIT = 3\nNAMES = frozenset({'a'})\n"
                     "def configure():\n    global _RUNTIME\n")
    assert [name for _, name in _instances(tree)] == ["_RUNTIME", "_LOCK", "_heads"]
    assert [n.names for n in ast.walk(tree) if isinstance(n, ast.Global)] == [["_RUNTIME"]]
