"""Tool-integrated reasoning: prose and programs interleaved, each program run in a sandbox.

The state machine of one trajectory (``TirStrategy``), one step per event. Every rule it
applies comes from the trajectory's TIR protocol (``qwen_math.strategies.tir_protocols``:
``qwen-agent``, ``math-eval`` or ``notebook``):

1. generate until one of the protocol's stop strings or the end of the answer (under
   ``math-eval`` the generation is right-stripped, as that harness does);
2. the protocol's run rule says this turn does not ask for execution: finish with the
   generation's own reason;
3. the protocol's program selection finds nothing to run: finish;
4. the tool budget is spent (``max_tool_calls`` if given, else the protocol's round count):
   finish with ``tool_limit`` without running it;
5. run the program with the protocol's execution semantics (persistent session, fresh state,
   math-eval's replay and auto mode) under its cell timeout, in a worker thread;
6. append "```output\\n<what the protocol shows>\\n```\\n"; when that was the last program
   the protocol allows and the protocol ends there (``qwen-agent``, ``math-eval``), append its
   end marker and finish with ``tool_limit``; else go back to 1.

The runner checks the 4096-token context before each generation and finishes the trajectory
with ``context`` when the transcript no longer fits. The answer is extracted from the whole
transcript (``extract_from="full"``) or, like ``math-eval``'s harness, from the transcript
cut at the first stop string (``"first-turn"``).

What it deliberately does not do: schedule (the runner does), or decide the answer from a
program's output (the answer is extracted from the transcript, as for CoT).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, ClassVar

from qwen_math import prompts
from qwen_math.backends.base import Completion
from qwen_math.config import positive_seconds
from qwen_math.errors import UsageError
from qwen_math.strategies.base import Action, Execute, Finish, Generate, Trajectory
from qwen_math.strategies.tir_protocols import (
    DEFAULT_PROTOCOL,
    EXECUTIONS,
    QWEN_AGENT,
    CellOutcome,
    TirProtocol,
    check_extract_from,
    first_turn_text,
    get_protocol,
    output_block,
)


@dataclass(frozen=True)
class TirStrategy:
    protocol: TirProtocol = QWEN_AGENT
    max_tool_calls: int | None = None  # None: the protocol's own round count
    tool_timeout_s: float | None = None  # None: the protocol's cell timeout
    extract_from: str = "full"
    name: str = "tir"
    runs_code: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.max_tool_calls is not None and (
                not isinstance(self.max_tool_calls, int) or isinstance(self.max_tool_calls, bool)
                or self.max_tool_calls < 0):
            raise UsageError(f"max_tool_calls must be an integer >= 0, got {self.max_tool_calls!r}")
        if self.tool_timeout_s is not None:
            positive_seconds("tool_timeout", self.tool_timeout_s)
        check_extract_from(self.extract_from)

    @classmethod
    def from_options(cls, *, max_tool_calls: int | None = None, tir_protocol: str = DEFAULT_PROTOCOL,
                     tool_timeout: float | None = None, extract_from: str = "full", **_: Any) -> TirStrategy:
        return cls(get_protocol(tir_protocol), max_tool_calls, tool_timeout, extract_from)

    @property
    def tool_limit(self) -> int:
        return self.protocol.max_tool_calls if self.max_tool_calls is None else self.max_tool_calls

    @property
    def timeout_s(self) -> float:
        return self.protocol.timeout_s if self.tool_timeout_s is None else self.tool_timeout_s

    def settings(self) -> dict[str, Any]:
        """Every value this strategy runs with (the protocol's, with the user's overrides)."""
        return {**self.protocol.to_json(), "max_tool_calls": self.tool_limit,
                "timeout_s": self.timeout_s, "extract_from": self.extract_from}

    def render_prompt(self, question: str, *, style: str, tokenizer: Any) -> str:
        if style != "instruct":
            raise UsageError(f"--prompt {style} exists for --mode cot only; tir uses the chat template")
        return prompts.chat_prompt(prompts.TIR_SYSTEM, question, tokenizer)

    def stop_strings(self, style: str) -> tuple[str, ...]:
        return self.protocol.stop

    def after_generation(self, trajectory: Trajectory, completion: Completion) -> Action:
        protocol = self.protocol
        # 1) the text as the protocol keeps it
        turn = trajectory.turns[-1]
        if protocol.rstrip_generation and turn.text != turn.text.rstrip():
            turn = trajectory.turns[-1] = replace(turn, text=turn.text.rstrip())
        # 2) not a request for execution
        if not protocol.requests_execution(completion, turn.text):
            return Finish(completion.finish_reason)
        # 3) nothing to run
        program = protocol.select_program(trajectory.next_prompt, turn.text)
        if program is None:
            return Finish(completion.finish_reason)
        # 4) the tool budget is spent
        if trajectory.tool_calls >= self.tool_limit:
            return Finish("tool_limit")
        # 5) run it
        return Execute(program)

    def execute(self, trajectory: Trajectory, code: str, sandbox: Any) -> CellOutcome:
        refusal = self.protocol.refusal(code)
        if refusal is not None:
            return CellOutcome(code, "error", "", refusal, 0.0)
        return EXECUTIONS[self.protocol.execution](code, trajectory, sandbox, self.timeout_s)

    def after_execution(self, trajectory: Trajectory, code: str, result: CellOutcome) -> Action:
        # 6) splice what the protocol shows into the transcript; the last allowed program may end it
        shown = self.protocol.show(result)
        turn = trajectory.turns[-1]
        separator = "" if turn.text.endswith("\n") else "\n"
        ends = self.protocol.last_call_ends and trajectory.tool_calls >= self.tool_limit
        appended = separator + output_block(shown) + (self.protocol.limit_marker if ends else "")
        trajectory.turns[-1] = replace(
            turn, code=code, status=result.status, output=result.notebook_output(),
            appended=appended, exec_duration_s=result.duration_s,
        )
        return Finish("tool_limit") if ends else Generate()

    def final_answer(self, trajectory: Trajectory) -> str | None:
        from eval.extract import extract_answer

        text = trajectory.transcript
        if self.extract_from == "first-turn":
            text = first_turn_text(text, self.protocol.stop)
        return extract_answer(text, dataset=trajectory.dataset)
