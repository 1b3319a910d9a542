"""Drive many trajectories of one strategy over a backend, overlapping code with decoding.

``run_trajectories`` is a generator: it yields each ``Trajectory`` as soon as it is done, in
whatever order they finish. The loop, step by step:

1. start: render each problem's prompt once (shared by its samples), count its tokens; a
   prompt that leaves no room in the context window finishes at once with ``context``;
   every other trajectory queues its first request;
2. advance the backend by one ``step`` (or, when nothing is decoding and only programs are
   running, wait for the first program to finish);
3. give each finished completion to its trajectory: record the turn, finish with ``context``
   when the window is full, else ask the strategy for the next action;
4. give each finished program to its trajectory's strategy the same way;
5. apply actions: ``Generate`` queues the continuation (same ``cache_key``, its own seed,
   ``max_tokens`` capped by the room left in the window, ``context`` when none is left);
   ``Execute`` submits the code to a thread pool, so other trajectories keep decoding while
   it runs; ``Finish`` extracts the answer, closes the trajectory's sandbox session, yields.

What it deliberately does not do: render prompts, parse code or extract answers (strategies
do), or build ``SampleResult`` records (``qwen_math.solve`` does).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from typing import Any

from qwen_math.backends.base import Backend, Completion, GenerationRequest
from qwen_math.config import SamplingConfig, sample_seed
from qwen_math.errors import UsageError
from qwen_math.record import Turn
from qwen_math.strategies.base import Action, Execute, Finish, Generate, Strategy, Trajectory

log = logging.getLogger(__name__)

#: (trajectory, turn, executed): called when a turn is generated and again when its code ran.
TurnCallback = Callable[[Trajectory, Turn, bool], None]


@dataclass(frozen=True)
class Problem:
    """One problem to sample: its id (stable across runs), its text, its dataset (for extraction).

    Exported as ``qwen_math.solve.ProblemInput``.
    """

    problem_id: str
    question: str
    dataset: str | None = None
    prompt_text: str | None = None  # the user turn when it is not the bare question (few-shot)


@dataclass(frozen=True)
class SandboxAccess:
    """How strategies reach the sandbox: a pool when the caller has one, else fresh processes."""

    pool: Any = None
    timeout: float = 5.0
    memory_mb: int = 1024

    def open_session(self, resources: contextlib.ExitStack, *, timeout: float | None = None) -> Any:
        """A sandbox session for one trajectory, closed when ``resources`` closes."""
        return resources.enter_context(self.fresh_session(timeout=timeout))

    def fresh_session(self, *, timeout: float | None = None) -> Any:
        """A new sandbox session (fresh state), to use as a context manager; ``timeout`` per
        cell (None: the access's own)."""
        timeout = self.timeout if timeout is None else timeout
        if self.pool is not None:
            return self.pool.session(timeout=timeout)
        from sandbox import Session

        return Session(timeout=timeout, memory_mb=self.memory_mb)

    def run_program(self, code: str) -> Any:
        """Run one PoT program in fresh state; its ``value`` is the answer."""
        if self.pool is not None and hasattr(self.pool, "run_pot"):
            return self.pool.run_pot(code)
        from sandbox import run_pot

        return run_pot(code, timeout=self.timeout, memory_mb=self.memory_mb)


def run_trajectories(
    problems: Sequence[Problem],
    *,
    strategy: Strategy,
    sampling: SamplingConfig,
    backend: Backend,
    prompt_style: str = "instruct",
    sandbox: SandboxAccess | None = None,
    samples: Iterable[int] | None = None,
    skip: Container[tuple[str, int]] = (),
    on_turn: TurnCallback | None = None,
    workers: int | None = None,
) -> Iterator[Trajectory]:
    """Yield every (problem, sample) trajectory once it is done; see the module docstring."""
    runner = _Runner(strategy, sampling, backend, prompt_style, sandbox or SandboxAccess(), on_turn)
    sample_indices = list(range(sampling.n) if samples is None else samples)
    with ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix="tool") as pool:
        runner.pool = pool
        try:
            # 1) start
            yield from runner.start(problems, sample_indices, skip)
            while runner.active:
                # 2) advance decoding, or wait for a program
                completions = runner.advance()
                # 3) completions -> actions
                for completion in completions:
                    yield from runner.on_completion(completion)
                # 4) finished programs -> actions
                yield from runner.on_programs_done()
        finally:
            runner.abandon()


def render_prompt(strategy: Strategy, question: str, *, style: str, backend: Backend) -> tuple[str, int]:
    """A problem's prompt for ``strategy`` and its length in the backend's tokens."""
    prompt = strategy.render_prompt(question, style=style, tokenizer=backend.tokenizer)
    return prompt, backend.count_tokens(prompt)


def default_workers() -> int:
    """Threads running sandbox calls: enough to keep every core busy with sandbox processes."""
    return max(4, 2 * (os.cpu_count() or 1))


