"""`qwen-math solve "PROBLEM"`: sample solutions to one problem and print the majority answer.

The problem comes from the argument, from a file (``@FILE`` or ``--file FILE``) or from stdin
(``-``). Prints the answer and the vote table; ``--show-trace`` adds every sample's trace (its
turns, code, execution status and output); ``--json`` prints one JSON object
``{"answer": ..., "votes": {answer: count}, "samples": [...]}`` instead. On a terminal, one
sample's trace streams token by token as it is sampled (program outputs as they run), and
several samples show a live line each on stderr (tokens, tokens/s, tool calls):
``qwen_math.live_solve``. Otherwise stderr shows samples done, generated tokens, tokens/s and
an ETA (a plain line every 10 s).

Examples:
  qwen-math solve "What is the sum of the first 100 positive integers?"
  qwen-math solve @problem.txt --mode tir -n 8 --json
  qwen-math dev tiny-model /tmp/tiny && qwen-math solve "1+1?" --model /tmp/tiny --max-tokens 32
  qwen-math solve "x?" --mode tir --backend scripted --script trajectories.jsonl --json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter

from qwen_math.commands import flags
from qwen_math.errors import UsageError
from qwen_math.paths import read_input_text

HELP = "Solve one problem (CoT, PoT or TIR) with majority voting over n samples."

#: Backends that load weights from a local folder (an id is resolved through the HF cache).
LOCAL_WEIGHT_BACKENDS = frozenset({"hf", "vllm"})


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("problem", nargs="?", default=None,
                        help="the problem text, @FILE, or - for stdin")
    parser.add_argument("--file", default=None, help="read the problem from this file")
    flags.add_mode_flag(parser)
    flags.add_sampling_flags(parser)
    flags.add_tir_flags(parser)
    flags.add_model_flags(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--show-trace", action="store_true", help="print every sample's trace")


def run(args: argparse.Namespace) -> int:
    from qwen_math.backends.base import get_backend_class
    from qwen_math.solve import check_problem, solve
    from qwen_math.solve_request import parse_solve_request

    # 1) every check that needs no model, so bad input fails fast (one parser for every front end)
    request = parse_solve_request(
        {**{name: getattr(args, name) for name in REQUEST_FLAGS}, "prompt_style": args.prompt,
         "problem": check_problem(read_problem(args.problem, args.file))},
        spell=cli_spelling,
    )
    sampling = request.sampling
    backend_class = get_backend_class(args.backend)
    # 2) the model and the backend
    options = flags.backend_options_from_args(args)
    if args.backend in LOCAL_WEIGHT_BACKENDS:
        from dataclasses import replace

        from qwen_math.model import resolve_checkpoint

        options = replace(options, model=str(resolve_checkpoint(args.model)))
    backend = backend_class.create(options)
    # 3) sample; on a terminal: one sample's tokens as they come, or a live line per sample
    from qwen_math.backends.streaming import StreamingView
    from qwen_math.live_solve import TraceStream, live_display

    display = live_display(sampling.n, json_output=args.json, quiet=getattr(args, "quiet", False),
                           stdout=sys.stdout, stderr=sys.stderr, safe=terminal_safe)
    stream = isinstance(display, TraceStream)
    view = StreamingView(backend, display.on_delta) if display is not None else backend
    try:
        with solve_progress(backend, request, enabled=display is None) as progress:
            solution = solve(request.problem, backend=view,
                             on_turn=display.on_turn if display is not None else None,
                             on_sample=lambda sample: progress.sample_done(sample.completion_tokens),
                             **request.solve_kwargs())
    finally:
        if display is not None:
            display.close()
            view.close()
        backend.close()
    # 4) report
    if args.json:
        print(json.dumps(solution.to_json(), ensure_ascii=False))
        return 0
    if stream and solution.samples and not solution.samples[0].response.endswith("\n"):
        print()  # the streamed trace ends its line before the answer
    if args.show_trace and not stream:
        for sample in solution.samples:
            print_trace(sample)
    print_answer(solution)
    return 0


def solve_progress(backend, request, *, enabled: bool):  # -> SampleProgress
    """Samples done, tokens, tok/s and ETA on stderr (off while a sample streams to the terminal)."""
    from qwen_math.runs.progress import SampleProgress, live_token_counter, max_tokens_per_sample
    from qwen_math.strategies.tir_protocols import get_protocol

    tool_calls = request.max_tool_calls
    if tool_calls is None:
        tool_calls = get_protocol(request.tir_protocol).max_tool_calls
    return SampleProgress("solve", total_samples=request.sampling.n, enabled=enabled,
                          tokens=live_token_counter(backend),
                          max_tokens_per_sample=max_tokens_per_sample(request.mode, request.sampling.max_tokens,
                                                                      tool_calls))


#: flags whose values are solve-request fields of the same name.
REQUEST_FLAGS = ("mode", "n", "temperature", "top_p", "top_k", "max_tokens", "seed", "max_tool_calls",
                 "tir_protocol", "tool_timeout", "extract_from")


def cli_spelling(field: str) -> str:
    """A solve-request field as the flag that sets it (for error messages)."""
    from qwen_math.solve_request import flag_name

    return {"prompt_style": "--prompt", "problem": "the problem", "n": "-n"}.get(field, flag_name(field))


def read_problem(argument: str | None, file: str | None) -> str:
    """The problem text from exactly one source: the argument, @FILE, --file FILE, or - (stdin)."""
    if argument is not None and file is not None:
        raise UsageError("give the problem either as an argument or with --file, not both")
    if file is not None:
        return read_input_text(file, what="problem file")
    if argument is None:
        raise UsageError('no problem given: pass "PROBLEM", @FILE, --file FILE, or - to read stdin')
    if argument == "-":
        return sys.stdin.read()
    if argument.startswith("@"):
        return read_input_text(argument[1:], what="problem file")
    return argument


# --- printing -----------------------------------------------------------------------------
#: C0/C1 control characters other than newline and tab: model text and program output could
#: otherwise drive the user's terminal (escape sequences, cursor moves, title changes).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_safe(text: str) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``), for human output."""
    return CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def show(text: str, **kwargs) -> None:
    print(terminal_safe(text), **kwargs)


def print_trace(sample) -> None:
    show(f"--- sample {sample.sample} · finish {sample.finish_reason} · "
          f"{sample.completion_tokens} tokens · tool calls {sample.tool_calls} · "
          f"answer {sample.answer if sample.answer is not None else '(none)'} ---")
    cells = 0
    for turn in sample.turns:
        show(turn.text, end="")
        if turn.code is not None:
            cells += 1
            show(turn.appended, end="")
            print(f"[cell {cells}: {turn.status}, {turn.exec_duration_s or 0:.3f} s]")
    print()


def print_answer(solution) -> None:
    """The answer, the vote table (equivalent answers merged) and the finish reasons."""
    total = len(solution.samples)
    show(f"answer: {solution.answer if solution.answer is not None else '(no answer)'}")
    print("votes:")
    for answer, count in solution.votes.items():
        show(f"  {count:>4}/{total}  {answer}")
    missing = sum(1 for sample in solution.samples if sample.answer is None)
    if missing:
        print(f"  {missing:>4}/{total}  (no answer)")
    reasons = Counter(sample.finish_reason for sample in solution.samples)
    print("finish: " + ", ".join(f"{reason} {count}" for reason, count in sorted(reasons.items())))
