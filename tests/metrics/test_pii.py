"""PiiMetric: validated recognisers, exact spans, near misses, overlaps, the entities filter, params, linear time.

Secret-looking test strings are assembled from pieces so that secret scanners do not flag this file.
"""

from __future__ import annotations

import base64
import json
import time
import zlib
from typing import Any

import pytest

from gateway.metrics.types import Metric, MetricValue, ParamError
from gateway.metrics.pii import ENTITY_TYPES, MAX_SPAN_CHARS, PiiMetric, _resolve

ALL = PiiMetric()
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def found(text: str, metric: PiiMetric = ALL) -> list[tuple[str, str]]:
    """(label, matched text) per span, after checking the span invariants."""
    result = metric.measure(text)
    previous_end = 0
    for span in result.spans:
        assert 0 <= span.start < span.end <= len(text)
        assert span.start >= previous_end, "spans overlap or are unsorted"
        assert 0.0 <= span.score <= 1.0
        assert span.end - span.start <= MAX_SPAN_CHARS[span.label]
        previous_end = span.end
    assert result.value == frozenset(span.label for span in result.spans)
    return [(span.label, text[span.start:span.end]) for span in result.spans]


def score(text: str, label: str) -> float:
    return next(s.score for s in ALL.measure(text).spans if s.label == label)


