"""Reasoning strategies by name: ``cot``, ``pot``, ``tir`` (``STRATEGIES``).

Each strategy owns its prompt template, its stop strings and its per-trajectory state machine
(``qwen_math.strategies.base``); ``qwen_math.strategies.runner`` drives any of them over a
backend. ``make_strategy`` builds one from its name.

What it deliberately does not do: import torch, the sandbox or the grader at import time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from qwen_math.errors import UsageError
from qwen_math.strategies.base import Strategy
from qwen_math.strategies.cot import CotStrategy
from qwen_math.strategies.pot import PotStrategy
from qwen_math.strategies.tir import TirStrategy

#: mode name -> factory taking the run's options (each reads the ones it uses).
STRATEGIES: dict[str, Callable[..., Strategy]] = {
    "cot": lambda **options: CotStrategy(),
    "pot": lambda **options: PotStrategy(),
    "tir": lambda *, max_tool_calls, **options: TirStrategy(max_tool_calls=max_tool_calls),
}


def make_strategy(mode: str, **options: Any) -> Strategy:
    """The strategy registered as ``mode``; unknown modes are a ``UsageError``."""
    factory = STRATEGIES.get(mode)
    if factory is None:
        raise UsageError(f"unknown mode {mode!r}; choose one of: {', '.join(STRATEGIES)}")
    return factory(**options)


__all__ = ["STRATEGIES", "CotStrategy", "PotStrategy", "Strategy", "TirStrategy", "make_strategy"]
