"""`qwen-math prompts`: print the exact prompt every problem gets, without a model.

One JSON object per line: ``dataset`` (the official name, case kept), ``idx`` (0-based row),
``prompt`` (the full text sent to the model, ChatML written out as the Qwen2.5-Math chat
template renders it) and ``gold``. ``--suite qwen25-math --mode cot`` reproduces the official
harness's ``qwen25-math-cot`` prompts byte for byte (with its few-shot exemplar file).
"""

from __future__ import annotations

import argparse
import json
import sys

from qwen_math.commands import flags

HELP = "Print the prompt of every problem (JSONL: dataset, idx, prompt, gold); no model needed."


def configure(parser: argparse.ArgumentParser) -> None:
    flags.add_dataset_flags(parser)
    flags.add_mode_flag(parser)
    parser.add_argument("--prompt", default=None, help="prompt family: instruct (default) or few-shot")
    flags.add_few_shot_flags(parser)


def run(args: argparse.Namespace) -> int:
    from qwen_math.runs.prompts import dataset_prompts
    from qwen_math.suites import list_suites

    if args.list_suites:
        print(list_suites(args.mode))
        return 0
    setting = flags.few_shot_from_args(args)
    datasets, _ = flags.datasets_from_args(args)
    out = sys.stdout
    for dataset, problem, prompt in dataset_prompts(
            datasets, suite=args.suite, mode=args.mode, setting=setting, data_dir=args.data_dir,
            split=args.split, limit=args.limit, few_shot_file=args.few_shot_file, style=args.prompt):
        out.write(json.dumps({"dataset": dataset, "idx": problem.idx, "prompt": prompt,
                              "gold": problem.gold}, ensure_ascii=False) + "\n")
    return 0
