"""The README's configuration reference is the one the config models generate."""

from __future__ import annotations

from pathlib import Path

from gateway.config.reference import BEGIN, END, render


def test_readme_reference_matches_the_models() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    assert readme[start:end] == render(), "run `python -m gateway.config.reference` and paste it into README.md"
