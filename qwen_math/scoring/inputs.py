"""The exact text a reward model reads for one sample.

- ORM (Qwen2.5-Math-RM-72B usage): ``apply_chat_template([system, user: question, assistant:
  the whole response], tokenize=False, add_generation_prompt=False)``, the response being every
  turn's text plus what was appended after its program (TIR/PoT outputs included); tokenized
  without special tokens; the score is read at the last token.
- PRM (Qwen2.5-Math-PRM-7B usage): the response is split into steps on ``"\\n\\n"`` (empty
  steps dropped) and each step is followed by the ``<extra_0>`` separator token; the PRM's
  2-class head is read at every separator, P(correct) per step.

What it deliberately does not do: tokenize or load anything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from qwen_math.prompts import COT_SYSTEM
from qwen_math.scoring.checkpoint import STEP_SEPARATOR

STEP_SPLIT = "\n\n"


def response_steps(response: str) -> list[str]:
    """The PRM's steps: the response split on blank lines, empty pieces dropped (at least one)."""
    steps = [step for step in response.split(STEP_SPLIT) if step.strip()]
    return steps or [response]


def orm_response(response: str) -> str:
    return response


def prm_response(response: str) -> str:
    return "".join(step + STEP_SEPARATOR for step in response_steps(response))


#: kind -> how the assistant turn is written.
ASSISTANT_TEXT: dict[str, Callable[[str], str]] = {"orm": orm_response, "prm": prm_response}


def reward_messages(question: str, response: str, *, kind: str, system: str = COT_SYSTEM) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question},
            {"role": "assistant", "content": ASSISTANT_TEXT[kind](response)}]


def reward_text(tokenizer: Any, question: str, response: str, *, kind: str, system: str = COT_SYSTEM) -> str:
    """The full chat text the reward model reads for one sample."""
    return tokenizer.apply_chat_template(reward_messages(question, response, kind=kind, system=system),
                                         tokenize=False, add_generation_prompt=False)


def common_prefix_length(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the longest token prefix all ``sequences`` share, leaving each at least one
    token of its own (the score is read at a sequence's last token)."""
    if not sequences:
        return 0
    limit = min(len(s) for s in sequences) - 1
    first = sequences[0]
    length = 0
    while length < limit and all(s[length] == first[length] for s in sequences):
        length += 1
    return max(length, 0)
