"""Flags shared by the subcommands, with one set of names, aliases and defaults.

``-n/--n`` (alias ``--n_sampling``), ``--temperature`` (0 when n = 1, else 0.7), ``--top-p``
(1.0 when greedy, else 0.8), ``--top-k``, ``--max-tokens`` (alias ``--max_tokens_per_call``),
``--max-tool-calls`` (absent: the TIR protocol's own limit), ``--seed``, ``--mode``,
``--tir-protocol`` / ``--tool-timeout`` / ``--extract-from`` (``add_tir_flags``), ``--model`` (alias ``--model_name_or_path``),
``--backend``, and the vllm/openai backend flags (``--tensor-parallel-size``, ``--base-url``,
...; ``add_scale_flags``). Defaults that depend on other flags are resolved in
``sampling_from_args``; ``backend_options_from_args`` builds the ``BackendOptions``.
"""

from __future__ import annotations

import argparse
import dataclasses

from qwen_math.backends.base import BackendOptions
from qwen_math.config import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_MODEL,
    SamplingConfig,
    default_sampling,
)
from qwen_math.strategies import MODES
from qwen_math.strategies.tir_protocols import DEFAULT_PROTOCOL, EXTRACT_FROM, PROTOCOLS

#: The official Qwen2.5-Math / ToRA ``--prompt_type`` values, accepted as spellings of a mode.
MODE_ALIASES: dict[str, str] = {
    "qwen25-math-cot": "cot",
    "qwen-boxed": "cot",
    "cot": "cot",
    "tool-integrated": "tir",
    "tora": "tir",
    "pal": "pot",
    "program_only": "pot",
}


def mode_name(text: str) -> str:
    """``--mode`` value: one of ``MODES`` or an official ``--prompt_type`` spelling of one."""
    return MODE_ALIASES.get(text, text)


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
    group.add_argument("--max-tool-calls", "--max_tool_calls", "--max_func_call", dest="max_tool_calls",
                       type=int, default=None,
                       help="TIR: max code executions per trajectory (default: the --tir-protocol's "
                            "own limit: qwen-agent 10, math-eval 4, notebook 4)")
    group.add_argument("--seed", type=int, default=0, help="run seed (default 0)")


def add_mode_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", "--prompt_type", dest="mode", default="cot", choices=MODES,
                        type=mode_name,
                        help="reasoning mode: chain of thought, program of thought, "
                             "tool-integrated (default cot); the official --prompt_type names "
                             "(qwen25-math-cot, tool-integrated, pal) are accepted too")


def add_tir_flags(parser: argparse.ArgumentParser, *, default_protocol: str | None = DEFAULT_PROTOCOL) -> None:
    """``--tir-protocol``, ``--tool-timeout``, ``--extract-from`` (``qwen_math.strategies.tir_protocols``).

    ``default_protocol=None`` leaves the flag unset when absent (eval: a resumed run keeps its own).
    """
    group = parser.add_argument_group("tool-integrated reasoning")
    group.add_argument("--tir-protocol", dest="tir_protocol", default=default_protocol, choices=tuple(PROTOCOLS),
                       help="TIR runtime reproduced: qwen-agent (Qwen-Agent's TIR agent), math-eval "
                            "(Qwen2.5-Math's evaluation harness) or notebook (this project's "
                            f"persistent session); default {DEFAULT_PROTOCOL}")
    group.add_argument("--tool-timeout", dest="tool_timeout", type=float, default=None,
                       help="seconds per program (default: the protocol's: qwen-agent 20, math-eval 5, notebook 5)")
    group.add_argument("--extract-from", dest="extract_from", default="full", choices=EXTRACT_FROM,
                       help="TIR answer from the full transcript (default) or, like math-eval's "
                            "harness, from the text before the first stop string (first-turn)")


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
    add_scale_flags(parser)


def add_scale_flags(parser: argparse.ArgumentParser) -> None:
    """Flags of the vllm and openai backends (see ``BackendOptions``)."""
    defaults = BackendOptions()
    group = parser.add_argument_group("vllm backend (several GPUs)")
    group.add_argument("--tensor-parallel-size", "-tp", dest="tensor_parallel_size", type=int,
                       default=defaults.tensor_parallel_size,
                       help="GPUs per engine, tensor parallel (default 1)")
    group.add_argument("--pipeline-parallel-size", "-pp", dest="pipeline_parallel_size", type=int,
                       default=defaults.pipeline_parallel_size,
                       help="pipeline stages per engine (default 1)")
    group.add_argument("--data-parallel-size", "-dp", dest="data_parallel_size", type=int,
                       default=defaults.data_parallel_size,
                       help="engines, one per GPU group of tp x pp GPUs (default 1)")
    group.add_argument("--gpu-memory-utilization", dest="gpu_memory_utilization", type=float,
                       default=defaults.gpu_memory_utilization,
                       help=f"fraction of each GPU vLLM may use (default {defaults.gpu_memory_utilization})")
    group.add_argument("--no-prefix-caching", dest="enable_prefix_caching", action="store_false",
                       help="turn off vLLM's prefix caching (on by default: cheap TIR resumes)")
    group = parser.add_argument_group("openai backend (an OpenAI-compatible server)")
    group.add_argument("--base-url", dest="base_url", default=None,
                       help="server URL including /v1, e.g. http://127.0.0.1:8000/v1")
    group.add_argument("--api-key-env", dest="api_key_env", default=defaults.api_key_env,
                       help=f"environment variable holding the API key (default {defaults.api_key_env})")
    group.add_argument("--max-concurrency", dest="max_concurrency", type=int,
                       default=defaults.max_concurrency,
                       help=f"requests in flight to the server (default {defaults.max_concurrency})")
    group.add_argument("--request-timeout", dest="request_timeout_s", type=float,
                       default=defaults.request_timeout_s,
                       help=f"seconds per HTTP attempt (default {defaults.request_timeout_s:g})")
    group.add_argument("--max-retries", dest="max_retries", type=int, default=defaults.max_retries,
                       help="retries on 429, 5xx, connection errors and timeouts "
                            f"(default {defaults.max_retries})")


