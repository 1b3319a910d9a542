"""Tool-integrated reasoning: prose and programs interleaved, each program run in a sandbox.

The state machine of one trajectory (``TirStrategy``), one step per event:

1. generate until "```output" or the end of the answer;
2. the generation neither stopped at "```output" nor ended (EOS) right after a closed
   ```python block (the official evaluation runs such a block too), or its prose already holds
   a ``\\boxed{}`` final answer: finish with that reason;
3. it asked for execution but its text has no complete ```python block: finish;
4. ``max_tool_calls`` programs have already run: finish with ``tool_limit``;
5. run the last ```python block of this turn in the trajectory's own sandbox ``Session``
   (state persists between cells, like a notebook), in a worker thread;
6. append "```output\\n<output>\\n```\\n" (fences inside the output escaped, so it cannot open
   or close a block) and go back to 1.

The runner checks the 4096-token context before each generation and finishes the trajectory
with ``context`` when the transcript no longer fits.

What it deliberately does not do: schedule (the runner does), or decide the answer from a
program's output (the answer is extracted from the transcript, as for CoT).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from qwen_math import prompts
from qwen_math.backends.base import Completion
from qwen_math.config import DEFAULT_MAX_TOOL_CALLS
from qwen_math.errors import UsageError
from qwen_math.strategies.base import (
    OUTPUT_FENCE,
    Action,
    Execute,
    Finish,
    Generate,
    Trajectory,
    last_python_block,
)


@dataclass(frozen=True)
class TirStrategy:
    max_tool_calls: int = DEFAULT_MAX_TOOL_CALLS
    name: str = "tir"

    def __post_init__(self) -> None:
        if not isinstance(self.max_tool_calls, int) or self.max_tool_calls < 0:
            raise UsageError(f"max_tool_calls must be an integer >= 0, got {self.max_tool_calls!r}")

    def render_prompt(self, question: str, *, style: str, tokenizer: Any) -> str:
        if style != "instruct":
            raise UsageError(f"--prompt {style} exists for --mode cot only; tir uses the chat template")
        return prompts.chat_prompt(prompts.TIR_SYSTEM, question, tokenizer)

    def stop_strings(self, style: str) -> tuple[str, ...]:
        return (OUTPUT_FENCE,)

    def after_generation(self, trajectory: Trajectory, completion: Completion) -> Action:
        # 2) not a request for execution, or a final answer already given
        if not requests_execution(completion) or has_final_answer(completion.text):
            return Finish(completion.finish_reason)
        # 3) nothing to run
        code = last_python_block(completion.text)
        if code is None:
            return Finish(completion.finish_reason)
        # 4) the tool budget is spent
        if trajectory.tool_calls >= self.max_tool_calls:
            return Finish("tool_limit")
        # 5) run it
        return Execute(code)

    def execute(self, trajectory: Trajectory, code: str, sandbox: Any) -> Any:
        if trajectory.session is None:
            trajectory.session = sandbox.open_session(trajectory.resources)
        return trajectory.session.run(code)

    def after_execution(self, trajectory: Trajectory, code: str, result: Any) -> Action:
        # 6) splice the output into the transcript and continue
        output = result.model_output()
        turn = trajectory.turns[-1]
        separator = "" if turn.text.endswith("\n") else "\n"
        trajectory.turns[-1] = replace(
            turn, code=code, status=result.status, output=output,
            appended=separator + output_block(output), exec_duration_s=result.duration_s,
        )
        return Generate()

    def final_answer(self, trajectory: Trajectory) -> str | None:
        from eval.extract import extract_answer

        return extract_answer(trajectory.transcript, dataset=trajectory.dataset)


def output_block(output: str) -> str:
    """The text appended after a program ran: its output in an ```output block."""
    from sandbox import escape_fences

    return f"{OUTPUT_FENCE}\n{escape_fences(output.rstrip())}\n```\n"


def requests_execution(completion: Completion) -> bool:
    """Stopped at "```output", or ended (EOS) with a closed ```python block as its last text."""
    if completion.stop_string == OUTPUT_FENCE:
        return True
    return completion.finish_reason == "eos" and ends_with_python_block(completion.text)


def ends_with_python_block(text: str) -> bool:
    stripped = text.rstrip()
    code = last_python_block(stripped)
    return code is not None and stripped.endswith("```") and stripped.rfind("```python") > stripped.rfind("```output")


def has_final_answer(text: str) -> bool:
    """Whether the prose of ``text`` (code blocks cut out) holds a complete ``\\boxed{}``."""
    from eval.extract import boxed_spans, split_tool_blocks

    prose, _ = split_tool_blocks(text)
    return bool(boxed_spans(prose))
