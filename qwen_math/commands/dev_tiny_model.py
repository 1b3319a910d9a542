"""`qwen-math dev tiny-model DIR`: write a randomly initialised Qwen2 checkpoint."""

from __future__ import annotations

import argparse

from qwen_math.errors import EnvironmentUnavailable

HELP = "Write a randomly initialised Qwen2 checkpoint with the real tokenizer."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR")
    parser.add_argument("--shape", default="tiny", choices=("tiny", "0.5b", "1.5b", "7b"))
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    raise EnvironmentUnavailable("`qwen-math dev tiny-model` is not available in this build yet")
