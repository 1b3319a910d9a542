"""Reasoning strategies by name: ``cot``, ``pot``, ``tir`` (``STRATEGIES``), the one list of modes.

Each strategy owns its prompt template, its stop strings and its per-trajectory state machine
(``qwen_math.strategies.base``); ``qwen_math.strategies.runner`` drives any of them over a
backend. ``make_strategy`` builds one from its name and the run's options (each strategy's
``from_options`` reads the ones it uses). ``MODES`` (the ``--mode`` choices) and
``MODES_WITH_CODE`` (modes that need a sandbox) derive from the registry, so a new strategy is
one module and one line here.

What it deliberately does not do: import torch, the sandbox or the grader at import time.
"""

from __future__ import annotations

from typing import Any

from qwen_math.errors import UsageError
from qwen_math.strategies.base import Strategy
from qwen_math.strategies.cot import CotStrategy
from qwen_math.strategies.pot import PotStrategy
from qwen_math.strategies.tir import TirStrategy

#: mode name -> strategy class (``from_options(**options)``, ``runs_code``).
STRATEGIES: dict[str, Any] = {
    "cot": CotStrategy,
    "pot": PotStrategy,
    "tir": TirStrategy,
}

MODES: tuple[str, ...] = tuple(STRATEGIES)
MODES_WITH_CODE: frozenset[str] = frozenset(mode for mode, cls in STRATEGIES.items() if cls.runs_code)


def make_strategy(mode: str, **options: Any) -> Strategy:
    """The strategy registered as ``mode``; unknown modes are a ``UsageError``."""
    strategy_class = STRATEGIES.get(mode)
    if strategy_class is None:
        raise UsageError(f"unknown mode {mode!r}; choose one of: {', '.join(STRATEGIES)}")
    return strategy_class.from_options(**options)


__all__ = ["MODES", "MODES_WITH_CODE", "STRATEGIES", "CotStrategy", "PotStrategy", "Strategy",
           "TirStrategy", "make_strategy"]
