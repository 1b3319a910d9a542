"""Prompt templates: the Qwen2.5-Math chat prompts, our PoT prompt, and few-shot CoT.

Two prompt styles, chosen with ``--prompt`` (``PROMPT_STYLES``):

- ``instruct`` (default): one ChatML conversation, rendered with the model tokenizer's chat
  template when it has one, else with the ChatML string below; both give byte-identical text:
  ``<|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n{question}<|im_end|>\\n``
  ``<|im_start|>assistant\\n``. The system prompts for CoT and TIR are the model card's.
- ``few-shot``: for base (non-Instruct) models, which the model card evaluates few-shot on
  GSM8K and MATH: four worked examples written for this project (not copied from any
  benchmark), each ``Question: ...`` / ``Answer: ...`` ending in ``\\boxed{}``, then the
  question. Generation stops at the next ``Question:``.

The PoT prompt (``POT_SYSTEM``): Qwen2.5-Math publishes no PoT prompt for its Instruct models.
Ours asks for exactly one ```python program that either prints the final answer as its last
output or defines ``solution()`` returning it; the sandbox's ``run_pot`` then takes the value
of ``solution()`` or the printed result. Generation stops at "```output" (the models are trained
to request execution that way), so no prose after the program is generated.

What it deliberately does not do: tokenize, sample or parse model output.
"""

from __future__ import annotations

from typing import Any

from qwen_math.errors import UsageError

#: The model card's CoT system prompt.
COT_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
#: The model card's tool-integrated reasoning system prompt.
TIR_SYSTEM = (
    "Please integrate natural language reasoning with programs to solve the problem above, "
    "and put your final answer within \\boxed{}."
)
#: Our program-of-thought system prompt (see the module docstring).
POT_SYSTEM = (
    "Please solve the problem by writing a single Python program in one ```python code block. "
    "The program must compute the final answer: either print it as the last line of output or "
    "define a function solution() that returns it. Prefer exact arithmetic (fractions, sympy). "
    "Do not write anything after the program."
)

CHATML = "<|im_start|>{role}\n{content}<|im_end|>\n"
GENERATION_PROMPT = "<|im_start|>assistant\n"

#: Worked examples for the few-shot CoT prompt (written for this project).
FEW_SHOT_EXEMPLARS: tuple[tuple[str, str], ...] = (
    (
        "A bakery sells muffins in boxes of 6. Priya buys 4 boxes and gives away 9 muffins. "
        "How many muffins does she have left?",
        "4 boxes of 6 muffins hold 4 * 6 = 24 muffins. After giving away 9 she has "
        "24 - 9 = 15 muffins. The answer is $\\boxed{15}$.",
    ),
    (
        "Find all real $x$ such that $2x^2 - 7x + 3 = 0$.",
        "Factor: $2x^2 - 7x + 3 = (2x - 1)(x - 3)$. A product is zero when a factor is zero, "
        "so $x = \\frac{1}{2}$ or $x = 3$. The answer is $\\boxed{\\frac{1}{2}, 3}$.",
    ),
    (
        "What is the remainder when $7^{2024}$ is divided by $5$?",
        "Powers of 7 modulo 5 cycle: $7 \\equiv 2$, and $2^1, 2^2, 2^3, 2^4 \\equiv 2, 4, 3, 1$, "
        "a cycle of length 4. Since $2024 = 4 \\cdot 506$, $7^{2024} \\equiv 2^{4 \\cdot 506} "
        "\\equiv 1 \\pmod 5$. The answer is $\\boxed{1}$.",
    ),
    (
        "A rectangle has perimeter 30 and its length is twice its width. What is its area?",
        "Let the width be $w$; the length is $2w$. The perimeter is $2(w + 2w) = 6w = 30$, so "
        "$w = 5$ and the length is $10$. The area is $5 \\cdot 10 = 50$. "
        "The answer is $\\boxed{50}$.",
    ),
)
FEW_SHOT_STOP = ("\n\nQuestion:",)
#: End-of-text strings the official harness stops on in every prompt type (the backends also
#: end at the <|im_end|> / <|endoftext|> token ids).
END_TEXTS = ("</s>", "<|im_end|>", "<|endoftext|>")


def chatml_prompt(system: str, question: str) -> str:
    """The ChatML conversation, written out: system, user, then the assistant's turn."""
    return (
        CHATML.format(role="system", content=system)
        + CHATML.format(role="user", content=question)
        + GENERATION_PROMPT
    )


def chat_prompt(system: str, question: str, tokenizer: Any = None) -> str:
    """The chat prompt through the tokenizer's chat template (ChatML without one)."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        return chatml_prompt(system, question)
    messages = [{"role": "system", "content": system}, {"role": "user", "content": question}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def few_shot_prompt(question: str) -> str:
    """The few-shot CoT prompt for base models."""
    shots = "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in FEW_SHOT_EXEMPLARS)
    return f"{shots}Question: {question}\nAnswer:"


#: prompt style -> does it use the chat template (True) or the few-shot text (False).
PROMPT_STYLES: dict[str, str] = {
    "instruct": "chat template with the mode's system prompt (Instruct models)",
    "few-shot": "few-shot CoT examples, plain text (base models; cot mode only)",
}


def check_prompt_style(style: str | None) -> str:
    """The style name (``instruct`` when None); unknown names are a ``UsageError``."""
    style = style or "instruct"
    if style not in PROMPT_STYLES:
        raise UsageError(f"unknown --prompt {style!r}; choose one of: {', '.join(PROMPT_STYLES)}")
    return style
