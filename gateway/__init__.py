"""guardrail-gateway: an OpenAI-compatible gateway that guards LLM traffic."""

__version__ = "0.1.0"
