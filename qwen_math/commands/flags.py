"""Flags shared by the subcommands, with one set of names, aliases and defaults.

``-n/--n`` (alias ``--n_sampling``), ``--temperature`` (0 when n = 1, else 0.7), ``--top-p``
(1.0 when greedy, else 0.8), ``--top-k``, ``--max-tokens`` (alias ``--max_tokens_per_call``),
``--max-tool-calls``, ``--seed``, ``--mode``, ``--model`` (alias ``--model_name_or_path``),
``--backend``. Defaults that depend on other flags are resolved in ``sampling_from_args``.
"""

from __future__ import annotations

import argparse

from qwen_math.config import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_MAX_TOOL_CALLS,
    DEFAULT_MODEL,
    SamplingConfig,
    default_sampling,
)

MODES = ("cot", "pot", "tir")


def add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("sampling")
    group.add_argument("-n", "--n", "--n_sampling", dest="n", type=int, default=1,
                       help="samples per problem (default 1)")
    group.add_argument("--temperature", type=float, default=None,
                       help="sampling temperature (default 0 when n = 1, else 0.7)")
    group.add_argument("--top-p", "--top_p", dest="top_p", type=float, default=None,
                       help="nucleus sampling mass (default 1.0 when greedy, else 0.8)")
    group.add_argument("--top-k", "--top_k", dest="top_k", type=int, default=-1,
                       help="top-k sampling, -1 disables (default)")
    group.add_argument("--max-tokens", "--max_tokens_per_call", dest="max_tokens", type=int,
                       default=DEFAULT_MAX_TOKENS,
                       help=f"max new tokens per generation call (default {DEFAULT_MAX_TOKENS})")
    group.add_argument("--max-tool-calls", "--max_tool_calls", dest="max_tool_calls", type=int,
                       default=DEFAULT_MAX_TOOL_CALLS,
                       help=f"TIR: max code executions per trajectory (default {DEFAULT_MAX_TOOL_CALLS})")
    group.add_argument("--seed", type=int, default=0, help="run seed (default 0)")


def add_mode_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", "--prompt_type", dest="mode", default="cot", choices=MODES,
                        help="reasoning mode: chain of thought, program of thought, "
                             "tool-integrated (default cot)")


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", "--model_name_or_path", dest="model", default=DEFAULT_MODEL,
                       help=f"Hugging Face id or local folder (default {DEFAULT_MODEL})")
    group.add_argument("--backend", default="hf",
                       help="generation backend: hf (default), scripted, vllm, openai")
    group.add_argument("--script", default=None,
                       help="scripted backend: JSONL file, one JSON list of completions per line")
    group.add_argument("--device", default="auto", help="torch device (default auto)")
    group.add_argument("--dtype", default="auto",
                       help="model dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16")
    group.add_argument("--prompt", default=None,
                       help="prompt family: instruct (chat template, default) or few-shot "
                            "(for base models)")


def sampling_from_args(args: argparse.Namespace, *, stop: tuple[str, ...] = ()) -> SamplingConfig:
    """The ``SamplingConfig`` the flags describe, with the dependent defaults resolved."""
    return default_sampling(
        n=args.n, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
        max_tokens=args.max_tokens, seed=args.seed, stop=stop,
    )
