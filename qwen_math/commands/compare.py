"""`qwen-math compare`: Compare two runs: per-problem flips, paired significance, config difference.

Not implemented yet in this release: the command parses its flags and says so (exit 4).
"""

from __future__ import annotations

import argparse

from qwen_math.errors import EnvironmentUnavailable

HELP = "Compare two runs: per-problem flips, paired significance, config difference."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A")
    parser.add_argument("run_b", metavar="RUN_B")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    raise EnvironmentUnavailable("`qwen-math compare` is not available in this build yet")
