"""What every strategy shares: a trajectory's state, the actions it can ask for, code blocks.

A *trajectory* is one sample of one problem: its prompt, the turns generated so far, its
sandbox session (TIR) and, once done, its finish reason and answer. A strategy is a small
state machine over trajectories: after each completion and after each code execution it
answers with one action,

- ``Generate()``: continue the transcript with another generation call;
- ``Execute(code)``: run this code (in a worker thread, while other trajectories decode);
- ``Finish(reason)``: the trajectory is done (``qwen_math.record.FINISH_REASONS``).

The runner (``qwen_math.strategies.runner``) owns scheduling, token budgets and the context
window; strategies own prompts, stop strings, tool use and answers.

What it deliberately does not do: talk to a backend or a sandbox by itself.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from qwen_math.backends.base import Completion
from qwen_math.record import Turn, transcript

#: The stop string after which the engine runs the model's code (two tokens: stop on text).
OUTPUT_FENCE = "```output"

PYTHON_BLOCK = re.compile(r"```python[ \t]*\n(.*?)```", re.S)


@dataclass(frozen=True)
class Generate:
    """Ask the backend for the next completion of the transcript."""


@dataclass(frozen=True)
class Execute:
    """Run ``code`` for this trajectory, then call the strategy's ``after_execution``."""

    code: str


@dataclass(frozen=True)
class Finish:
    """The trajectory is done, for ``reason`` (one of ``record.FINISH_REASONS``)."""

    reason: str


Action = Generate | Execute | Finish


@dataclass(eq=False)
class Trajectory:
    """The mutable state of one sample while it is being generated."""

    problem_id: str
    question: str
    dataset: str | None
    sample: int
    seed: int
    prompt: str
    prompt_tokens: int
    turns: list[Turn] = field(default_factory=list)
    calls: int = 0  # generation calls made
    tool_calls: int = 0  # code executions made
    completion_tokens: int = 0
    last_completion: Completion | None = None
    finish_reason: str | None = None
    answer: str | None = None
    program_value: str | None = None  # PoT: what the program returned or printed
    started_s: float = 0.0
    finished_s: float = 0.0
    resources: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    session: Any = None  # TIR: the sandbox session, opened at the first tool call

    @property
    def key(self) -> str:
        """Names the trajectory for the backend (``GenerationRequest.cache_key``)."""
        return f"{self.problem_id}#{self.sample}"

    @property
    def transcript(self) -> str:
        """Everything after the prompt: generated text and spliced tool output."""
        return transcript(self.turns)

    @property
    def next_prompt(self) -> str:
        return self.prompt + self.transcript

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


class Strategy(Protocol):
    """A reasoning mode: its prompt, its stop strings and its per-trajectory state machine."""

    name: str

    def render_prompt(self, question: str, *, style: str, tokenizer: Any) -> str: ...

    def stop_strings(self, style: str) -> tuple[str, ...]: ...

    def after_generation(self, trajectory: Trajectory, completion: Completion) -> Action: ...

    def execute(self, trajectory: Trajectory, code: str, sandbox: Any) -> Any: ...

    def after_execution(self, trajectory: Trajectory, code: str, result: Any) -> Action: ...

    def final_answer(self, trajectory: Trajectory) -> str | None: ...


def last_python_block(text: str) -> str | None:
    """The code of the last complete ```python block in ``text``, or None."""
    blocks = PYTHON_BLOCK.findall(text)
    return blocks[-1] if blocks else None