def backend_options_from_args(args: argparse.Namespace) -> BackendOptions:
    """The ``BackendOptions`` the flags describe: every field that has a flag of its name."""
    names = {field.name for field in dataclasses.fields(BackendOptions)}
    return BackendOptions(**{name: getattr(args, name) for name in names if hasattr(args, name)})


def sampling_from_args(args: argparse.Namespace, *, stop: tuple[str, ...] = ()) -> SamplingConfig:
    """The ``SamplingConfig`` the flags describe, with the dependent defaults resolved."""
    return default_sampling(
        n=args.n, temperature=args.temperature, top_p=args.top_p, top_k=args.top_k,
        max_tokens=args.max_tokens, seed=args.seed, stop=stop,
    )


def add_few_shot_flags(parser: argparse.ArgumentParser) -> None:
    """``--num-shots``, ``--few-shot-file``, ``--adapt-few-shot`` (the official prompt's exemplars)."""
    group = parser.add_argument_group("few-shot (official qwen25-math-cot exemplars, --mode cot)")
    group.add_argument("--num-shots", "--num_shots", dest="num_shots", type=int, default=0,
                       help="exemplars before each question, from the dataset's family (default 0)")
    group.add_argument("--adapt-few-shot", "--adapt_few_shot", dest="adapt_few_shot",
                       action="store_true",
                       help="official rule: 5 gaokao exemplars for the GaoKao family, and none "
                            "for a row whose gold is not a choice letter")
    group.add_argument("--few-shot-file", dest="few_shot_file", default=None,
                       help="exemplar JSON {family: [{question, answer}]} (default: "
                            "$QWEN_MATH_FEW_SHOT_FILE, else qwen25_math_official_exemplars.json "
                            "in the data dir or ../few_shot/ next to it)")


def add_dataset_flags(parser: argparse.ArgumentParser) -> None:
    """Which problems: --datasets or --suite, where their files are, split and limit."""
    parser.add_argument("--datasets", "--data_names", dest="datasets", default=None,
                        help="comma-separated benchmark names or JSONL paths")
    add_suite_flags(parser)
    parser.add_argument("--data-dir", "--data_dir", dest="data_dir", default=None,
                        help="folder with {name}.jsonl or {name}/test.jsonl")
    parser.add_argument("--split", default="test", help="dataset split (default test)")
    parser.add_argument("--limit", type=int, default=None, help="first N problems of each dataset")


def add_suite_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default=None,
                        help="run a benchmark suite (e.g. qwen25-math) instead of --datasets")
    parser.add_argument("--list-suites", dest="list_suites", action="store_true",
                        help="print what each suite runs and exit")


def few_shot_from_args(args: argparse.Namespace):  # -> qwen_math.fewshot.FewShot
    from qwen_math.errors import UsageError
    from qwen_math.fewshot import FewShot

    if args.num_shots < 0:
        raise UsageError(f"--num-shots must be >= 0, got {args.num_shots}")
    if args.suite and (args.num_shots or args.adapt_few_shot):
        raise UsageError("--num-shots / --adapt-few-shot cannot be combined with --suite "
                         "(the suite sets them per dataset; see --list-suites)")
    return FewShot(args.num_shots, args.adapt_few_shot)


def datasets_from_args(args: argparse.Namespace) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(datasets to run, suite datasets not run for lack of a file) from --suite / --datasets."""
    from qwen_math.errors import UsageError

    if args.suite:
        from qwen_math.suites import get_suite, suite_datasets

        get_suite(args.suite)
        if args.datasets:
            raise UsageError("--suite and --datasets exclude each other")
        return suite_datasets(args.suite, split=args.split, data_dir=args.data_dir)
    datasets = tuple(name.strip() for name in (args.datasets or "").split(",") if name.strip())
    if not datasets:
        raise UsageError("name the benchmarks: --datasets gsm8k,math500 or --suite qwen25-math")
    return datasets, ()
