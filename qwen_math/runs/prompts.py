"""The prompt/template hash of a run: what the strategy sends the model, minus the question.

The hash covers the strategy's rendered prompt for a fixed canary question (written out with
the ChatML fallback, i.e. the project's own system prompts and few-shot examples) and its stop
strings, for the run's mode and prompt style. The model's own chat template is part of the
model checksum (``tokenizer_config.json`` / ``*.jinja`` are hashed with the weights), so the
two together cover the exact text every sample starts from.

What it deliberately does not do: load a tokenizer or a model (it runs before the backend
starts, so a refused resume costs nothing).
"""

from __future__ import annotations

import hashlib
import json

CANARY_QUESTION = "What is 1 + 1? (qwen-math prompt fingerprint)"


def prompt_hash(mode: str, style: str | None) -> str:
    from qwen_math.prompts import check_prompt_style
    from qwen_math.strategies import make_strategy

    style = check_prompt_style(style)
    strategy = make_strategy(mode, max_tool_calls=1)  # the prompt does not depend on it
    rendered = strategy.render_prompt(CANARY_QUESTION, style=style, tokenizer=None)
    blob = json.dumps({"mode": mode, "style": style, "prompt": rendered,
                       "stop": list(strategy.stop_strings(style))}, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()
