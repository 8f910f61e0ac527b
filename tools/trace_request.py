"""Count the calls and files one guarded request crosses in gateway/ (issue 26's request-path measure).

The bench's `guarded` target (its central input and output stages, gateway/bench/workload.py) runs in
this process in front of the bench's mock upstream (a child process); after warm-up requests, one
non-streamed chat completion is traced with sys.setprofile (and threading.setprofile, for metrics run on
a thread). Only frames whose code lives under gateway/ count: the test client, Starlette, httpx and the
standard library do not. Background tasks that run on the loop while the request is in flight (the
monitoring log's flush, the registry's store poll) are counted too: counts vary by a few percent between runs.

    .venv/bin/python tools/trace_request.py [--stream] [--top 20]

Prints: calls (Python function calls in gateway/; a coroutine resumed after an await is not a new call),
functions and files touched, and per file the calls into it and its entries (calls into it from another
gateway file: how often the request crosses into it).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import yaml  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.bench.procs import stop_child  # noqa: E402
from gateway.bench.targets import CHAT_PATH, CLIENT_KEY, gateway_config, start_mock  # noqa: E402
from gateway.bench.workload import as_stream, chat_body  # noqa: E402
from gateway.config.loader import parse_config  # noqa: E402
from gateway.guard.plan import PlanCheck  # noqa: E402
from gateway.settings import Settings  # noqa: E402

PACKAGE = str(ROOT / "gateway") + "/"


class Tracer:
    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()       # file -> calls into it
        self.entries: collections.Counter[str] = collections.Counter()     # file -> calls from another file
        self.functions: set[tuple[str, str]] = set()
        self.resumes = 0  # a coroutine or generator resumed (after an await or a yield): not a new call
        self._frames: list[FrameType] = []  # kept alive, so that no id is reused while tracing
        self._seen: set[int] = set()

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        path = frame.f_code.co_filename
        if not path.startswith(PACKAGE):
            return
        if id(frame) in self._seen:
            self.resumes += 1
            return
        self._seen.add(id(frame))
        self._frames.append(frame)
        name = path[len(PACKAGE):]
        self.calls[name] += 1
        self.functions.add((name, frame.f_code.co_qualname))
        caller = frame.f_back
        while caller is not None and not caller.f_code.co_filename.startswith(PACKAGE):
            caller = caller.f_back  # through the library frames between two gateway frames
        if caller is None or caller.f_code.co_filename != path:
            self.entries[name] += 1


async def trace(stream: bool) -> Tracer:
    body = chat_body()
    body = as_stream(body) if stream else body
    child, mock_port, _ = start_mock(30.0, body)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "guarded.yaml"
            # the port is never bound: the app runs in process
            text = yaml.safe_dump(gateway_config(9, mock_port, guarded=True), sort_keys=False)
            path.write_text(text)
            check = PlanCheck()
            app = create_app(Settings(config_path=str(path)), parse_config(text, str(path), {}, check=check),
                             check.runtime)
            async with app.starlette.router.lifespan_context(app.starlette):
                transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
                headers = {"authorization": f"Bearer {CLIENT_KEY}", "content-type": "application/json"}
                async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as client:
                    for _ in range(5):  # warm-up: connections, caches, lazy tables
                        (await client.post(CHAT_PATH, content=body, headers=headers)).raise_for_status()
                    tracer = Tracer()
                    threading.setprofile(tracer)
                    sys.setprofile(tracer)
                    try:
                        response = await client.post(CHAT_PATH, content=body, headers=headers)
                    finally:
                        sys.setprofile(None)
                        threading.setprofile(None)  # type: ignore[arg-type]
                    response.raise_for_status()
                    return tracer
    finally:
        stop_child(child)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stream", action="store_true", help="trace a streamed request")
    parser.add_argument("--top", type=int, default=25, help="files to list")
    args = parser.parse_args()
    tracer = asyncio.run(trace(args.stream))
    kind = "streamed" if args.stream else "non-streamed"
    print(f"one guarded {kind} chat completion (the bench's guarded target): "
          f"{sum(tracer.calls.values())} calls, {len(tracer.functions)} functions, {len(tracer.calls)} files, "
          f"{sum(tracer.entries.values())} file entries ({tracer.resumes} coroutine resumptions not counted)")
    print(f"{'file':40s} {'calls':>6s} {'entries':>8s}")
    for name, calls in tracer.calls.most_common(args.top):
        print(f"{name:40s} {calls:6d} {tracer.entries[name]:8d}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
