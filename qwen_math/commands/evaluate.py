"""`qwen-math eval`: evaluate a model on benchmarks into a resumable run directory.

``--output-dir DIR`` is the run directory itself: ``DIR/manifest.json``, per dataset
``DIR/<dataset>/samples.jsonl`` (appended and flushed per sample), ``problems.jsonl`` (the
official Qwen2.5-Math keys) and ``metrics.json``. Rerunning the same command resumes after any
interruption; a different configuration is refused (exit 5) unless ``--overwrite``;
``--extend-n N`` raises the run to N samples per problem. Without ``--tir-protocol`` a resumed
TIR run keeps the protocol it recorded (``notebook`` for runs made before protocols existed). Without ``--output-dir`` the run
goes to ``runs/<model>-<datasets>-<mode>-n<n>-seed<seed>`` (the same folder for the same
command, so rerunning it resumes). Ctrl-C or SIGTERM stop cleanly with exit 3 (resumable).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from qwen_math.commands import flags
from qwen_math.errors import UsageError

HELP = "Evaluate on benchmarks (resumable runs, maj@k / pass@k metrics)."


def configure(parser: argparse.ArgumentParser) -> None:
    flags.add_dataset_flags(parser)
    flags.add_mode_flag(parser)
    flags.add_sampling_flags(parser)
    flags.add_tir_flags(parser, default_protocol=None)
    flags.add_model_flags(parser)
    flags.add_few_shot_flags(parser)
    from qwen_math.commands.score import add_reward_flags

    add_reward_flags(parser.add_argument_group("reward model (score samples as they finish)"), required=False)
    parser.add_argument("--output-dir", "--output_dir", dest="output_dir", default=None,
                        help="the run directory (created or resumed)")
    parser.add_argument("--overwrite", action="store_true", help="discard an existing run directory")
    parser.add_argument("--extend-n", dest="extend_n", type=int, default=None,
                        help="raise an existing run to N samples per problem")
    parser.add_argument("--shard", default=None, metavar="I/N",
                        help="run only shard I of N (problems I, I+N, ...); combine with `qwen-math merge`")
    parser.add_argument("--grader-workers", dest="grader_workers", type=int, default=None,
                        help="grader worker processes (default: the grader's own choice)")
    parser.add_argument("--grader-timeout", dest="grader_timeout", type=float, default=5.0,
                        help="seconds per answer comparison before it counts as a timeout (default 5)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress line on stderr")
    parser.add_argument("--progress-interval", dest="progress_interval", type=float, default=10.0,
                        help="seconds between plain progress lines when stderr is not a terminal (default 10)")


def run(args: argparse.Namespace) -> int:
    from qwen_math.runs.report import format_table, load_run_report
    from qwen_math.runs.run import evaluate
    from qwen_math.suites import list_suites

    if args.list_suites:
        print(list_suites(args.mode))
        return 0
    config = config_from_args(args)
    result = evaluate(config)  # Ctrl-C/SIGTERM: PartialRun, exit 3 (the CLI frame's stop_on_signals)
    print(format_table(load_run_report(result.run_dir)))
    print(f"run directory: {result.run_dir}")
    return 0


def config_from_args(args: argparse.Namespace):  # -> EvalConfig
    from qwen_math.runs.run import EvalConfig

    few_shot = flags.few_shot_from_args(args)
    datasets, not_run = flags.datasets_from_args(args)
    if args.n < 1:
        raise UsageError(f"-n must be >= 1, got {args.n}")
    sampling = flags.sampling_from_args(args)
    output_dir = Path(args.output_dir) if args.output_dir else default_run_dir(args, datasets)
    options = flags.backend_options_from_args(args)
    return EvalConfig(
        datasets=datasets, output_dir=output_dir, mode=args.mode, sampling=sampling,
        max_tool_calls=args.max_tool_calls, backend=args.backend, backend_options=options,
        prompt_style=args.prompt, data_dir=args.data_dir, split=args.split, limit=args.limit,
        overwrite=args.overwrite, extend_n=args.extend_n, grader_workers=args.grader_workers,
        grader_timeout_s=args.grader_timeout, progress=args.progress,
        progress_interval_s=args.progress_interval, command=tuple(_argv()), shard=args.shard,
        tir_protocol=args.tir_protocol, tool_timeout_s=args.tool_timeout, extract_from=args.extract_from,
        suite=args.suite, not_run=not_run, few_shot=few_shot, few_shot_file=args.few_shot_file,
        reward=reward_options(args, device=options.device) if args.reward_model else None,
    )


def reward_options(args: argparse.Namespace, *, device: str | None):  # -> RewardOptions
    from qwen_math.commands.score import reward_options as options_of

    return options_of(args, device=device)


def default_run_dir(args: argparse.Namespace, datasets: tuple[str, ...]) -> Path:
    model = Path(args.model.rstrip("/")).name or "model"
    names = args.suite or "+".join(Path(d).stem for d in datasets)
    shard = f"-shard{args.shard.replace('/', 'of')}" if args.shard else ""
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "_", f"{model}-{names}-{args.mode}-n{args.n}-seed{args.seed}{shard}")
    return Path("runs") / slug


def _argv() -> list[str]:
    import sys

    return sys.argv[1:]
