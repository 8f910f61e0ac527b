"""Child processes for the benchmark: start on a free loopback port, wait until ready, always stop.

Each child runs in its own session so Ctrl-C reaches only us, and we stop it (and anything it
spawned) by process group.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO

import httpx

from gateway.errors import BenchError  # noqa: F401  (re-exported; defined there)


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    # Only the last lines of output are kept: enough to explain a failure, bounded in memory.
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=40))
    drain: threading.Thread | None = None

    def output_tail(self) -> str:
        if self.drain is not None and self.proc.poll() is not None:
            self.drain.join(1.0)  # an exited child's last words may still be in the pipe
        return "\n".join(f"    | {line}" for line in self.tail) or "    | (no output)"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the child binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: Mapping[str, str] | None = None, drop_prefixes: Sequence[str] = ()) -> dict[str, str]:
    """Our environment, minus variables a child must not inherit, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(tuple(drop_prefixes))}
    # Loopback traffic must never go through an HTTP proxy set in the environment.
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


def _drain(stream: IO[bytes], tail: collections.deque[str]) -> None:
    # Reading continuously keeps a chatty child from blocking on a full pipe.
    for line in stream:
        tail.append(line.decode("utf-8", "replace").rstrip())


def start_child(name: str, cmd: Sequence[str], env: Mapping[str, str], cwd: str | None = None) -> Child:
    proc = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=dict(env), cwd=cwd, start_new_session=True)
    child = Child(name, proc)
    assert proc.stdout is not None
    child.drain = threading.Thread(target=_drain, args=(proc.stdout, child.tail), daemon=True,
                                   name=f"drain-{name}")
    child.drain.start()
    return child


def wait_ready(child: Child, url: str, timeout_s: float) -> float:
    """Poll GET `url` until it answers 200; return the seconds it took. Bounded by `timeout_s`."""
    start = time.monotonic()
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            code = child.proc.poll()
            if code is not None:
                raise BenchError(f"{child.name} exited with code {code} before it was ready:\n"
                                 f"{child.output_tail()}")
            try:
                if client.get(url).status_code == 200:
                    return time.monotonic() - start
            except httpx.HTTPError:
                pass  # not listening yet
            if time.monotonic() - start > timeout_s:
                raise BenchError(f"{child.name} was not ready at {url} after {timeout_s:.0f} s:\n"
                                 f"{child.output_tail()}")
            time.sleep(0.2)


def stop_child(child: Child, grace_s: float = 10.0) -> None:
    """SIGTERM the child's process group, SIGKILL it if it lingers; never raises."""
    pgid = child.proc.pid  # start_new_session made the child its group's leader
    if child.proc.poll() is None:
        _signal_group(pgid, signal.SIGTERM)
        try:
            child.proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            _signal_group(pgid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):  # stuck in the kernel: give up
                child.proc.wait(5.0)
    # Grandchildren (e.g. server workers) may outlive the leader: the group id stays theirs.
    _signal_group(pgid, signal.SIGKILL)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pgid, sig)
