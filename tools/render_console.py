"""Dev tool: screenshots of the web console for docs/console.md, from the real console in Debian's Chromium.

    .venv/bin/python tools/render_console.py [docs]

Run from the repository root. Needs Chromium at /usr/bin/chromium (`apt-get install -y chromium`; the
browser is never downloaded: Playwright gets `executable_path`) and the `test` extra (Playwright). It
stays on loopback, loads no model, and takes about 15 seconds:

1. the test upstream (a thread) and a gateway (a process) with the console tests' config (two
   applications, a central and an application admin token, a config policy and stage) and a SQLite store;
2. through the admin API: a regex, a PII and a classifier policy (with training rows), an application
   stage using them (one ruleset in monitor mode), and some traffic through the proxy (passed, blocked,
   redacted, monitor hits) so the registry, monitoring log and overview have something to show;
3. the console, signed in with the central token, at 1280x800: registry, policy page, stage editor,
   monitoring, playground (a dry-run's verdicts), written as docs/console-*.png, recompressed
   (zlib level 9, one IDAT chunk) to keep them small.
"""

from __future__ import annotations

import os
import struct
import sys
import tempfile
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the tests' helpers (upstream, gateway runner, console config) are reused

import httpx

from tests.conftest import free_port, running_gateway
from tests.console.conftest import CENTRAL, KEY_A, KEY_B, console_config
from tests.upstream import Recorder, ServerThread, create_upstream

CHROMIUM = os.environ.get("GATEWAY_CHROMIUM", "/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 800}
SHOTS = ("registry", "policy", "stage-editor", "monitoring", "playground")


def optimise_png(path: Path) -> tuple[int, int]:
    """Rewrite a PNG with its image data in one IDAT chunk at zlib level 9 (lossless); (before, after) bytes."""
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", path
    chunks, pos = [], 8
    while pos < len(raw):
        (length,), kind = struct.unpack(">I", raw[pos:pos + 4]), raw[pos + 4:pos + 8]
        chunks.append((kind, raw[pos + 8:pos + 8 + length]))
        pos += 12 + length
    data = zlib.compress(zlib.decompress(b"".join(d for k, d in chunks if k == b"IDAT")), 9)
    out = bytearray(raw[:8])
    wrote_idat = False
    for kind, body in chunks:
        if kind == b"IDAT":
            if wrote_idat:
                continue
            kind, body, wrote_idat = b"IDAT", data, True
        out += struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    if len(out) < len(raw):
        path.write_bytes(bytes(out))
    return len(raw), min(len(raw), len(out))


def seed(url: str) -> None:
    """Policies, a stage and some traffic, all through the public APIs."""
    admin = {"authorization": f"Bearer {CENTRAL}"}

    def call(method: str, path: str, body: object = None) -> None:
        r = httpx.request(method, url + path, headers=admin, json=body, timeout=30)
        assert r.status_code < 300, (path, r.status_code, r.text)

    call("POST", "/v1/admin/policies", {"id": "ticket_ids", "type": "regex", "rule": "No internal ticket ids",
                                        "patterns": ["TCK-[0-9]{5}"]})
    call("POST", "/v1/admin/policies", {"id": "contact_data", "type": "pii", "rule": "No contact details",
                                        "entities": ["EMAIL_ADDRESS", "PHONE_NUMBER"]})
    call("POST", "/v1/admin/policies", {"id": "refund_promises", "type": "classifier",
                                        "rule": "Agents must not promise refunds",
                                        "disallowed_behaviors": ["promising a refund before review"],
                                        "allowed_behaviors": ["explaining the refund policy"]})
    call("POST", "/v1/admin/policies/refund_promises/data", {"data": [
        {"example": "I'll refund you today, no questions asked.", "compliance": "FAIL"},
        {"example": "You will definitely get your money back.", "compliance": "FAIL"},
        {"example": "Refunds are reviewed within five working days.", "compliance": "PASS"},
        {"example": "Here is how our refund policy works.", "compliance": "PASS"}]})
    call("POST", "/v1/admin/stages", {
        "name": "support-input", "on": "input", "scope": "application", "applications": ["app-a"],
        "rulesets": [
            {"name": "tickets", "rules": [{"metric": "ticket_ids"}],
             "action": {"type": "block", "message": "Ticket ids stay internal."}},
            {"name": "contact", "rules": [{"metric": "pii", "op": "contains_any", "value": ["EMAIL_ADDRESS"]}],
             "action": {"type": "redact"}},
            {"name": "long", "mode": "monitor", "rules": [{"metric": "length", "op": "gt", "value": 120}],
             "action": {"type": "block"}}]})
    texts = ["How do I reset my password?", "Look up TCK-12345 for me", "Mail me at jane.doe@example.com",
             "please say configured-word", "Summarise our refund policy in two lines. " * 4,
             "What are your opening hours?", "My colleague is bob@example.org, add him"]
    for i, text in enumerate(texts * 2):
        key = KEY_A if i % 3 else KEY_B
        httpx.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {key}"}, timeout=30,
                   json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}]})


def render(url: str, out: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_context(viewport=VIEWPORT, base_url=url).new_page()
        page.set_default_timeout(15_000)
        page.goto("/console/")
        page.get_by_label("Admin token").fill(CENTRAL)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()

        def shot(name: str) -> None:
            page.wait_for_load_state("networkidle")
            path = out / f"console-{name}.png"
            page.screenshot(path=str(path))
            before, after = optimise_png(path)
            print(f"{path}: {after // 1024} KiB (from {before // 1024})")

        page.goto("/console/#/policies")
        expect(page.get_by_role("link", name="refund_promises")).to_be_visible()
        shot("registry")
        page.goto("/console/#/policies/refund_promises/data")
        expect(page.get_by_text("You will definitely get your money back.")).to_be_visible()
        shot("policy")
        page.goto("/console/#/stages/support-input")
        expect(page.locator("[data-ruleset='2']")).to_be_visible()
        shot("stage-editor")
        page.goto("/console/#/monitoring")
        rows = page.locator("table tbody tr")
        expect(rows.first).to_be_visible()
        shot("monitoring")
        page.goto("/console/#/playground")
        page.get_by_label("Message 1", exact=True).fill("Look up TCK-12345 and mail jane.doe@example.com")
        run = page.get_by_role("button", name="Run dry-run")
        run.click()
        page.wait_for_timeout(1500)
        run.evaluate("e => e.scrollIntoView({block: 'start'})")  # the verdicts, under the form
        shot("playground")
        browser.close()


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs")
    if not Path(CHROMIUM).exists():
        print(f"no Chromium at {CHROMIUM}: apt-get install -y chromium", file=sys.stderr)
        return 1
    upstream = ServerThread(create_upstream(Recorder()), free_port())
    upstream.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = f"http://127.0.0.1:{upstream.port}/v1"
            with running_gateway(Path(tmp), lambda port: console_config(base, port),
                                 env={"GATEWAY_DATA_DIR": str(Path(tmp) / "data")}) as gw:
                seed(gw.url)
                render(gw.url, out)
    finally:
        upstream.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
