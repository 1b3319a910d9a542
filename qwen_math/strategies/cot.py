"""Chain of thought: one generation, the answer from its ``\\boxed{}``.

Instruct models get the model card's CoT system prompt through the chat template; base models
(``--prompt few-shot``) get the project's few-shot examples and stop at the next question.
Stop strings follow the official harness: prompt type ``qwen25-math-cot`` stops only on the
end-of-text strings ``</s>``, ``<|im_end|>``, ``<|endoftext|>``; the few-shot prompt (the
official ``cot`` type) adds "\n\nQuestion:".

What it deliberately does not do: run code (a ```python block in a CoT answer is just text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from qwen_math import prompts
from qwen_math.backends.base import Completion
from qwen_math.strategies.base import Action, Finish, Trajectory


@dataclass(frozen=True)
class CotStrategy:
    name: str = "cot"
    runs_code: ClassVar[bool] = False

    @classmethod
    def from_options(cls, **_: Any) -> CotStrategy:
        return cls()

    def render_prompt(self, question: str, *, style: str, tokenizer: Any) -> str:
        if style == "few-shot":
            return prompts.few_shot_prompt(question)
        return prompts.chat_prompt(prompts.COT_SYSTEM, question, tokenizer)

    def stop_strings(self, style: str) -> tuple[str, ...]:
        return (*prompts.END_TEXTS, *prompts.FEW_SHOT_STOP) if style == "few-shot" else prompts.END_TEXTS

    def after_generation(self, trajectory: Trajectory, completion: Completion) -> Action:
        return Finish(completion.finish_reason)

    def execute(self, trajectory: Trajectory, code: str, sandbox: Any) -> Any:
        raise AssertionError("CoT never executes code")

    def after_execution(self, trajectory: Trajectory, code: str, result: Any) -> Action:
        raise AssertionError("CoT never executes code")

    def final_answer(self, trajectory: Trajectory) -> str | None:
        from eval.extract import extract_answer

        return extract_answer(trajectory.transcript, dataset=trajectory.dataset)
