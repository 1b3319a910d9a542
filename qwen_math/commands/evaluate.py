"""`qwen-math eval`: evaluate a model on benchmarks into a resumable run directory."""

from __future__ import annotations

import argparse

from qwen_math.commands import flags
from qwen_math.errors import EnvironmentUnavailable

HELP = "Evaluate on benchmarks (resumable runs, maj@k / pass@k metrics)."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--datasets", "--data_names", dest="datasets", required=True,
                        help="comma-separated benchmark names or JSONL paths")
    parser.add_argument("--data-dir", "--data_dir", dest="data_dir", default=None,
                        help="folder with {name}.jsonl or {name}/test.jsonl")
    parser.add_argument("--split", default="test", help="dataset split (default test)")
    parser.add_argument("--limit", type=int, default=None, help="first N problems of each dataset")
    flags.add_mode_flag(parser)
    flags.add_sampling_flags(parser)
    flags.add_model_flags(parser)
    parser.add_argument("--output-dir", "--output_dir", dest="output_dir", default=None,
                        help="the run directory (created or resumed)")
    parser.add_argument("--overwrite", action="store_true", help="discard an existing run directory")
    parser.add_argument("--extend-n", dest="extend_n", type=int, default=None,
                        help="raise an existing run to N samples per problem")


def run(args: argparse.Namespace) -> int:
    raise EnvironmentUnavailable("`qwen-math eval` is not available in this build yet")
