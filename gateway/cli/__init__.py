"""The `guardrail-gateway` command: serve, check, demo, bench, models, score."""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gateway import __version__
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.settings import DEFAULT_CONFIG, Settings

if TYPE_CHECKING:
    from gateway.scoring.runtime import ScoringRuntime

# The example config, installed with the package: `demo` uses it when no other config is named and there
# is no config/gateway.yaml in the current directory (config/gateway.yaml in the repository is a copy).
PACKAGED_CONFIG = Path(__file__).resolve().parent.parent / "data" / "gateway.yaml"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as err:
        print(err.render(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader left (`score ... | head`): stop quietly, as other filters do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so exit's flush does not fail again
        return 141  # 128 + SIGPIPE, what a shell reports for a filter the pipe stopped


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="guardrail-gateway", description="An OpenAI-compatible guarding gateway.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the gateway")
    _server_flags(serve)
    serve.set_defaults(func=cmd_serve)

    check = sub.add_parser("check", help="validate a config file and print every error")
    check.add_argument("path")
    check.set_defaults(func=cmd_check)

    demo = sub.add_parser("demo", help="run the gateway with the example config in front of a local model simulator")
    _server_flags(demo, "the example config: config/gateway.yaml when it exists here, else the packaged one")
    demo.set_defaults(func=cmd_demo)

    from gateway.cli.models import add_models_parser, add_score_parser
    add_models_parser(sub)
    add_score_parser(sub)

    bench = sub.add_parser("bench", help="measure the gateway's overhead against a mock upstream (and LiteLLM)")
    from gateway import bench as bench_module
    bench_module.add_arguments(bench)
    bench.set_defaults(func=bench_module.run)

    store = sub.add_parser("store", help="the policy store")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    store_bench = store_sub.add_parser("bench", help="request latency with the SQLite, Redis and an unreachable store")
    from gateway.bench import store as store_bench_module
    store_bench_module.add_arguments(store_bench)
    store_bench.set_defaults(func=store_bench_module.run)
    return parser


def _server_flags(parser: argparse.ArgumentParser, default: str = "config/gateway.yaml") -> None:
    parser.add_argument("--config", help=f"config file (default: $GATEWAY_CONFIG or {default})")
    parser.add_argument("--host", help="address to bind (default: the config's server.host)")
    parser.add_argument("--port", type=int, help="port to bind (default: the config's server.port)")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="log level")


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env().with_flags(config_path=args.config, host=args.host, port=args.port,
                                          log_level=args.log_level)


def _load(path: str) -> tuple[GatewayConfig, ScoringRuntime | None]:
    """The config at `path` with its plan compiled: every schema, cross-check and plan error in one run;
    with the scoring runtime the plan compiled with (the app serving the config reuses its models)."""
    from gateway.guard.plan import PlanCheck  # the engine loads only for the commands that read a config

    check = PlanCheck()
    return load_config(path, check=check), check.runtime


def cmd_check(args: argparse.Namespace) -> int:
    config, _ = _load(args.path)
    print(f"{args.path}: OK ({_summary(config)})")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _models_in_background()
    config, scoring = _load(settings.config_path)
    _run_gateway(settings, config, scoring)
    return 0


def demo_config_path(args: argparse.Namespace, env: dict[str, str] | os._Environ[str] = os.environ) -> str:
    """--config, else $GATEWAY_CONFIG, else ./config/gateway.yaml (in the repository), else the packaged example."""
    if args.config:
        return str(args.config)
    if env.get("GATEWAY_CONFIG"):
        return env["GATEWAY_CONFIG"]
    return DEFAULT_CONFIG if Path(DEFAULT_CONFIG).is_file() else str(PACKAGED_CONFIG)


