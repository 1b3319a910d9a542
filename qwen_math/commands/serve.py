"""`qwen-math serve`: Serve the in-process engine over an OpenAI-compatible HTTP API.

Not implemented yet in this release: the command parses its flags and says so (exit 4).
"""

from __future__ import annotations

import argparse

from qwen_math.commands import flags
from qwen_math.errors import EnvironmentUnavailable

HELP = "Serve the in-process engine over an OpenAI-compatible HTTP API."


def configure(parser: argparse.ArgumentParser) -> None:
    flags.add_model_flags(parser)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")


def run(args: argparse.Namespace) -> int:
    raise EnvironmentUnavailable("`qwen-math serve` is not available in this build yet")
