"""The prompt/template hash of a run: what the strategy sends the model, minus the question.

The hash covers the strategy's rendered prompt for a fixed canary question (written out with
the ChatML fallback, i.e. the project's own system prompts and few-shot examples) and its stop
strings, for the run's mode and prompt style. The model's own chat template is part of the
model checksum (``tokenizer_config.json`` / ``*.jinja`` are hashed with the weights), so the
two together cover the exact text every sample starts from. The end-of-text stop strings
every mode shares (``prompts.END_TEXTS``: ``</s>``, ``<|im_end|>``, ``<|endoftext|>``, added to
match the official harness) are left out, so runs made before them still resume; a TIR run's
stop strings are also recorded, with every other protocol value, under ``tir.*`` in the
fingerprint.

What it deliberately does not do: load a tokenizer or a model (it runs before the backend
starts, so a refused resume costs nothing).
"""

from __future__ import annotations

import hashlib
import json

CANARY_QUESTION = "What is 1 + 1? (qwen-math prompt fingerprint)"


def prompt_hash(mode: str, style: str | None, **strategy_options: object) -> str:
    from qwen_math.prompts import END_TEXTS, check_prompt_style
    from qwen_math.strategies import make_strategy

    style = check_prompt_style(style)
    strategy = make_strategy(mode, **strategy_options)
    rendered = strategy.render_prompt(CANARY_QUESTION, style=style, tokenizer=None)
    stop = [s for s in strategy.stop_strings(style) if s not in END_TEXTS]
    blob = json.dumps({"mode": mode, "style": style, "prompt": rendered, "stop": stop}, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()
