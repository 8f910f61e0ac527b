"""docs/configuration.md's configuration reference is the one the config models generate."""

from __future__ import annotations

from pathlib import Path

from gateway.config.reference import BEGIN, END, render


def test_docs_reference_matches_the_models() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    start, end = page.index(BEGIN), page.index(END) + len(END)
    assert page[start:end] == render(), "run `.venv/bin/python tools/update_reference.py` (rewrites docs/configuration.md)"


def test_every_top_level_section_is_documented() -> None:
    from pydantic import BaseModel

    from gateway.config.reference import SECTIONS
    from gateway.config.schema import GatewayConfig

    documented = {model for _, model in SECTIONS}
    for name, field in GatewayConfig.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            assert field.annotation in documented, f"`{name}` has no section in the reference"