class _Runner:
    """The mutable bookkeeping of one ``run_trajectories`` call."""

    def __init__(self, strategy: Strategy, sampling: SamplingConfig, backend: Backend,
                 prompt_style: str, sandbox: SandboxAccess, on_turn: TurnCallback | None) -> None:
        self.strategy = strategy
        self.sampling = sampling.with_stop(*strategy.stop_strings(prompt_style))
        self.backend = backend
        self.prompt_style = prompt_style
        self.sandbox = sandbox
        self.on_turn = on_turn
        self.pool: ThreadPoolExecutor | None = None
        self.by_request: dict[str, Trajectory] = {}
        self.running: dict[Future, tuple[Trajectory, str]] = {}
        self.active: set[str] = set()

    # 1) start -------------------------------------------------------------------------------
    def start(self, problems: Sequence[Problem], sample_indices: list[int],
              skip: Container[tuple[str, int]]) -> Iterator[Trajectory]:
        window = self.backend.context_window
        check_unique_ids(problems)
        for problem in problems:
            todo = [s for s in sample_indices if (problem.problem_id, s) not in skip]
            if not todo:
                continue
            prompt, prompt_tokens = render_prompt(self.strategy, problem.prompt_text or problem.question,
                                                  style=self.prompt_style, backend=self.backend)
            for sample in todo:
                trajectory = Trajectory(
                    problem_id=problem.problem_id, question=problem.question,
                    dataset=problem.dataset, sample=sample,
                    seed=sample_seed(self.sampling.seed, problem.problem_id, sample),
                    prompt=prompt, prompt_tokens=prompt_tokens, started_s=time.perf_counter(),
                )
                self.active.add(trajectory.key)
                if prompt_tokens >= window:
                    log.warning("%s: the prompt is %d tokens, the context window %d",
                                problem.problem_id, prompt_tokens, window)
                    yield from self.finish(trajectory, "context")
                else:
                    self.request(trajectory, prompt_tokens)

    # 2) advance -----------------------------------------------------------------------------
    def advance(self) -> list[Completion]:
        if self.backend.has_unfinished():
            return self.backend.step()
        if self.running:
            wait(list(self.running), return_when=FIRST_COMPLETED)
            return []
        raise RuntimeError(f"{len(self.active)} trajectories wait on nothing (runner bug)")

    # 3) completions -------------------------------------------------------------------------
    def on_completion(self, completion: Completion) -> Iterator[Trajectory]:
        trajectory = self.by_request.pop(completion.request_id)
        trajectory.last_completion = completion
        trajectory.completion_tokens += completion.completion_tokens
        trajectory.turns.append(Turn(text=completion.text))
        self.notify(trajectory, executed=False)
        window_full = completion.prompt_tokens + completion.completion_tokens >= self.backend.context_window
        if completion.finish_reason == "length" and window_full:
            yield from self.finish(trajectory, "context")
        else:
            yield from self.apply(trajectory, self.strategy.after_generation(trajectory, completion))

    # 4) programs ----------------------------------------------------------------------------
    def on_programs_done(self) -> Iterator[Trajectory]:
        for future in [f for f in self.running if f.done()]:
            trajectory, code = self.running.pop(future)
            result = future.result()  # the sandbox returns results; raising means it is broken
            trajectory.tool_calls += 1
            action = self.strategy.after_execution(trajectory, code, result)
            self.notify(trajectory, executed=True)
            yield from self.apply(trajectory, action)

    # 5) actions -----------------------------------------------------------------------------
    def apply(self, trajectory: Trajectory, action: Action) -> Iterator[Trajectory]:
        if isinstance(action, Generate):
            prompt_tokens = self.backend.count_tokens(trajectory.next_prompt)
            if prompt_tokens >= self.backend.context_window:
                yield from self.finish(trajectory, "context")
            else:
                self.request(trajectory, prompt_tokens)
        elif isinstance(action, Execute):
            future = self.pool.submit(self.strategy.execute, trajectory, action.code, self.sandbox)
            self.running[future] = (trajectory, action.code)
        elif isinstance(action, Finish):
            yield from self.finish(trajectory, action.reason)
        else:
            raise TypeError(f"unknown action {action!r}")

    def request(self, trajectory: Trajectory, prompt_tokens: int) -> None:
        room = self.backend.context_window - prompt_tokens
        sampling = replace(self.sampling, n=1, max_tokens=min(self.sampling.max_tokens, room))
        request = GenerationRequest(
            request_id=f"{trajectory.key}#{trajectory.calls}",
            prompt=trajectory.next_prompt,
            sampling=sampling,
            seed=call_seed(trajectory.seed, trajectory.calls),
            cache_key=trajectory.key,
        )
        trajectory.calls += 1
        self.by_request[request.request_id] = trajectory
        self.backend.add_request(request)

    def finish(self, trajectory: Trajectory, reason: str) -> Iterator[Trajectory]:
        trajectory.finish_reason = reason
        trajectory.resources.close()
        trajectory.answer = self.strategy.final_answer(trajectory)
        trajectory.finished_s = time.perf_counter()
        self.active.discard(trajectory.key)
        yield trajectory

    def notify(self, trajectory: Trajectory, *, executed: bool) -> None:
        if self.on_turn is not None:
            self.on_turn(trajectory, trajectory.turns[-1], executed)

    def abandon(self) -> None:
        """Close what unfinished trajectories hold (the caller stopped early, or an error)."""
        for future in self.running:
            future.cancel()
        wait(list(self.running))  # a cell still running keeps its session until it returns
        for trajectory, _ in self.running.values():
            trajectory.resources.close()
        for trajectory in self.by_request.values():
            trajectory.resources.close()


def check_unique_ids(problems: Sequence[Problem]) -> None:
    seen: set[str] = set()
    for problem in problems:
        if problem.problem_id in seen:
            raise UsageError(f"problem id {problem.problem_id!r} appears more than once")
        seen.add(problem.problem_id)


def call_seed(sample_seed_value: int, call: int) -> int:
    """The seed of a trajectory's ``call``-th generation: the sample's own seed first."""
    return sample_seed_value if call == 0 else sample_seed(sample_seed_value, "call", call)