def b64url(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def github_token(prefix: str, random30: str, valid: bool = True) -> str:
    crc = zlib.crc32(random30.encode()) + (0 if valid else 1)
    digits = ""
    for _ in range(6):
        crc, r = divmod(crc, 62)
        digits = B62[r] + digits
    return prefix + random30 + digits


JWT = ".".join([b64url({"alg": "HS256", "typ": "JWT"}), b64url({"sub": "1234567890", "name": "John Doe"}),
                "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"])
AWS = "AKIA" + "QYLPMN5HHHFPZAM2"
GOOGLE = "AIza" + "SyD-1234567890abcdefghijklmnopqrstu"
OPENAI_PROJECT = "sk-" + "proj-" + "abc123DEF456ghi789JKL012mno345PQR678stu901VWX234yz_-T3BlbkFJ0a1b2c3d4e5f6g7"
OPENAI_LEGACY = "sk-" + "a1B2c3D4e5F6g7H8i9J0" + "T3BlbkFJ" + "k1L2m3N4o5P6q7R8s9T0"
ANTHROPIC = "sk-" + "ant-api03-" + "Zx9" * 31 + "-AA"
GITHUB = github_token("gh" + "p_", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5")
GITHUB_BAD_CRC = github_token("gh" + "p_", "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5", valid=False)
GITHUB_FINE = "github" + "_pat_" + "11ABCDEFG0123456789abc" + "_" + "Qr7" * 19 + "xy"
SLACK = "xox" + "b-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
STRIPE = "sk" + "_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
STRIPE_RESTRICTED = "rk" + "_live_" + "51H8xYzAbCdEf0123456789GhIjKl"
KEY_BODY = ["MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun",
            "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK",
            "LxoL2tdhiZx2aH0V3Xu3WcCvB7fJYUFkK0wq8uvELZg4yZwQ9QzEqS7nQ=="]
PRIVATE_KEY = "\n".join(["-----BEGIN RSA PRIVATE KEY-----", *KEY_BODY, "-----END RSA PRIVATE KEY-----"])


@pytest.mark.parametrize(("text", "expected"), [
    # e-mail, in punctuation
    ("Write to jane.doe@example.com.", [("EMAIL_ADDRESS", "jane.doe@example.com")]),
    ("(bob+tag@mail.example.co.uk), <a_b@x.io>;", [("EMAIL_ADDRESS", "bob+tag@mail.example.co.uk"),
                                                  ("EMAIL_ADDRESS", "a_b@x.io")]),
    ('"Müller" <mueller@beispiel.de>', [("EMAIL_ADDRESS", "mueller@beispiel.de")]),
    # phone numbers
    ("Mail me or call +1 415 555 0100 today", [("PHONE_NUMBER", "+1 415 555 0100")]),
    ("office: (415) 555-0100, cell 415.555.0199", [("PHONE_NUMBER", "(415) 555-0100"),
                                                   ("PHONE_NUMBER", "415.555.0199")]),
    ("London +44 20 7946 0958 or +41 (0)96 471 07 95", [("PHONE_NUMBER", "+44 20 7946 0958"),
                                                        ("PHONE_NUMBER", "+41 (0)96 471 07 95")]),
    ("Phone: 0490 75 40 81", [("PHONE_NUMBER", "0490 75 40 81")]),
    ("Tel. 03.93.92.16.85", [("PHONE_NUMBER", "03.93.92.16.85")]),
    ("Fax: 345-899-3560x4587.", [("PHONE_NUMBER", "345-899-3560x4587")]),
    ("Fax: 9498777106", [("PHONE_NUMBER", "9498777106")]),  # bare digits: only next to a phone word
    ("call me on 467 3395", [("PHONE_NUMBER", "467 3395")]),
    # credit cards
    ("card 4111 1111 1111 1111 ok", [("CREDIT_CARD", "4111 1111 1111 1111")]),
    ("4111-1111-1111-1111", [("CREDIT_CARD", "4111-1111-1111-1111")]),
    ("amex 378282246310005, mc 5555555555554444.", [("CREDIT_CARD", "378282246310005"),
                                                   ("CREDIT_CARD", "5555555555554444")]),
    ("discover: 6011111111111117", [("CREDIT_CARD", "6011111111111117")]),
    # IBAN
    ("IBAN GB82 WEST 1234 5698 7654 32 please", [("IBAN_CODE", "GB82 WEST 1234 5698 7654 32")]),
    ("to DE89370400440532013000.", [("IBAN_CODE", "DE89370400440532013000")]),
    ("my iban is de89370400440532013000", [("IBAN_CODE", "de89370400440532013000")]),
    ("NO9386011117947", [("IBAN_CODE", "NO9386011117947")]),
    # SSN
    ("SSN: 536-22-8726", [("US_SSN", "536-22-8726")]),
    ("social security number 536 22 8726", [("US_SSN", "536 22 8726")]),
    # IP addresses
    ("from 192.168.1.20, then 10.0.0.1.", [("IP_ADDRESS", "192.168.1.20"), ("IP_ADDRESS", "10.0.0.1")]),
    ("host 2001:db8::1 and fe80::1ff:fe23:4567:890a", [("IP_ADDRESS", "2001:db8::1"),
                                                      ("IP_ADDRESS", "fe80::1ff:fe23:4567:890a")]),
    ("full 2001:0db8:85a3:0000:0000:8a2e:0370:7334.", [("IP_ADDRESS", "2001:0db8:85a3:0000:0000:8a2e:0370:7334")]),
    ("loopback ::1, mapped ::ffff:192.0.2.128", [("IP_ADDRESS", "::1"), ("IP_ADDRESS", "::ffff:192.0.2.128")]),
    # URLs, without trailing punctuation
    ("See https://example.com/path?q=1.", [("URL", "https://example.com/path?q=1")]),
    ("(docs at www.example.org/docs)", [("URL", "www.example.org/docs")]),
    ("[wiki](https://en.wikipedia.org/wiki/Foo_(bar)).", [("URL", "https://en.wikipedia.org/wiki/Foo_(bar)")]),
    ("dev server http://localhost:8080/x, ok", [("URL", "http://localhost:8080/x")]),
    ("Visit WWW.EXAMPLE.COM!", [("URL", "WWW.EXAMPLE.COM")]),
    ("www.a.com or https://b.com/x?u=www.c.com", [("URL", "www.a.com"), ("URL", "https://b.com/x?u=www.c.com")]),
    ("https://www.x.org/, then www.y.org.", [("URL", "https://www.x.org/"), ("URL", "www.y.org")]),
    # secrets
    (f"aws_access_key_id = {AWS}", [("AWS_ACCESS_KEY", AWS)]),
    (f"key={GOOGLE}&x=1", [("GOOGLE_API_KEY", GOOGLE)]),
    (f"OPENAI_API_KEY={OPENAI_PROJECT}", [("OPENAI_API_KEY", OPENAI_PROJECT)]),
    (f"old key {OPENAI_LEGACY}.", [("OPENAI_API_KEY", OPENAI_LEGACY)]),
    (f"x-api-key: {ANTHROPIC}", [("ANTHROPIC_API_KEY", ANTHROPIC)]),
    (f"token {GITHUB} and {GITHUB_FINE}", [("GITHUB_TOKEN", GITHUB), ("GITHUB_TOKEN", GITHUB_FINE)]),
    (f"SLACK_BOT_TOKEN='{SLACK}'", [("SLACK_TOKEN", SLACK)]),
    (f"stripe {STRIPE} / {STRIPE_RESTRICTED}", [("STRIPE_KEY", STRIPE), ("STRIPE_KEY", STRIPE_RESTRICTED)]),
    (f"Authorization: Bearer {JWT}", [("JWT", JWT)]),
    (f"here:\n{PRIVATE_KEY}\nthanks", [("PRIVATE_KEY", PRIVATE_KEY)]),
])
def test_positives_with_exact_spans(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


@pytest.mark.parametrize("text", [
    # e-mail near misses
    "user@localhost", "@handle on twitter", "a@b", "x@y.c", "mail foo@bar..com", "a@-example.com",
    # phone near misses: bare numbers, dates, versions, prices, ids, decimals, years, thousands
    "4155550100", "on 2023-01-15 at noon", "version 1.2.3.4567", "it costs $1 234 567", "order #123-456-7890",
    "1,234,567 people", "pi is 3.14159265", "a population of 1 000 000", "from 2019-2020", "1990 2000 2010",
    "id 12345678901234567890", "scores 70-70-75-70=285", "ISBN 978-3-16-148410-0",
    # cards: Luhn-invalid, no network, mixed separators, too long
    "card 4111 1111 1111 1112", "card 1234567812345670", "4111111111111111111111",
    # IBAN: bad checksum, wrong length, unknown country, spaces in the wrong place
    "GB83 WEST 1234 5698 7654 32", "DE8937040044053201300", "ZZ82WEST12345698765432",
    # SSN: excluded areas, groups, serials and well-known invalid numbers (and no phone instead)
    "ssn 000-12-3456", "ssn 666-12-3456", "ssn 912-34-5678", "ssn 536-00-8726", "ssn 536-22-0000",
    "ssn 078-05-1120", "ssn 219-09-9999", "ssn 123-45-6789", "ssn 111-11-1111",
    # IPs: octet range, too many parts, versions, times, namespaces, MAC addresses, hex words
    "ip 999.1.1.1", "1.2.3.4.5", "v1.2.3.4", "version 1.2.3.4", "at 12:30:45", "std::vector", "dead::beef",
    "00:1A:2B:3C:4D:5E",
    # URLs: bare domains and hosts without a TLD
    "example.com", "http://nohost", "www.x", "https://", "xhttps://example.com",
    # secrets: wrong lengths, glued to words, random dotted words, a public key
    "AKIA1234", "xAKIAQYLPMN5HHHFPZAM2", "sk-learn-is-a-library", "task-" + "a1" * 30, "ghp_short",
    "eyJhello.world.foo", "three.random.words", "eyJub3QganNvbg.eyJ4IjoxfQ.sig",
    "-----BEGIN PUBLIC KEY-----\n" + KEY_BODY[0] + "\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\n" + KEY_BODY[1] + "\n-----END CERTIFICATE-----",
    # ordinary prose with numbers
    "In 2023 we shipped version 2.4.1, grew revenue by 12% to $4.5 million and hired 3 engineers at 10:30.",
])
def test_near_misses_find_nothing(text: str) -> None:
    assert found(text) == []
    assert ALL.measure(text) == MetricValue(frozenset())


@pytest.mark.parametrize("text", ["ssn 536-22-87260", "ssn 5536-22-8726", "ssn 536.22.8726", "ssn 536-22 8726",
                                  "1-536-22-8726", "536228726"])
def test_ssn_needs_its_exact_shape(text: str) -> None:
    assert "US_SSN" not in ALL.measure(text).value


def test_scores_follow_validation_strength() -> None:
    assert score("4111 1111 1111 1111", "CREDIT_CARD") == 1.0
    assert score("GB82 WEST 1234 5698 7654 32", "IBAN_CODE") == 1.0
    assert score(f"{JWT}", "JWT") == 1.0
    assert score(PRIVATE_KEY, "PRIVATE_KEY") == 1.0
    assert score(GITHUB, "GITHUB_TOKEN") == 1.0 > score(GITHUB_BAD_CRC, "GITHUB_TOKEN") >= 0.5
    assert score("ssn 536-22-8726", "US_SSN") > score("536-22-8726", "US_SSN") > score("536 22 8726", "US_SSN")
    assert score("call +1 415 555 0100", "PHONE_NUMBER") > score("+1 415 555 0100", "PHONE_NUMBER") > 0.5
    assert score("1234 567 890 12", "PHONE_NUMBER") < 0.5  # a grouping that is often something else
    assert score("AKIAIOSFODNN7EXAMPLE", "AWS_ACCESS_KEY") < score(AWS, "AWS_ACCESS_KEY")


def test_truncated_private_key_is_still_a_private_key() -> None:
    text = "my key:\n" + "\n".join(["-----BEGIN PRIVATE KEY-----", *KEY_BODY[:2]]) + "\n\nis that ok?"
    assert found(text) == [("PRIVATE_KEY", "\n".join(["-----BEGIN PRIVATE KEY-----", *KEY_BODY[:2]]))]
    escaped = ("-----BEGIN OPENSSH PRIVATE KEY-----\\n" + "\\n".join(KEY_BODY)
               + "\\n-----END OPENSSH PRIVATE KEY-----\\n")
    assert found('{"key": "' + escaped + '"}') == [("PRIVATE_KEY", escaped[:-2])]


def test_unsigned_jwt_keeps_its_final_dot_and_others_do_not() -> None:
    unsigned = b64url({"alg": "none"}) + "." + b64url({"sub": "x"}) + "."
    assert found(f"token {unsigned} end") == [("JWT", unsigned)]
    assert found(f"token {JWT}.") == [("JWT", JWT)]
    assert found("eyJ" + "hbGciOiJIUzI1NiJ9.payload") == []  # two segments


@pytest.mark.parametrize(("text", "expected"), [
    ("http://192.168.1.20/admin", [("URL", "http://192.168.1.20/admin")]),  # URL 0.9 beats the IP inside
    ("https://user:pw@host.io/x", [("URL", "https://user:pw@host.io/x")]),  # tie with the e-mail: longer wins
    ("GB82 WEST 1234 5698 7654 32", [("IBAN_CODE", "GB82 WEST 1234 5698 7654 32")]),  # not a phone inside
    ("4111 1111 1111 1111", [("CREDIT_CARD", "4111 1111 1111 1111")]),
    (f"https://app.example.com/cb?token={JWT}", [("JWT", JWT)]),  # the validated JWT outscores the URL
])
def test_overlaps_keep_the_stronger_span(text: str, expected: list[tuple[str, str]]) -> None:
    assert found(text) == expected


def test_resolve_prefers_score_then_length_then_position() -> None:
    candidates = [(0, 10, "A", 0.5), (5, 8, "B", 0.9), (7, 20, "C", 0.9), (20, 25, "D", 0.1), (22, 30, "E", 0.1)]
    assert _resolve(candidates) == [(7, 20, "C", 0.9), (22, 30, "E", 0.1)]
    assert _resolve([(0, 4, "A", 0.7), (2, 9, "B", 0.7)]) == [(2, 9, "B", 0.7)]
    assert _resolve([(0, 4, "A", 0.7), (2, 6, "B", 0.7)]) == [(0, 4, "A", 0.7)]


def test_offsets_are_code_points_with_non_ascii_text() -> None:
    text = "Größe 🙂 “Müller”: jane@example.com, Tel. +49 30 1234567, 日本 4111111111111111 \ud800 fe80::1"
    assert found(text) == [("EMAIL_ADDRESS", "jane@example.com"), ("PHONE_NUMBER", "+49 30 1234567"),
                           ("CREDIT_CARD", "4111111111111111"), ("IP_ADDRESS", "fe80::1")]


def test_entities_filter_limits_labels_and_max_span() -> None:
    text = f"jane@example.com, +1 415 555 0100, 4111 1111 1111 1111, {PRIVATE_KEY}"
    only = PiiMetric(["EMAIL_ADDRESS", "CREDIT_CARD"])
    assert found(text, only) == [("EMAIL_ADDRESS", "jane@example.com"), ("CREDIT_CARD", "4111 1111 1111 1111")]
    raw = {"normalized": False, "decode": False}
    assert PiiMetric(["EMAIL_ADDRESS", "CREDIT_CARD"], **raw).max_span_chars == MAX_SPAN_CHARS["EMAIL_ADDRESS"] == 254
    assert PiiMetric(["US_SSN"], **raw).max_span_chars == 11
    assert PiiMetric(**raw).max_span_chars == max(MAX_SPAN_CHARS.values()) == 4096
    # with the evasion views on (the default) a disguised span is longer in the original: 6 x + 16
    assert only.max_span_chars == 6 * 254 + 16 and PiiMetric(["US_SSN"]).max_span_chars == 6 * 11 + 16
    assert {label for label, _ in found(text)} == {"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "PRIVATE_KEY"}
    anthropic_only = PiiMetric(["ANTHROPIC_API_KEY"])
    assert found(f"{OPENAI_PROJECT} {ANTHROPIC}", anthropic_only) == [("ANTHROPIC_API_KEY", ANTHROPIC)]


def test_metric_protocol_and_entity_types() -> None:
    assert isinstance(ALL, Metric)
    assert ENTITY_TYPES == frozenset(MAX_SPAN_CHARS) and len(ENTITY_TYPES) == 16
    assert {"EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN", "IP_ADDRESS", "URL", "JWT",
            "PRIVATE_KEY", "AWS_ACCESS_KEY", "GITHUB_TOKEN"} <= ENTITY_TYPES
    assert PiiMetric.from_params({}).entities == ENTITY_TYPES
    assert PiiMetric.from_params({"entities": ("US_SSN", "US_SSN")}).entities == frozenset({"US_SSN"})
    assert ALL.measure("") == MetricValue(frozenset())


@pytest.mark.parametrize(("params", "path", "message"), [
    ({"entities": ["EMAIL_ADDRESS", "NOPE"]}, ("entities", 1),
     "unknown entity 'NOPE'; known: ANTHROPIC_API_KEY, AWS_ACCESS_KEY, "),
    ({"entities": ["email_address"]}, ("entities", 0), "unknown entity 'email_address'"),
    ({"entities": [3]}, ("entities", 0), "must be a string"),
    ({"entities": "EMAIL_ADDRESS"}, ("entities",), "must be a list"),
    ({"entities": {"EMAIL_ADDRESS": True}}, ("entities",), "must be a list"),
    ({"entities": []}, ("entities",), "must not be empty"),
    ({"entities": ["EMAIL_ADDRESS"], "threshold": 0.5}, ("threshold",), "unknown parameter; allowed: entities"),
])
def test_param_errors(params: dict[str, Any], path: tuple[str | int, ...], message: str) -> None:
    with pytest.raises(ParamError) as err:
        PiiMetric.from_params(params)
    assert err.value.path == path
    assert message in err.value.message


def test_constructor_validates_like_from_params() -> None:
    with pytest.raises(ParamError) as err:
        PiiMetric(["URL", "PASSPORT"])
    assert err.value.path == ("entities", 1) and "unknown entity 'PASSPORT'" in err.value.message


ADVERSARIAL = {
    "digits and separators": "1 2-3.4(5)+6 ",
    "card-like groups": "4111 ",
    "dotted numbers": "1.1.1.",
    "letters and digits": "GB82 ",
    "at signs": "a@b.",
    "long local part": "a",
    "schemes": "http://",
    "www": "www.",
    "colons": "::1:",
    "hex and colons": "dead:beef:",
    "secret prefixes": "AKIAsk-ghp_xoxb-sk_live_",
    "jwt prefixes": "eyJ.",
    "key headers": "-----BEGIN PRIVATE KEY-----\n",
    "key body": "A" * 63 + "\n",
}


@pytest.mark.parametrize("unit", list(ADVERSARIAL.values()), ids=list(ADVERSARIAL))
def test_adversarial_200kb_input_is_linear(unit: str) -> None:
    text = (unit * (200_000 // len(unit) + 1))[:200_000]
    if unit == "a":
        text = text + "@example.com"
    if unit.startswith("A" * 63):
        text = "-----BEGIN PRIVATE KEY-----\n" + text
    started = time.perf_counter()
    ALL.measure(text)
    assert time.perf_counter() - started < 2.0  # a few hundred ms when linear; catastrophic backtracking is not


def test_eval_command_scores_exact_and_overlapping_spans(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.metrics.pii_eval import evaluate, main

    rows = [
        {"text": "mail a@b.io now", "spans": [{"start": 5, "end": 11, "type": "EMAIL_ADDRESS"}]},
        {"text": "call +1 415 555 0100", "spans": [{"start": 5, "end": 20, "type": "PHONE_NUMBER"}]},
        {"text": "ip 10.0.0.1 x", "spans": [{"start": 3, "end": 8, "type": "IP_ADDRESS"}]},  # overlap only
        {"text": "card 4111111111111111", "spans": []},  # a negative the metric flags: a false positive
        {"text": "John Smith", "spans": [{"start": 0, "end": 10, "type": "PERSON"}]},  # not a type it emits
        {"text": "nothing here", "spans": []},
    ]
    counts, stats = evaluate(rows, ENTITY_TYPES)
    assert (counts["EMAIL_ADDRESS"].gold, counts["EMAIL_ADDRESS"].pred, counts["EMAIL_ADDRESS"].exact) == (1, 1, 1)
    assert (counts["PHONE_NUMBER"].exact, counts["PHONE_NUMBER"].overlap_gold) == (1, 1)
    ip = counts["IP_ADDRESS"]
    assert (ip.exact, ip.overlap_pred, ip.overlap_gold) == (0, 1, 1)
    assert (counts["CREDIT_CARD"].gold, counts["CREDIT_CARD"].pred, counts["CREDIT_CARD"].overlap_pred) == (0, 1, 0)
    assert "PERSON" not in counts
    assert (stats["rows"], stats["negative_rows"], stats["negative_rows_flagged"]) == (6, 2, 1)

    path = tmp_path / "rows.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    assert main([str(path), "--types", "EMAIL_ADDRESS,IP_ADDRESS"]) == 0
    out = capsys.readouterr().out
    assert "EMAIL_ADDRESS" in out and "IP_ADDRESS" in out and "PHONE_NUMBER" not in out
    ip_row = next(line for line in out.splitlines() if line.startswith("IP_ADDRESS"))
    assert ip_row.split() == ["IP_ADDRESS", "1", "1", "|", "0.000", "0.000", "0.000", "|", "1.000", "1.000", "1.000"]
    with pytest.raises(SystemExit):
        main([str(path), "--types", "NOPE"])


@pytest.mark.parametrize("text", ["card 4111 1111-1111 1111", "GB8 2WEST12345698765432"])
def test_mixed_or_misplaced_separators_are_found_by_the_joined_view_unless_normalize_is_off(text: str) -> None:
    # Once near misses; since the evasion views (issue 23 item 1) separators inside a token are an evasion.
    assert found(text) != []
    assert found(text, PiiMetric(normalized=False)) == []
