"""`qwen-math merge RUN_DIR... --output-dir DIR`: combine the shards of one run into one run.

Each RUN_DIR is a finished ``qwen-math eval ... --shard i/N`` run; together they must cover
shards 0..N-1 exactly once and share one fingerprint (the ``shard`` field aside). The merged
directory holds every sample, the views and metrics an unsharded run would have, and the
unsharded run's fingerprint (``qwen_math.shard``). Prints the metrics table.
"""

from __future__ import annotations

import argparse

HELP = "Merge sharded run directories (same fingerprint) into one run."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="shard run directories")
    parser.add_argument("--output-dir", "--output_dir", dest="output_dir", required=True,
                        help="the merged run directory (new or empty)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a run directory already at --output-dir")


def run(args: argparse.Namespace) -> int:
    from qwen_math.runs.report import format_table, load_run_report
    from qwen_math.shard import merge_runs

    result = merge_runs(args.run_dirs, args.output_dir, overwrite=args.overwrite,
                        command=["qwen-math", "merge", *args.run_dirs, "--output-dir", args.output_dir])
    print(format_table(load_run_report(result.run_dir)))
    total = sum(result.samples.values())
    print(f"merged {result.shards} shards, {total} samples: {result.run_dir}")
    return 0
