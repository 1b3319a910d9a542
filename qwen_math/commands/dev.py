"""`qwen-math dev ...`: developer tools (tiny checkpoints, sandbox doctor)."""

from __future__ import annotations

import argparse

from qwen_math.errors import EnvironmentUnavailable

HELP = "Developer tools: tiny-model, sandbox-doctor."

#: dev tool name -> (help, configure, run); filled by the modules that implement them.
TOOLS: dict[str, str] = {
    "tiny-model": "Write a randomly initialised Qwen2 checkpoint with the real tokenizer.",
    "sandbox-doctor": "Report which sandbox isolation layers are active on this host.",
}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tool", metavar="TOOL", parser_class=type(parser))
    sub.required = True
    tiny = sub.add_parser("tiny-model", help=TOOLS["tiny-model"])
    tiny.add_argument("dir", metavar="DIR")
    tiny.add_argument("--shape", default="tiny", choices=("tiny", "0.5b", "1.5b", "7b"))
    tiny.add_argument("--seed", type=int, default=0)
    doctor = sub.add_parser("sandbox-doctor", help=TOOLS["sandbox-doctor"])
    doctor.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    raise EnvironmentUnavailable(f"`qwen-math dev {args.tool}` is not available in this build yet")
