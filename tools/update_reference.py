"""Rewrite docs/configuration.md's configuration reference block from the config models (what tests/test_reference.py checks)."""

from pathlib import Path

from gateway.config.reference import BEGIN, END, render

page = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
text = page.read_text()
start, end = text.index(BEGIN), text.index(END) + len(END)
new = text[:start] + render() + text[end:]
if new != text:
    page.write_text(new)
