"""`qwen-math dev tiny-model DIR`: write a randomly initialised Qwen2 checkpoint.

The checkpoint has the real Qwen2.5 tokenizer and the Math-Instruct chat template, so the whole
stack (``qwen-math solve --model DIR``) runs offline; ``--shape`` picks the test shape or a
released size (for benchmarks without a download).
"""

from __future__ import annotations

import argparse

HELP = "Write a randomly initialised Qwen2 checkpoint with the real tokenizer."

SHAPE_CHOICES = ("tiny", "0.5b", "1.5b", "7b")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="folder to write (created if missing)")
    parser.add_argument("--shape", default="tiny", choices=SHAPE_CHOICES,
                        help="model shape (default tiny, a 2-layer test shape)")
    parser.add_argument("--seed", type=int, default=0, help="weight seed (default 0)")
    parser.add_argument("--kind", default="policy", choices=("policy", "rm", "prm"),
                        help="policy (Qwen2ForCausalLM, default), rm (Qwen2ForRewardModel: score.0 "
                             "h->h, ReLU, score.2 h->1) or prm (score.2 h->2, <extra_0> token)")


def run(args: argparse.Namespace) -> int:
    from qwen_math.tiny import write_tiny_model

    folder = write_tiny_model(args.dir, shape=args.shape, seed=args.seed, kind=args.kind)
    print(folder)
    return 0
