"""`qwen-math serve`: an OpenAI-compatible HTTP server over the in-process engine.

Serves ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions`` (both with ``stream``)
and ``/v1/solve`` (a whole CoT/PoT/TIR solve, sandbox server-side) on 127.0.0.1:8000 by
default; ``--port 0`` picks a free port. Once listening it prints one line to stdout,
``serving MODEL on http://HOST:PORT/v1``, so scripts can wait for it. Ctrl-C or SIGTERM stop
it cleanly: uvicorn finishes its graceful stop, requests still decoding are failed, the
engine and the sandbox stop, and the exit status is 0. Needs the ``serve`` extra (Starlette,
uvicorn): ``pip install 'qwen-math[serve]'``. Any client of the OpenAI API works, ``qwen-math eval --backend openai
--base-url http://127.0.0.1:8000/v1 --model MODEL`` included.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging

from qwen_math.commands import flags

HELP = "Serve the in-process engine over an OpenAI-compatible HTTP API."

log = logging.getLogger(__name__)


def configure(parser: argparse.ArgumentParser) -> None:
    from qwen_math.serve import ServeConfig
    from qwen_math.strategies.tir_protocols import PROTOCOLS

    defaults = ServeConfig(model_name="")
    flags.add_model_flags(parser)
    group = parser.add_argument_group("server")
    group.add_argument("--host", default=defaults.host,
                       help="bind address (default 127.0.0.1; /v1/solve runs code: keep it private)")
    group.add_argument("--port", type=int, default=defaults.port, help="port (default 8000; 0 = any free port)")
    group.add_argument("--served-model-name", dest="served_model_name", default=None,
                       help="the model id clients send (default: --model as given)")
    group.add_argument("--max-queue", dest="max_queue", type=int, default=defaults.max_queue,
                       help=f"samples queued or decoding before 429 (default {defaults.max_queue})")
    group.add_argument("--max-connections", dest="max_connections", type=int,
                       default=defaults.max_connections,
                       help=f"connections served at once before 503 (default {defaults.max_connections})")
    group.add_argument("--max-body-bytes", dest="max_body_bytes", type=int, default=defaults.max_body_bytes,
                       help=f"largest request body accepted (default {defaults.max_body_bytes:,})")
    group.add_argument("--tir-protocol", dest="tir_protocol", default=defaults.tir_protocol,
                       choices=tuple(PROTOCOLS),
                       help=f"/v1/solve's TIR protocol when a request names none (default {defaults.tir_protocol})")


def run(args: argparse.Namespace) -> int:
    from qwen_math.backends.base import get_backend_class
    from qwen_math.serve import ServeConfig, check_listen_address, check_server_installed, shutdown

    config = ServeConfig(
        model_name=args.served_model_name or args.model, host=args.host, port=args.port,
        max_queue=positive("--max-queue", args.max_queue),
        max_connections=positive("--max-connections", args.max_connections),
        max_body_bytes=positive("--max-body-bytes", args.max_body_bytes),
        tir_protocol=args.tir_protocol,
    )
    if not 0 <= args.port <= 65535:
        raise_usage(f"--port must be in 0..65535, got {args.port}")
    check_server_installed()  # before the model loads
    check_listen_address(args.host, args.port)
    if not is_loopback(args.host):
        log.warning("serving on %s: anyone who can reach it can run code through /v1/solve; "
                    "put it behind authentication", args.host)
    backend = get_backend_class(args.backend).create(flags.backend_options_from_args(args))
    try:
        server = bind(backend, config)
        print(f"serving {config.model_name} on {server.url}", flush=True)
        try:
            server.serve_forever()  # until SIGINT or SIGTERM (uvicorn's graceful stop)
            log.info("stopping")
        finally:
            shutdown(server)
    finally:
        backend.close()
    return 0


def bind(backend, config):  # -> qwen_math.serve.Server
    """The listening server; a port in use is an environment error, not a traceback."""
    from qwen_math.errors import EnvironmentUnavailable
    from qwen_math.serve import make_server

    try:
        return make_server(backend, config)
    except OSError as exc:
        raise EnvironmentUnavailable(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def positive(flag: str, value: int) -> int:
    if value < 1:
        raise_usage(f"{flag} must be >= 1, got {value}")
    return value


def raise_usage(message: str) -> None:
    from qwen_math.errors import UsageError

    raise UsageError(message)