def cmd_demo(args: argparse.Namespace) -> int:
    import uvicorn

    from gateway.console import console_url
    from gateway.echo import TRIGGER, create_echo_app

    args.config = demo_config_path(args)
    if Path(args.config).resolve() == PACKAGED_CONFIG and not os.environ.get("GATEWAY_DATA_DIR"):
        # the installed package's directory may be read-only: the demo's store goes to the user's data dir
        base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        os.environ["GATEWAY_DATA_DIR"] = str(Path(base) / "guardrail-gateway")
    _models_in_background()
    echo_port = _free_port()
    echo = uvicorn.Server(uvicorn.Config(create_echo_app(), host="127.0.0.1", port=echo_port,
                                         log_level="warning", access_log=False, lifespan="off"))
    # In a thread: uvicorn then leaves signal handling (Ctrl-C) to the gateway in the main thread. Both
    # servers log through uvicorn's loggers; the simulator's start and stop lines are left out, so
    # Ctrl-C prints the gateway's shutdown lines once.
    logging.getLogger("uvicorn.error").addFilter(_NotThread("echo-upstream"))
    thread = threading.Thread(target=echo.run, name="echo-upstream", daemon=True)
    thread.start()
    _wait_listening(echo_port)
    os.environ["UPSTREAM_BASE_URL"] = f"http://127.0.0.1:{echo_port}/v1"
    os.environ.pop("UPSTREAM_API_KEY", None)
    settings = _settings(args)
    config, scoring = _load(settings.config_path)
    host = settings.host or config.server.host
    port = settings.port or config.server.port
    key = config.applications[0].keys[0] if config.applications else "<no application configured>"
    console = console_url(config, host, port)
    banner = _DEMO_BANNER.format(echo=echo_port, host=host, port=port, key=key, config=settings.config_path,
                                 trigger=TRIGGER, console=f"Console: {console}" if console else
                                 "Console: off (no admin.tokens, or server.console: false)")
    try:
        _run_gateway(settings, config, scoring, on_started=lambda: print(banner, file=sys.stderr, flush=True))
    finally:
        echo.should_exit = True
        thread.join(timeout=5)
    return 0


class _NotThread(logging.Filter):
    def __init__(self, name: str) -> None:
        super().__init__()
        self._thread = name

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName != self._thread


def _models_in_background() -> None:
    """The gateway serves as soon as its encoder is compiled (a few seconds on a fresh machine); the
    detectors' static token table, ~20 s more, is built beside it (see gateway/scoring/build.py)."""
    from gateway.scoring.build import build_static_in_background

    build_static_in_background()


_DEMO_BANNER = """
==============================================================================
 guardrail-gateway demo: listening on http://{host}:{port}
 The upstream is a LOCAL MODEL SIMULATOR on 127.0.0.1:{echo}: it echoes your
 last message and answers tools, JSON mode, streams and embeddings in OpenAI's
 shapes. No real LLM is called and no API key is needed.
 Config: {config}

 Try it:
   curl -s http://{host}:{port}/v1/chat/completions \\
     -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\
     -d '{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": "Hello"}}]}}'

 The example config guards every request: try a message with an e-mail address
 (redacted before the model sees it) or an AWS key such as AKIAIOSFODNN7EXAMPLE
 (blocked). Say "{trigger}" and the simulator answers with a card number
 and an SSN, which the output stage redacts.

 Or with the OpenAI SDK: OpenAI(base_url="http://{host}:{port}/v1", api_key="{key}")
 {console}
 Metrics: http://{host}:{port}/metrics     Stop: Ctrl-C
==============================================================================
"""


def _run_gateway(settings: Settings, config: GatewayConfig, scoring: ScoringRuntime | None,
                 on_started: Callable[[], None] | None = None) -> None:
    from gateway.app import create_app
    from gateway.serving import HttpLimits, run_server
    from gateway.telemetry import configure_logging

    configure_logging(settings.log_level)
    app, server = create_app(settings, config, scoring), config.server
    limits = HttpLimits(server.max_header_bytes, server.max_headers, server.header_timeout_s, server.body_timeout_s)
    rejected = app.state.telemetry.http_rejected
    run_server(app, settings.host or server.host, settings.port or server.port,
               graceful_timeout_s=server.graceful_timeout_s, log_level=settings.log_level, limits=limits,
               rejected=lambda reason: rejected.labels(reason).inc(), on_started=on_started)


def _summary(config: GatewayConfig) -> str:
    return (f"{len(config.upstreams)} upstream(s), {len(config.applications)} application(s), "
            f"{len(config.policies)} polic(ies), {len(config.stages)} stage(s)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"the echo upstream did not start on port {port}")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
