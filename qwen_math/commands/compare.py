"""`qwen-math compare`: compare two runs: per-problem flips, paired significance, config difference.

Problems are paired by dataset and idx. A problem is solved when its majority answer is
correct; the flips are the problems solved by one run only, tested with McNemar's exact test.
The per-problem accuracy difference (B - A) gets a paired-bootstrap 95 % interval and p-value.
The configuration difference lists every fingerprint field that differs (old -> new).
"""

from __future__ import annotations

import argparse
import json

HELP = "Compare two runs: per-problem flips, paired significance, config difference."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_a", metavar="RUN_A")
    parser.add_argument("run_b", metavar="RUN_B")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")


def run(args: argparse.Namespace) -> int:
    from qwen_math.runs.compare import compare_runs, format_comparison

    comparison = compare_runs(args.run_a, args.run_b, seed=args.seed)
    print(json.dumps(comparison.to_json(), indent=2) if args.json else format_comparison(comparison))
    return 0
