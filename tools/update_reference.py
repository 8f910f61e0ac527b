"""Rewrite the README's configuration reference block from the config models (what tests/test_reference.py checks)."""

from pathlib import Path

from gateway.config.reference import BEGIN, END, render

readme = Path(__file__).resolve().parent.parent / "README.md"
text = readme.read_text()
start, end = text.index(BEGIN), text.index(END) + len(END)
readme.write_text(text[:start] + render() + text[end:])
