"""`qwen-math dev sandbox-doctor`: report which sandbox isolation layers are active here.

Starts one real session and prints the layer table it reported (a table, or one JSON object
with --json). Exit 0 when the strict minimum (process + rlimits + policy + seccomp) holds,
4 when it does not (the sandbox would refuse to start in strict mode).
"""

from __future__ import annotations

import argparse
import json

from qwen_math.errors import ExitCode

HELP = "Report which sandbox isolation layers are active on this host."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    from sandbox import doctor

    report = doctor()
    print(json.dumps(report.as_dict(), indent=2) if args.json else report.format())
    return int(ExitCode.OK if report.minimum_met else ExitCode.ENVIRONMENT)
