"""`qwen-math score RUN --reward-model PATH_OR_ID`: add a reward-model score to every sample.

Appends to ``RUN/<dataset>/rewards.jsonl`` (resumable: a rerun scores only what is missing),
records the reward model in the manifest, and rewrites the finished datasets' metrics with
``rm@k`` and ``wmaj@k`` (``qwen-math report RUN`` then shows them). Exit codes: 2 for a
checkpoint that is not a reward model, a ``--kind`` its head contradicts, or a run without
samples; 4 when the weights do not fit the device; 5 when the run was scored with another
reward model; 3 when interrupted (rerun to finish).
"""

from __future__ import annotations

import argparse

HELP = "Score every sample of a run with a reward model (ORM or PRM); resumable."


def add_reward_flags(parser: argparse.ArgumentParser, *, required: bool) -> None:
    """The reward-model flags ``score`` and ``eval`` share."""
    parser.add_argument("--reward-model", required=required, default=None, metavar="PATH_OR_ID",
                        help="reward checkpoint: Qwen2ForRewardModel (ORM, e.g. Qwen2.5-Math-RM-72B) or "
                             "the Qwen2.5-Math-PRM-7B layout")
    parser.add_argument("--kind", dest="reward_kind", default=None, choices=("orm", "prm"),
                        help="expected reward model kind (default: read from the score head)")
    parser.add_argument("--aggregation", dest="reward_aggregation", default="min", choices=("min", "last", "prod"),
                        help="PRM: one score per sample from its step scores (default min)")
    parser.add_argument("--reward-backend", default="hf", choices=("hf", "vllm", "openai"),
                        help="hf: in process, prompt prefill shared (default); vllm: vllm's reward "
                             "pooling (--reward-tensor-parallel N for a 72B RM); openai: vLLM's /pooling at --reward-base-url")
    parser.add_argument("--reward-base-url", default=None, help="URL of a `vllm serve` reward model")
    parser.add_argument("--reward-device", default=None, help="device of the in-process RM (default: --device or cpu)")
    parser.add_argument("--reward-dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                        help="dtype of the in-process RM (auto: float32 on CPU, bfloat16 on GPU)")
    parser.add_argument("--reward-batch-tokens", type=int, default=16384,
                        help="padded tokens per scoring batch (default 16384)")
    parser.add_argument("--reward-tensor-parallel", type=int, default=1,
                        help="tensor-parallel GPUs of the vllm reward backend")


def reward_options(args: argparse.Namespace, *, device: str | None = None) -> object:
    from qwen_math.config import at_least
    from qwen_math.scoring.runs import RewardOptions

    at_least("--reward-batch-tokens", args.reward_batch_tokens, 1)
    return RewardOptions(
        model=args.reward_model, kind=args.reward_kind, aggregation=args.reward_aggregation,
        backend=args.reward_backend, base_url=args.reward_base_url,
        device=args.reward_device or (device if device not in (None, "auto") else "cpu"), dtype=args.reward_dtype,
        token_budget=args.reward_batch_tokens, tensor_parallel=args.reward_tensor_parallel)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run directory made by `eval`")
    add_reward_flags(parser, required=True)
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from qwen_math.scoring.runs import score_run

    scored = score_run(Path(args.run_dir), reward_options(args), progress=not args.no_progress)
    for dataset, count in scored.items():
        print(f"{dataset}: scored {count} sample(s)")
    return 0
