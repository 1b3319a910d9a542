"""`qwen-math report`: Print a run's metrics table; write an HTML report with plots.

Not implemented yet in this release: the command parses its flags and says so (exit 4).
"""

from __future__ import annotations

import argparse

from qwen_math.errors import EnvironmentUnavailable

HELP = "Print a run's metrics table; write an HTML report with plots."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory made by `eval`")
    parser.add_argument("--html", action="store_true", help="also write RUN_DIR/report.html and PNG plots")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")


def run(args: argparse.Namespace) -> int:
    raise EnvironmentUnavailable("`qwen-math report` is not available in this build yet")
