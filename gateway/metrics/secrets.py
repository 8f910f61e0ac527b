"""Secret recognisers for `gateway.metrics.pii`: API keys and tokens, JWTs, private-key blocks.

Every kind has a literal prefix; the text is searched for the prefix with `str.find` (no regex pass
over the whole text), the token around it is taken as the maximal run of its character set, and the
scan resumes after that run, so the work is linear in the text however adversarial. A token is
accepted only if the run as a whole has the kind's shape (length, alphabet, structure, checksum), so a
key glued to more key characters is not cut to fit.

Kinds and scores (a checksum or decodable structure -> 0.95-1.0; the documented shape only -> 0.7-0.9;
a shape also used by documentation examples or a bare header -> 0.6):
  AWS_ACCESS_KEY     AKIA/ASIA + 16 of [A-Z0-9] (20 characters): 0.95 / 0.9; ...EXAMPLE: 0.6.
  GOOGLE_API_KEY     AIza + 35 of [A-Za-z0-9_-]: 0.95.
  OPENAI_API_KEY     sk-proj-/sk-svcacct-/sk-admin- + 40+ (0.95), legacy sk- + 48 alphanumerics (0.9),
                     other sk- + 32+ alphanumerics (0.75); 1.0 with the "T3BlbkFJ" marker OpenAI embeds.
                     Letters and digits are both required, so "sk-learn-..." is not a key.
  ANTHROPIC_API_KEY  sk-ant-api03-/admin01-/... + 32+ (0.99); other sk-ant- + 33+ (0.8).
  GITHUB_TOKEN       ghp_/gho_/ghu_/ghs_/ghr_ + 36: 1.0 when the last 6 are the base62 CRC32 of the 30
                     before (GitHub's checksum), else 0.8; github_pat_ + 22 + _ + 59: 0.95.
  SLACK_TOKEN        xox[abposr]- + digits-digits-...: 0.95; other xox?- tokens of letters and digits: 0.75.
  STRIPE_KEY         sk_live_/rk_live_ + 20+ alphanumerics: 0.95 (test and publishable keys are not secret).
  JWT                three base64url segments whose header decodes to a JSON object with "alg": 1.0 with
                     a JSON payload, 0.85 otherwise; an unsigned one (alg none, empty signature) 0.9.
  PRIVATE_KEY        -----BEGIN [RSA |EC |OPENSSH |ENCRYPTED |PGP ...]PRIVATE KEY----- through its END line
                     (real or JSON-escaped line breaks): 1.0 with key material, 0.7 around a placeholder;
                     without an END line, the header and the key lines after it: 0.9, a bare header 0.6.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable

from gateway.metrics.pii_recognizers import Found

# Longest token each kind accepts (a longer run is not that kind of token); JWTs and private-key
# blocks are matched whole however long, see PRIVATE_KEY_MAX_CHARS / JWT_MAX_CHARS.
TOKEN_MAX_CHARS = 300
# The stream guard's hold-back for the two long kinds: RSA keys up to 4096 bits (PEM, PKCS#8 or
# OpenSSH, about 3.3K characters) and JWTs up to 4K fit. Longer ones are still matched in a whole text.
PRIVATE_KEY_MAX_CHARS = 4096
JWT_MAX_CHARS = 4096
SECRET_MAX_CHARS = {
    "AWS_ACCESS_KEY": 20, "GOOGLE_API_KEY": 39, "OPENAI_API_KEY": TOKEN_MAX_CHARS,
    "ANTHROPIC_API_KEY": TOKEN_MAX_CHARS, "GITHUB_TOKEN": TOKEN_MAX_CHARS, "SLACK_TOKEN": TOKEN_MAX_CHARS,
    "STRIPE_KEY": TOKEN_MAX_CHARS, "JWT": JWT_MAX_CHARS, "PRIVATE_KEY": PRIVATE_KEY_MAX_CHARS,
}

_ALNUM = re.compile(r"[A-Za-z0-9]*")
_WORD = re.compile(r"[A-Za-z0-9_]*")
_DASHED = re.compile(r"[A-Za-z0-9-]*")
_URLSAFE = re.compile(r"[A-Za-z0-9_-]*")
_JWT_RUN = re.compile(r"[A-Za-z0-9_.-]*")
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")

_A_PREFIXES = re.compile(r"A(?:KIA|SIA|Iza)")  # a literal first character: sre's fast prefix scan
_AWS = re.compile(r"(?:AKIA|ASIA)[A-Z0-9]{16}")
_GOOGLE = re.compile(r"AIza[A-Za-z0-9_-]{35}")
_ANTHROPIC = re.compile(r"sk-ant-(?:api|admin|oat|sid)[0-9]{2}-[A-Za-z0-9_-]{32,}")
_OPENAI_PROJECT = re.compile(r"sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{40,}")
_OPENAI_LEGACY = re.compile(r"sk-[A-Za-z0-9]{48}")
_OPENAI_OTHER = re.compile(r"sk-[A-Za-z0-9]{32,}")
_GITHUB_CLASSIC = re.compile(r"gh[pousr]_[A-Za-z0-9]{36,251}")
_GITHUB_FINE = re.compile(r"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{59}")
_GITHUB_FINE_LOOSE = re.compile(r"github_pat_[A-Za-z0-9_]{40,}")
_SLACK = re.compile(r"xox[abposr]-[A-Za-z0-9-]{10,}")
_SLACK_STRUCTURED = re.compile(r"xox[abposr]-[0-9]{6,}-[A-Za-z0-9-]{8,}")
_STRIPE = re.compile(r"[sr]k_live_[A-Za-z0-9]{20,}")
_PK_HEAD = re.compile(r"-----BEGIN (?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
_PK_FOOT = re.compile(r"-----END (?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY(?: BLOCK)?-----")
# Between the BEGIN and END lines: base64 lines and RFC 1421 headers (Proc-Type: 4,ENCRYPTED), with
# real or JSON-escaped ("\n") line breaks. A block around prose (".") is not taken as one key.
_PK_BODY = re.compile(r"[A-Za-z0-9+/=\s\\:,-]*")
_PK_MATERIAL = re.compile(r"[A-Za-z0-9+/]{40}")
# A block without its END line: the lines after the header while they look like key lines (base64,
# RFC 1421 headers, one blank line), each after a real or JSON-escaped line break.
_PK_LINES = re.compile(r"(?:[ \t]{0,8}(?:\r?\n|\\r?\\n)[ \t]{0,8}"
                       r"(?:[A-Za-z0-9+/=]{16,200}|[A-Za-z][A-Za-z-]{0,30}: ?[A-Za-z0-9 ,.-]{0,100}|"
                       r"(?=[ \t]{0,8}(?:\r?\n|\\r?\\n))))*")
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


Check = Callable[[str], tuple[str, float] | None]


def _runs(text: str, prefix: str, run: re.Pattern[str], check: Check, out: list[Found]) -> None:
    """Each maximal run of `run`'s characters starting with `prefix` (and not inside a longer word)."""
    i = text.find(prefix)
    while i >= 0:
        end = run.match(text, i + len(prefix)).end()  # type: ignore[union-attr]
        if i == 0 or text[i - 1] not in _TOKEN_CHARS:
            found = check(text[i:end])
            if found is not None:
                label, score = found
                out.append((i, end, label, score))
        i = text.find(prefix, max(end, i + 1))


