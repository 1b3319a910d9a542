"""eval: answer extraction, equivalence grading, benchmark loading and voting metrics.

Never imports ``qwen_math`` or torch. Inside the project write ``from eval import grade``
(``eval`` is also a Python builtin; never shadow it with a bare ``import eval``).

The public verbs are importable from here too (``from eval import extract_answer``); each is
loaded on first use, so ``import eval`` stays fast and SymPy-free.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> module that defines it (imported lazily by ``__getattr__``).
EXPORTS = {
    "extract_answer": "eval.extract",
    "is_equivalent": "eval.equivalence",
    "Grade": "eval.grade",
    "GraderPool": "eval.grade",
    "grade_response": "eval.grade",
    "grade_batch": "eval.grade",
    "Problem": "eval.datasets",
    "DATASETS": "eval.datasets",
    "load_benchmark": "eval.datasets",
    "majority_vote": "eval.metrics",
    "vote_table": "eval.metrics",
    "pass_at_k": "eval.metrics",
    "maj_at_k": "eval.metrics",
    "summarize": "eval.metrics",
    "DataError": "eval.errors",
    "DataUnavailable": "eval.errors",
}

__all__ = sorted(EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in EXPORTS:
        raise AttributeError(f"module 'eval' has no attribute {name!r}")
    return getattr(importlib.import_module(EXPORTS[name]), name)
