"""Program of thought: the model writes one program; its result is the answer.

The prompt (``qwen_math.prompts.POT_SYSTEM``, ours: Qwen publishes none for the Instruct
models) asks for one ```python block that prints the answer or defines ``solution()``.
Generation stops at "```output"; the last ```python block runs once in a fresh sandbox
process (``sandbox.run_pot``), and the value of ``solution()`` or the printed result is the
answer. A program that fails, prints nothing, or is missing gives no answer (never a guess
from the prose). The official harness (prompt type ``pal``) never calls ``solution()``: it
takes the last number of the program text; that quirk is documented, not reproduced.

What it deliberately does not do: feed the output back to the model (that is TIR).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from qwen_math import prompts
from qwen_math.backends.base import Completion
from qwen_math.errors import UsageError
from qwen_math.strategies.base import (
    OUTPUT_FENCE,
    Action,
    Execute,
    Finish,
    Trajectory,
    last_python_block,
)


@dataclass(frozen=True)
class PotStrategy:
    name: str = "pot"
    runs_code: ClassVar[bool] = True

    @classmethod
    def from_options(cls, **_: Any) -> PotStrategy:
        return cls()

    def render_prompt(self, question: str, *, style: str, tokenizer: Any) -> str:
        if style != "instruct":
            raise UsageError(f"--prompt {style} exists for --mode cot only; pot uses the chat template")
        return prompts.chat_prompt(prompts.POT_SYSTEM, question, tokenizer)

    def stop_strings(self, style: str) -> tuple[str, ...]:
        return (OUTPUT_FENCE, *prompts.END_TEXTS)

    def after_generation(self, trajectory: Trajectory, completion: Completion) -> Action:
        code = last_python_block(completion.text)
        if code is None:
            return Finish(completion.finish_reason)
        return Execute(code)

    def execute(self, trajectory: Trajectory, code: str, sandbox: Any) -> Any:
        return sandbox.run_program(code)

    def after_execution(self, trajectory: Trajectory, code: str, result: Any) -> Action:
        trajectory.turns[-1] = replace(
            trajectory.turns[-1], code=code, status=result.status,
            output=result.model_output(), exec_duration_s=result.duration_s,
        )
        trajectory.program_value = result.value if result.ok else None
        return Finish(trajectory.last_completion.finish_reason)

    def final_answer(self, trajectory: Trajectory) -> str | None:
        value = (trajectory.program_value or "").strip()
        return value or None