def _aws(token: str) -> tuple[str, float] | None:
    if not _AWS.fullmatch(token):
        return None
    if token.endswith("EXAMPLE"):
        return "AWS_ACCESS_KEY", 0.6
    return "AWS_ACCESS_KEY", 0.95 if token.startswith("AKIA") else 0.9


def _google(token: str) -> tuple[str, float] | None:
    return ("GOOGLE_API_KEY", 0.95) if _GOOGLE.fullmatch(token) else None


def _mixed(body: str) -> bool:
    """Random-looking: digits and letters (so "sk-" + a long English compound is not a key)."""
    return any(c.isdigit() for c in body) and any(c.isalpha() for c in body)


def _sk(token: str) -> tuple[str, float] | None:
    if len(token) > TOKEN_MAX_CHARS:
        return None
    if token.startswith("sk-ant-"):
        if _ANTHROPIC.fullmatch(token):
            return "ANTHROPIC_API_KEY", 0.99
        if len(token) >= 40 and _mixed(token[7:]):
            return "ANTHROPIC_API_KEY", 0.8
        return None
    marker = "T3BlbkFJ" in token  # base64 of "OpenAI", embedded in OpenAI's keys
    if _OPENAI_PROJECT.fullmatch(token) and _mixed(token[8:]):
        return "OPENAI_API_KEY", 1.0 if marker else 0.95
    if _OPENAI_LEGACY.fullmatch(token) and _mixed(token[3:]):
        return "OPENAI_API_KEY", 1.0 if marker else 0.9
    if _OPENAI_OTHER.fullmatch(token) and _mixed(token[3:]):
        return "OPENAI_API_KEY", 0.75
    return None


def _github_checksum(token: str) -> bool:
    """Classic tokens end in the base62 CRC32 of the 30 random characters before it."""
    body = token[4:]
    if len(body) != 36:
        return False
    crc, digits = binascii.crc32(body[:30].encode()), []
    for _ in range(6):
        crc, r = divmod(crc, 62)
        digits.append(_BASE62[r])
    return "".join(reversed(digits)) == body[30:]


