"""`qwen-math rescore`: Re-extract and re-grade existing output files; print acc, maj@k, pass@k.

Not implemented yet in this release: the command parses its flags and says so (exit 4).
"""

from __future__ import annotations

import argparse

from qwen_math.errors import EnvironmentUnavailable

HELP = "Re-extract and re-grade existing output files; print acc, maj@k, pass@k."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="JSONL output files")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", default=None, help="write per-sample verdicts (JSONL) here")


def run(args: argparse.Namespace) -> int:
    raise EnvironmentUnavailable("`qwen-math rescore` is not available in this build yet")
