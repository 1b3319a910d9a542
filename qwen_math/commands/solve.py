"""`qwen-math solve "PROBLEM"`: sample solutions to one problem and print the majority answer.

The problem comes from the argument, from a file (``@FILE`` or ``--file FILE``) or from stdin
(``-``). Prints the answer and the vote table; ``--json`` prints one JSON object.
"""

from __future__ import annotations

import argparse

from qwen_math.commands import flags

HELP = "Solve one problem (CoT, PoT or TIR) with majority voting over n samples."


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("problem", nargs="?", default=None,
                        help="the problem text, @FILE, or - for stdin")
    parser.add_argument("--file", default=None, help="read the problem from this file")
    flags.add_mode_flag(parser)
    flags.add_sampling_flags(parser)
    flags.add_model_flags(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--show-trace", action="store_true", help="print every sample's trace")


def run(args: argparse.Namespace) -> int:
    from qwen_math.model import resolve_checkpoint

    flags.sampling_from_args(args)
    resolve_checkpoint(args.model)
    raise NotImplementedError("the decoder is not implemented yet")
