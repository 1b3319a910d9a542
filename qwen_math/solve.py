"""Solving problems: sample trajectories in a reasoning mode and vote on their answers.

Two entry points over ``qwen_math.strategies.runner``:

- ``generate_samples(problems, mode=..., sampling=..., backend=...)`` yields one
  ``SampleResult`` per (problem, sample) as soon as it completes, in any order; evaluation
  runs build on it (``skip`` and ``samples`` make runs resumable and shardable). Each
  sample's seed is ``sample_seed(sampling.seed, problem_id, sample)``, so its text does not
  depend on what else is in the batch.
- ``solve(problem, mode=..., n=...)`` samples one problem n times and returns a ``Solution``:
  the majority answer through ``eval``'s equivalence-aware vote, the vote table, every sample.

Finish reasons (``qwen_math.record.FINISH_REASONS``): ``stop``, ``eos`` and ``length`` from the
backend; ``tool_limit`` when a TIR trajectory reaches its tool budget (``max_tool_calls``, or the TIR
protocol's own limit);
``context`` when the transcript no longer fits the model's context window.

What it deliberately does not do: load models, write files or grade against gold answers.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qwen_math.backends.base import Backend
from qwen_math.config import SamplingConfig, default_sampling
from qwen_math.errors import UsageError
from qwen_math.prompts import check_prompt_style
from qwen_math.record import Turn, TurnsView
from qwen_math.strategies import make_strategy
from qwen_math.strategies.base import Trajectory
from qwen_math.strategies.runner import (
    Problem,
    SandboxAccess,
    TurnCallback,
    render_prompt,
    run_trajectories,
)
from qwen_math.strategies.tir_protocols import DEFAULT_PROTOCOL

#: One problem to sample (id stable across runs, text, dataset for extraction).
ProblemInput = Problem

#: Longer problems are refused before tokenizing (no Qwen2.5-Math context holds them).
MAX_PROBLEM_CHARS = 100_000


@dataclass(frozen=True)
class SampleResult(TurnsView):
    """One finished sample: its turns, the extracted answer and why it ended."""

    problem_id: str
    sample: int
    seed: int
    turns: tuple[Turn, ...]
    answer: str | None
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    generation_time_s: float

    def to_json(self) -> dict[str, Any]:
        return {
            "problem_id": self.problem_id, "sample": self.sample, "seed": self.seed,
            "answer": self.answer, "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "generation_time_s": self.generation_time_s,
            "turns": [turn.to_json() for turn in self.turns],
        }


@dataclass(frozen=True)
class Solution:
    """The majority answer of one problem, its vote table and every sample."""

    answer: str | None
    votes: Mapping[str, int]  # answer -> samples that gave it (equivalent answers merged)
    samples: tuple[SampleResult, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "votes": dict(self.votes),
            "samples": [sample.to_json() for sample in self.samples],
        }


def generate_samples(
    problems: Sequence[ProblemInput],
    *,
    mode: str,
    sampling: SamplingConfig,
    backend: Backend,
    max_tool_calls: int | None = None,
    sandbox_pool: Any = None,
    skip: Container[tuple[str, int]] = (),
    samples: range | None = None,
    prompt_style: str = "instruct",
    on_turn: TurnCallback | None = None,
    tir_protocol: str = DEFAULT_PROTOCOL,
    tool_timeout: float | None = None,
    extract_from: str = "full",
) -> Iterator[SampleResult]:
    """Yield each sample of each problem as soon as it completes (any order).

    TIR options: ``tir_protocol`` (``qwen-agent``, ``math-eval``, ``notebook``),
    ``max_tool_calls`` (None: the protocol's own limit), ``tool_timeout`` (None: the
    protocol's), ``extract_from`` (``full`` or ``first-turn``); other modes ignore them.
    """
    strategy = make_strategy(mode, max_tool_calls=max_tool_calls, tir_protocol=tir_protocol,
                             tool_timeout=tool_timeout, extract_from=extract_from)
    trajectories = run_trajectories(
        list(problems),
        strategy=strategy, sampling=sampling, backend=backend,
        prompt_style=check_prompt_style(prompt_style), sandbox=SandboxAccess(pool=sandbox_pool),
        samples=samples, skip=skip, on_turn=on_turn,
    )
    for trajectory in trajectories:
        yield sample_result(trajectory)


def solve(
    problem: str,
    *,
    mode: str = "cot",
    n: int = 1,
    sampling: SamplingConfig | None = None,
    backend: Backend,
    max_tool_calls: int | None = None,
    sandbox_pool: Any = None,
    prompt_style: str = "instruct",
    on_turn: TurnCallback | None = None,
    on_sample: Callable[[SampleResult], None] | None = None,
    tir_protocol: str = DEFAULT_PROTOCOL,
    tool_timeout: float | None = None,
    extract_from: str = "full",
) -> Solution:
    """Sample ``problem`` n times in ``mode`` and vote. Bad input raises ``UsageError``.

    ``n`` sets the sample count when ``sampling`` is not given (with the CLI's defaults:
    greedy for one sample, temperature 0.7 / top-p 0.8 for several); a given ``sampling``
    carries its own ``n``. ``on_sample`` is called with each sample as it finishes (progress).
    The TIR options are ``generate_samples``'s.
    """
    sampling = resolve_sampling(n, sampling)
    question = check_problem(problem)
    style = check_prompt_style(prompt_style)
    check_prompt_fits(question, mode=mode, style=style, backend=backend)
    results = generate_samples(
        [ProblemInput("problem", question)], mode=mode, sampling=sampling, backend=backend,
        max_tool_calls=max_tool_calls, sandbox_pool=sandbox_pool, prompt_style=style,
        on_turn=on_turn, tir_protocol=tir_protocol, tool_timeout=tool_timeout, extract_from=extract_from,
    )
    if on_sample is not None:
        results = notify_each(results, on_sample)
    ordered = tuple(sorted(results, key=lambda result: result.sample))
    return vote([result.answer for result in ordered], ordered)


def notify_each(results: Iterator[SampleResult], callback: Callable[[SampleResult], None]) -> Iterator[SampleResult]:
    for result in results:
        callback(result)
        yield result


def vote(answers: Sequence[str | None], samples: tuple[SampleResult, ...]) -> Solution:
    """The majority answer and the vote table, equivalent answers merged (``eval.metrics``)."""
    from eval.metrics import vote_table

    table = vote_table(list(answers))
    return Solution(answer=table[0][0] if table else None, votes=dict(table), samples=samples)


def resolve_sampling(n: int, sampling: SamplingConfig | None) -> SamplingConfig:
    if sampling is None:
        return default_sampling(n=n)
    if n not in (1, sampling.n):
        raise UsageError(f"n={n} disagrees with sampling.n={sampling.n}; give one of them")
    return sampling


def check_problem(problem: str) -> str:
    """The problem text, stripped; empty or oversized problems are a ``UsageError``."""
    if not isinstance(problem, str):
        raise UsageError(f"the problem must be text, got {type(problem).__name__}")
    question = problem.strip()
    if not question:
        raise UsageError("the problem is empty")
    if len(question) > MAX_PROBLEM_CHARS:
        raise UsageError(
            f"the problem is {len(question):,} characters; at most {MAX_PROBLEM_CHARS:,} are accepted "
            "(the model's context holds about 4,096 tokens)"
        )
    return question


def check_prompt_fits(question: str, *, mode: str, style: str, backend: Backend) -> None:
    """Raise ``UsageError`` when the rendered prompt leaves no room to answer."""
    strategy = make_strategy(mode)  # the prompt depends on the mode and style only
    _, tokens = render_prompt(strategy, question, style=style, backend=backend)
    if tokens >= backend.context_window:
        raise UsageError(
            f"the prompt is {tokens:,} tokens; the model's context window is "
            f"{backend.context_window:,} tokens (prompt and answer must fit together)"
        )


def sample_result(trajectory: Trajectory) -> SampleResult:
    return SampleResult(
        problem_id=trajectory.problem_id, sample=trajectory.sample, seed=trajectory.seed,
        turns=tuple(trajectory.turns), answer=trajectory.answer,
        finish_reason=trajectory.finish_reason or "error",
        prompt_tokens=trajectory.prompt_tokens, completion_tokens=trajectory.completion_tokens,
        generation_time_s=round(trajectory.finished_s - trajectory.started_s, 6),
    )


__all__ = ["ProblemInput", "SampleResult", "Solution", "generate_samples", "solve"]
