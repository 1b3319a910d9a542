"""`qwen-math dev sandbox-doctor`: report which sandbox isolation layers are active here."""

from __future__ import annotations

import argparse

from qwen_math.errors import EnvironmentUnavailable

HELP = "Report which sandbox isolation layers are active on this host."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    raise EnvironmentUnavailable("`qwen-math dev sandbox-doctor` is not available in this build yet")
