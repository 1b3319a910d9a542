"""`qwen-math merge RUN_DIR...`: combine the shards of one run into a single run directory."""

from __future__ import annotations

import argparse

from qwen_math.errors import EnvironmentUnavailable

HELP = "Merge sharded run directories (same fingerprint) into one run."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="shard run directories")
    parser.add_argument("--output-dir", "--output_dir", dest="output_dir", required=True,
                        help="the merged run directory")


def run(args: argparse.Namespace) -> int:
    raise EnvironmentUnavailable("`qwen-math merge` is not available in this build yet")
