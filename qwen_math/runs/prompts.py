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

``dataset_prompts`` renders every problem's full prompt the way ``eval`` does, few-shot
exemplars included (``qwen-math prompts``).

What it deliberately does not do: load a tokenizer or a model (it runs before the backend
starts, so a refused resume costs nothing).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

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


def dataset_prompts(datasets: Iterable[str], *, suite: str | None, mode: str, setting: Any,
                    data_dir: str | None, split: str = "test", limit: int | None = None,
                    few_shot_file: str | None = None,
                    style: str | None = None) -> Iterator[tuple[str, Any, str]]:
    """``(dataset, problem, prompt)`` for every problem, exactly as ``eval`` renders it.

    Every row is listed, a row without gold too (``eval`` excludes those from scoring).
    """
    from eval.datasets import load_benchmark
    from qwen_math.prompts import check_prompt_style
    from qwen_math.strategies import make_strategy
    from qwen_math.suites import few_shot_plan, load_plan_exemplars, prepare_prompts

    style = check_prompt_style(style)
    datasets = tuple(datasets)
    plan = few_shot_plan(datasets, suite=suite, mode=mode, setting=setting)
    check_few_shot_style(plan, style)
    exemplars, source = load_plan_exemplars(plan, few_shot_file, data_dir)
    strategy = make_strategy(mode, max_tool_calls=1)  # the prompt does not depend on it
    for name in datasets:
        problems = load_benchmark(name, split=split, limit=limit, data_dir=data_dir)
        dataset = problems[0].dataset if problems else name
        prepared = prepare_prompts(dataset, problems, plan[name], exemplars, source=source or "")
        for problem in problems:
            text = prepared.user_texts.get(problem.problem_id, problem.question)
            yield dataset, problem, strategy.render_prompt(text, style=style, tokenizer=None)


def check_few_shot_style(plan: Mapping[str, Any], style: str) -> None:
    """The official exemplars go into the instruct prompt; ``--prompt few-shot`` has its own."""
    from qwen_math.errors import UsageError

    if style != "instruct" and any(setting.active for setting in plan.values()):
        raise UsageError("--num-shots / --adapt-few-shot / --suite exemplars need the instruct "
                         "prompt; leave --prompt few-shot out")
