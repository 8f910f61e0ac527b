"""Running the ASGI app under uvicorn (uvloop + httptools), with a clean exit on SIGTERM."""

from __future__ import annotations

import faulthandler
import signal
import sys
from types import FrameType

import uvicorn
from starlette.types import ASGIApp


class GracefulServer(uvicorn.Server):
    """uvicorn re-raises the signal that stopped it, so the process dies by SIGTERM (exit -15) after a
    graceful drain. An orchestrator reads that as a crash; we exit 0 once in-flight work has finished."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM:
            self._captured_signals.remove(sig)


def dump_stacks_on_sigusr1() -> None:
    """`kill -USR1 <pid>` writes every thread's Python stack to stderr and the gateway goes on serving:
    how to see where a process that does not answer, or does not stop, is waiting."""
    if hasattr(signal, "SIGUSR1"):
        faulthandler.register(signal.SIGUSR1, all_threads=True, chain=False)


def run_server(app: ASGIApp, host: str, port: int, *, graceful_timeout_s: float, log_level: str) -> None:
    dump_stacks_on_sigusr1()
    config = uvicorn.Config(
        app, host=host, port=port, loop="uvloop" if sys.platform != "win32" else "asyncio", http="httptools",
        log_config=None, log_level=log_level, access_log=False, server_header=False, proxy_headers=False,
        timeout_graceful_shutdown=graceful_timeout_s)
    GracefulServer(config).run()
