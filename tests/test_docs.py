"""The docs stay usable: every whole-config YAML example in README.md and docs/ passes the config loader,
and every relative link in them points at a file (and heading) that exists.

A YAML block that is only part of a config starts with a `# fragment` line and is skipped.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config.loader import parse_config
from gateway.guard.plan import plan_issues

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_FENCE = re.compile(r"^```yaml\n(.*?)^```", re.M | re.S)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")  # without a `:-default`
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _yaml_blocks() -> list[tuple[str, str]]:
    blocks = []
    for page in PAGES:
        text = page.read_text()
        for m in _FENCE.finditer(text):
            line = text.count("\n", 0, m.start()) + 1
            blocks.append((f"{page.relative_to(ROOT)}:{line}", m.group(1)))
    return blocks


BLOCKS = _yaml_blocks()


def _placeholder(name: str) -> str:
    return "http://placeholder.invalid/v1" if name.endswith("URL") else f"placeholder-{name.lower()}-0123456789"


def test_the_docs_have_config_examples() -> None:
    whole = [b for b in BLOCKS if not b[1].lstrip().startswith("# fragment")]
    assert any(where.startswith("README.md") for where, _ in whole), "the README's first policy is a whole config"
    assert len(whole) >= 2


@pytest.mark.parametrize(("where", "text"), BLOCKS, ids=[w for w, _ in BLOCKS])
def test_yaml_example_is_a_valid_config(where: str, text: str) -> None:
    if text.lstrip().startswith("# fragment"):
        pytest.skip("marked as a fragment of a config")
    env = {name: _placeholder(name) for name in _VAR.findall(text)}
    parse_config(text, where, env, check=plan_issues)  # raises ConfigError naming every problem


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.M)}


def test_relative_links_point_at_existing_files() -> None:
    broken = []
    for page in PAGES:
        text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.M | re.S)
        for target in _LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


_SOURCE = re.compile(r"`((?:gateway|tools|tests|config|deploy)/[\w./-]+\.(?:py|yaml|yml|json|jsonl|md))`")


def test_source_paths_named_in_the_docs_exist() -> None:
    """A module the docs name in backticks (`gateway/text/views.py`) still exists: modules move in
    refactors, and a page that sends a reader to a missing file is a broken link too."""
    missing = [f"{page.relative_to(ROOT)}: {path}" for page in PAGES
               for path in _SOURCE.findall(page.read_text()) if not (ROOT / path).exists()]
    assert not missing, "paths that do not exist:\n" + "\n".join(missing)
