"""What the benchmark sends: a realistic English prompt of a chosen size, and the guarded target's rules.

The prompt matches none of the guard's rules (no codes, names, digits or addresses), so every request
passes both stages and reaches the mock: the measured overhead is the full input + output check.
"""

from __future__ import annotations

import json
from typing import Any

MODEL = "gpt-bench"
DEFAULT_PROMPT_BYTES = 2048

_PARAGRAPHS = (
    "You are a helpful assistant for a team that maintains a large web application. Please read the "
    "notes below from our weekly planning meeting and write a short summary for colleagues who could "
    "not attend. Keep the tone friendly and plain, avoid jargon where a simpler word will do, and end "
    "with a list of the open questions that still need an owner.",
    "The first topic was the checkout page. Several customers told the support team that the page feels "
    "slow on older phones, especially when the basket holds many items. The front end group believes the "
    "main cause is a large script that renders every product image at once. They suggested loading the "
    "images lazily and splitting the script so the payment form appears before the rest of the page.",
    "The second topic was the search feature. People like the new filters, but the results are sometimes "
    "sorted in a surprising order, and a few shoppers gave up after the first page. The data group will "
    "review how relevance is computed and will run a small experiment comparing the current ranking with "
    "a simpler one that favours recent and popular products. Nobody has agreed yet on how long it should run.",
    "The third topic was the mobile app. The release planned for the end of the month may slip because "
    "the login screen still has an accessibility problem: screen readers announce the buttons in the wrong "
    "order. The designers will propose a new layout, and the developers asked for clear acceptance rules "
    "before they start, so that the fix is not reworked twice.",
    "Finally, the team discussed on-call duty. The rotation is uneven and a few engineers were paged far "
    "more often than others during the last quarter. Everyone agreed that alerts should be reviewed, that "
    "noisy alerts should be removed or tuned, and that the handbook for night shifts needs a refresh. "
    "Please suggest a fair way to share the work and point out anything in these notes that seems unclear.",
    "A few smaller points came up at the end. The documentation site needs a clearer getting started guide, "
    "the build takes too long on the shared runners, and the team would like to celebrate the launch of the "
    "new onboarding flow with a short demo for the whole department. Thank you for your help with this summary.",
)


def prompt_text(size: int = DEFAULT_PROMPT_BYTES) -> str:
    """Exactly `size` ASCII characters (= bytes) of meeting notes, repeated if `size` needs more."""
    text = "\n\n".join(_PARAGRAPHS)
    while len(text) < size:
        text += "\n\n" + "\n\n".join(_PARAGRAPHS)
    return text[:size]


def chat_body(prompt_bytes: int = DEFAULT_PROMPT_BYTES, stream: bool = False) -> str:
    """A compact chat completions JSON body whose user message is `prompt_text(prompt_bytes)`."""
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": prompt_text(prompt_bytes)}]}
    if stream:
        body["stream"] = True
    return json.dumps(body, separators=(",", ":"))


def as_stream(body: str) -> str:
    """The same JSON body asking for a stream."""
    return json.dumps({**json.loads(body), "stream": True}, separators=(",", ":"))


COMPETITORS = (
    "acme corp", "globex", "initech", "umbrella corporation", "hooli", "stark industries", "wayne enterprises",
    "cyberdyne", "tyrell corporation", "soylent", "wonka industries", "vandelay industries", "massive dynamic",
    "oscorp", "aperture science", "black mesa", "weyland-yutani", "pied piper", "dunder mifflin", "nakatomi",
)
PII_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS")


def guard_policies() -> list[dict[str, Any]]:
    """A regex, a contains and a pii policy: deterministic, no model needed."""
    return [
        {"id": "secret_codes", "type": "regex", "rule": "Never reveal internal project codes or markings",
         "patterns": ["PROJECT-[0-9]{4}", "(?i)internal use only", "(?i)do not distribute",
                      "\\bAKIA[0-9A-Z]{16}\\b"], "max_match_chars": 64},
        {"id": "competitors", "type": "contains", "rule": "Do not talk about competitors",
         "keywords": list(COMPETITORS)},
        {"id": "personal_data", "type": "pii", "rule": "Never output personal data",
         "entities": list(PII_ENTITIES), "threshold": 0.5},
    ]


def _rulesets(redact_rule: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"name": "secrets", "rules": [{"metric": "secret_codes"}],
         "action": {"type": "block", "message": "Blocked by policy."}},
        {"name": "competitors", "rules": [{"metric": "competitors"}],
         "action": {"type": "override", "responses": ["I can only talk about our own products."]}},
        {"name": "personal-data", "rules": [redact_rule], "action": {"type": "redact"}},
    ]


def guard_stages() -> list[dict[str, Any]]:
    """A central input stage and a central output stage, each: block, override, redact."""
    contact = {"metric": "pii", "op": "contains_any", "value": ["EMAIL_ADDRESS", "PHONE_NUMBER"]}
    return [
        {"name": "org-input", "scope": "central", "on": "input", "rulesets": _rulesets(contact)},
        {"name": "org-output", "scope": "central", "on": "output", "rulesets": _rulesets({"metric": "personal_data"})},
    ]