def _github(token: str) -> tuple[str, float] | None:
    if len(token) > TOKEN_MAX_CHARS:
        return None
    if token.startswith("github_pat_"):
        if _GITHUB_FINE.fullmatch(token):
            return "GITHUB_TOKEN", 0.95
        return ("GITHUB_TOKEN", 0.75) if _GITHUB_FINE_LOOSE.fullmatch(token) and _mixed(token[11:]) else None
    if not _GITHUB_CLASSIC.fullmatch(token):
        return None
    return "GITHUB_TOKEN", 1.0 if _github_checksum(token) else 0.8


def _slack(token: str) -> tuple[str, float] | None:
    if len(token) > TOKEN_MAX_CHARS or not _SLACK.fullmatch(token) or not _mixed(token[5:]):
        return None
    return "SLACK_TOKEN", 0.95 if _SLACK_STRUCTURED.fullmatch(token) else 0.75


def _stripe(token: str) -> tuple[str, float] | None:
    if len(token) > TOKEN_MAX_CHARS or not _STRIPE.fullmatch(token) or not _mixed(token[8:]):
        return None
    return "STRIPE_KEY", 0.95


def _b64json(segment: str) -> object:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None


def _jwts(text: str, out: list[Found]) -> None:
    i = text.find("eyJ")
    while i >= 0:
        end = _JWT_RUN.match(text, i + 3).end()  # type: ignore[union-attr]
        if i == 0 or text[i - 1] not in _TOKEN_CHARS and text[i - 1] != ".":
            parts = text[i:end].split(".")
            if len(parts) >= 3 and not any(parts[3:]) and len(parts[0]) <= 2000:
                header, payload, signature = parts[:3]
                head = _b64json(header)
                if isinstance(head, dict) and "alg" in head and payload:
                    unsigned = str(head.get("alg", "")).lower() == "none"
                    if signature or unsigned:
                        stop = i + len(header) + len(payload) + len(signature) + 2
                        if len(payload) <= 20000 and isinstance(_b64json(payload), dict):
                            score = 1.0 if signature else 0.9
                        else:
                            score = 0.85
                        out.append((i, stop, "JWT", score))
        i = text.find("eyJ", max(end, i + 1))


def _private_keys(text: str, out: list[Found]) -> None:
    footer = 0  # the next "-----END " at or after the current header (only moves forward: linear)
    i = text.find("-----BEGIN ")
    while i >= 0:
        head = _PK_HEAD.match(text, i)
        if head is None:
            i = text.find("-----BEGIN ", i + 11)
            continue
        body_start = head.end()
        if 0 <= footer < body_start:
            footer = text.find("-----END ", body_start)  # -1: none left, never searched again
        following = text.find("-----BEGIN ", body_start)
        foot = _PK_FOOT.match(text, footer) if footer >= 0 and (following < 0 or footer < following) else None
        body = text[body_start:footer] if foot is not None else ""
        if foot is not None and _PK_BODY.fullmatch(body):
            end = foot.end()
            out.append((i, end, "PRIVATE_KEY", 1.0 if _PK_MATERIAL.search(body) else 0.7))
        else:
            lines = _PK_LINES.match(text, body_start)
            end = lines.end() if lines is not None else body_start
            while end > body_start and text[end - 1] in " \t\r\n":
                end -= 1
            material = _PK_MATERIAL.search(text, body_start, end) is not None
            out.append((i, end, "PRIVATE_KEY", 0.9 if material else 0.6))
        i = text.find("-----BEGIN ", max(end, i + 11))


def find_secrets(text: str, out: list[Found], enabled: frozenset[str]) -> None:
    # Single characters first (memchr), then the prefixes themselves.
    if "A" in text and _A_PREFIXES.search(text):
        if "AWS_ACCESS_KEY" in enabled:
            for prefix in ("AKIA", "ASIA"):
                if prefix in text:
                    _runs(text, prefix, _ALNUM, _aws, out)
        if "GOOGLE_API_KEY" in enabled and "AIza" in text:
            _runs(text, "AIza", _URLSAFE, _google, out)
    if "-" in text:
        if ("OPENAI_API_KEY" in enabled or "ANTHROPIC_API_KEY" in enabled) and "sk-" in text:
            found: list[Found] = []
            _runs(text, "sk-", _URLSAFE, _sk, found)
            out.extend(f for f in found if f[2] in enabled)
        if "SLACK_TOKEN" in enabled and "xox" in text:
            _runs(text, "xox", _DASHED, _slack, out)
        if "PRIVATE_KEY" in enabled and "-----BEGIN " in text:
            _private_keys(text, out)
    if "_" in text:
        if "GITHUB_TOKEN" in enabled:
            for prefix in ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"):
                if prefix in text:
                    _runs(text, prefix, _ALNUM, _github, out)
            if "github_pat_" in text:
                _runs(text, "github_pat_", _WORD, _github, out)
        if "STRIPE_KEY" in enabled:
            for prefix in ("sk_live_", "rk_live_"):
                if prefix in text:
                    _runs(text, prefix, _ALNUM, _stripe, out)
    if "JWT" in enabled and "J" in text and "eyJ" in text:
        _jwts(text, out)
