"""The README's configuration reference is the one the config models generate."""

from __future__ import annotations

from pathlib import Path

from gateway.config.reference import BEGIN, END, render


def test_readme_reference_matches_the_models() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    start, end = readme.index(BEGIN), readme.index(END) + len(END)
    assert readme[start:end] == render(), "run `python -m gateway.config.reference` and paste it into README.md"


def test_every_top_level_section_is_documented() -> None:
    from pydantic import BaseModel

    from gateway.config.reference import SECTIONS
    from gateway.config.schema import GatewayConfig

    documented = {model for _, model in SECTIONS}
    for name, field in GatewayConfig.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            assert field.annotation in documented, f"`{name}` has no section in the reference"
