"""Prompts: the CoT and TIR chat prompts are byte-identical to the official format."""

from __future__ import annotations

import pytest

from qwen_math import prompts
from qwen_math.errors import UsageError
from qwen_math.strategies import make_strategy

QUESTION = "Find the value of $x$ such that $\\sqrt{x + 7} = 9$."

#: The official prompts, written out (model card / Qwen2.5-Math evaluation code).
OFFICIAL = {
    "cot": (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within "
        "\\boxed{}.<|im_end|>\n<|im_start|>user\n" + QUESTION + "<|im_end|>\n<|im_start|>assistant\n"
    ),
    "tir": (
        "<|im_start|>system\nPlease integrate natural language reasoning with programs to solve "
        "the problem above, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>user\n" + QUESTION + "<|im_end|>\n<|im_start|>assistant\n"
    ),
}


# --- official format, with and without the tokenizer's chat template ------------------------
@pytest.mark.parametrize("mode", ["cot", "tir"])
def test_prompt_without_tokenizer_is_official(mode):
    strategy = make_strategy(mode, max_tool_calls=4)
    assert strategy.render_prompt(QUESTION, style="instruct", tokenizer=None) == OFFICIAL[mode]


@pytest.mark.parametrize("mode", ["cot", "tir"])
def test_prompt_through_chat_template_is_official(mode, qwen_tokenizer):
    strategy = make_strategy(mode, max_tool_calls=4)
    assert strategy.render_prompt(QUESTION, style="instruct", tokenizer=qwen_tokenizer) == OFFICIAL[mode]


@pytest.mark.parametrize("mode", ["cot", "pot", "tir"])
def test_chat_prompt_encodes_as_chatml_tokens(mode, qwen_tokenizer):
    rendered = make_strategy(mode, max_tool_calls=4).render_prompt(QUESTION, style="instruct", tokenizer=qwen_tokenizer)
    ids = qwen_tokenizer.encode(rendered, add_special_tokens=False)
    assert ids[0] == 151644 and ids[-3:] == [151644, 77091, 198]  # <|im_start|> assistant \n
    assert ids.count(151645) == 2  # two <|im_end|>: system and user


def test_pot_prompt_is_ours_and_asks_for_a_program():
    rendered = make_strategy("pot", max_tool_calls=4).render_prompt(QUESTION, style="instruct", tokenizer=None)
    assert rendered == prompts.chatml_prompt(prompts.POT_SYSTEM, QUESTION)
    assert "solution()" in prompts.POT_SYSTEM and "```python" in prompts.POT_SYSTEM


# --- stop strings ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mode,style,stop",
    [
        # the official qwen25-math-cot stops only on the end-of-text strings; prompt type cot
        # (our few-shot prompt) adds "\n\nQuestion:"; PoT also stops where its program ends
        ("cot", "instruct", ("</s>", "<|im_end|>", "<|endoftext|>")),
        ("cot", "few-shot", ("</s>", "<|im_end|>", "<|endoftext|>", "\n\nQuestion:")),
        ("pot", "instruct", ("```output", "</s>", "<|im_end|>", "<|endoftext|>")),
        ("tir", "instruct", ("```output",)),
    ],
)
def test_stop_strings(mode, style, stop):
    assert make_strategy(mode, max_tool_calls=4).stop_strings(style) == stop


# --- few-shot CoT for base models ------------------------------------------------------------
def test_few_shot_prompt_layout():
    rendered = prompts.few_shot_prompt(QUESTION)
    assert rendered.count("Question: ") == len(prompts.FEW_SHOT_EXEMPLARS) + 1
    assert rendered.endswith(f"Question: {QUESTION}\nAnswer:")
    assert "<|im_start|>" not in rendered
    for _, answer in prompts.FEW_SHOT_EXEMPLARS:
        assert "\\boxed{" in answer


def test_few_shot_exemplars_extract_to_their_boxed_answer():
    from eval.extract import extract_answer

    answers = [extract_answer(answer) for _, answer in prompts.FEW_SHOT_EXEMPLARS]
    assert answers == ["15", "\\frac{1}{2}, 3", "1", "50"]


@pytest.mark.parametrize("style,expected", [(None, "instruct"), ("instruct", "instruct"), ("few-shot", "few-shot")])
def test_prompt_style_names(style, expected):
    assert prompts.check_prompt_style(style) == expected


def test_unknown_prompt_style():
    with pytest.raises(UsageError, match="unknown --prompt 'chat'; choose one of: instruct, few-shot"):
        prompts.check_prompt_style("chat")
