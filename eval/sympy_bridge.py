"""The SymPy bridge: LaTeX leaves to SymPy (through ``latex2sympy2_extended``, imported
lazily) and their comparison (``simplify`` under an in-process deadline, numeric checks at
sample points, equations up to a factor).

The deadline uses ``SIGALRM``: main thread only, and it cannot interrupt C code; the hard
deadline is ``eval.grade``'s killable worker pool. What it deliberately does not do: parse
answers into trees (``eval.answer_parsers``) or decide which nodes to compare
(``eval.comparison``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import re
import signal
import threading
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

from eval.answer_tree import Expr, Matrix, Number, numbers_equal

log = logging.getLogger(__name__)


class ComparisonTimeout(BaseException):
    """The in-process deadline of one comparison expired (a BaseException, so that a broad
    ``except Exception`` inside SymPy cannot swallow it)."""



# --- deadline -------------------------------------------------------------------------------


@contextlib.contextmanager
def deadline(seconds: float | None) -> Iterator[None]:
    """Raise ``ComparisonTimeout`` after ``seconds`` (main thread only; else no limit)."""
    usable = seconds and seconds > 0 and threading.current_thread() is threading.main_thread()
    if not usable or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise ComparisonTimeout(f"comparison took longer than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# --- SymPy leaves -----------------------------------------------------------------------------


def to_sympy(node: Any) -> Any:
    """A SymPy object for a leaf node (raises on anything unparsable)."""
    import sympy

    if isinstance(node, Number):
        if node.places is None:
            return sympy.Rational(node.value.numerator, node.value.denominator)
        return sympy.Float(float(node.value), 30)
    if isinstance(node, Expr):
        return latex_to_sympy(node.latex)
    if isinstance(node, Matrix):
        return sympy.Matrix([[to_sympy(cell) for cell in row] for row in node.rows])
    raise TypeError(f"no SymPy form for {type(node).__name__}")


#: LaTeX that SymPy would misread (a derivative of a plain symbol evaluates to 0).
UNSAFE_FOR_SYMPY = re.compile(r"\\frac\s*\{\s*(?:d|\\partial)(?![a-zA-Z])|\\partial|\\nabla")


def latex_to_sympy(latex: str) -> Any:
    from latex2sympy2_extended import latex2sympy
    from latex2sympy2_extended.math_normalization import NormalizationConfig

    if UNSAFE_FOR_SYMPY.search(latex):
        raise ValueError("derivative notation: compared by spelling only")

    config = NormalizationConfig(basic_latex=True, units=False, malformed_operators=True,
                                 nits=False, boxed="none", equations=False)
    latex = latex.replace("\\ne ", "\\neq ")
    value = latex2sympy(latex, normalization_config=config)
    if getattr(value, "is_Matrix", False) or "matrix" in latex:
        value = value.doit() if hasattr(value, "doit") else value
    return value


FREE_LETTER = re.compile(r"(?<![\\a-zA-Z])[a-df-hj-zA-Z](?![a-zA-Z])")  # a variable (not e, i)


def has_variable(node: Any) -> bool:
    return isinstance(node, Expr) and bool(FREE_LETTER.search(re.sub(r"\\[a-zA-Z]+|_\{[^}]*\}|_\w", " ", node.latex)))


def sympy_equal(pred: Any, gold: Any) -> bool:
    if (isinstance(pred, Number) and has_variable(gold)) or (isinstance(gold, Number) and has_variable(pred)):
        return False  # a number never equals an expression in a variable; skip the parse
    approximate = [n for n in (pred, gold) if isinstance(n, Number) and n.places is not None]
    if approximate and any(isinstance(n, Expr) for n in (pred, gold)):
        return expression_matches_decimal(pred, gold)
    try:
        a, b = to_sympy(pred), to_sympy(gold)
    except ComparisonTimeout:
        raise
    except Exception as exc:  # noqa: BLE001 - unparsable LaTeX is a wrong answer, not a crash
        log.debug("sympy parse failed: %s", exc)
        return False
    return sympy_values_equal(a, b)


def expression_matches_decimal(pred: Any, gold: Any) -> bool:
    """A closed form against a written decimal: the decimal's half-unit rule (``2\\pi`` = 6.28)."""
    import sympy

    expr, decimal = (pred, gold) if isinstance(pred, Expr) else (gold, pred)
    try:
        closed_form = latex_to_sympy(expr.latex)
        value = sympy.N(closed_form, 40)
        if not (value.is_number and value.is_real and value.is_finite):
            return False
        rational = closed_form.is_rational is True
        exact = Fraction(str(sympy.nsimplify(closed_form) if rational else sympy.Rational(value)))
    except ComparisonTimeout:
        raise
    except Exception as exc:  # noqa: BLE001 - unparsable LaTeX is a wrong answer
        log.debug("numeric evaluation failed: %s", exc)
        return False
    return numbers_equal(Number(exact, None, expr.percent, irrational=not rational), decimal)


def sympy_values_equal(a: Any, b: Any) -> bool:
    import sympy

    try:
        if a == b:
            return True
        if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
            return isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase) \
                and a.shape == b.shape and all(sympy_values_equal(x, y) for x, y in zip(a, b, strict=True))
        if isinstance(a, sympy.Set) or isinstance(b, sympy.Set):
            return bool(isinstance(a, sympy.Set) and isinstance(b, sympy.Set) and a == b)
        if isinstance(a, sympy.Basic) and isinstance(b, sympy.Basic) and \
                isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr):
            return expressions_equal(a, b)
        if isinstance(a, sympy.Eq) and isinstance(b, sympy.Eq):
            return equations_proportional(a.lhs - a.rhs, b.lhs - b.rhs)
    except ComparisonTimeout:
        raise
    except Exception as exc:  # noqa: BLE001 - SymPy raises many types on odd input
        log.debug("sympy comparison failed: %s", exc)
    return False


def expressions_equal(a: Any, b: Any) -> bool:
    import sympy

    if a.free_symbols or b.free_symbols:
        if a.free_symbols != b.free_symbols or differ_at_sample_points(a, b):
            return False  # cheap rejections before simplify(), which can take minutes
        return sympy.simplify(a - b) == 0
    if a.has(sympy.Float) or b.has(sympy.Float):
        return floats_close(a, b)
    # closed-form numbers: 50 significant digits decide (distinct algebraic numbers of this
    # size never agree that far); simplify() can take minutes on nested radicals
    x, y = sympy.N(a, 50), sympy.N(b, 50)
    if not (x.is_number and y.is_number):
        return False
    if not (x.is_finite and y.is_finite):
        return bool(x == y)  # oo, -oo, zoo: only the same infinity
    if x == 0 or y == 0:  # against zero only exact reasoning: 1/2004! is not 0
        other = a if y == 0 else b
        verdict = other.doit().is_zero if hasattr(other, "doit") else other.is_zero
        return bool(verdict) if verdict is not None else bool(abs(x - y) < sympy.Float("1e-45", 50))
    scale = max(abs(x), abs(y))
    return bool(abs(x - y) <= sympy.Float("1e-40", 50) * scale)  # relative: 1/2004! != 1/2006!


#: Fixed, irrational-looking values substituted for free symbols to reject unequal expressions.
SAMPLE_POINTS = (0.7137, 1.3171, 2.2919)


def differ_at_sample_points(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` clearly take different values at a sample point (a proof of
    difference; agreement proves nothing, so it never makes two answers equal)."""
    import sympy

    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    for shift in range(len(SAMPLE_POINTS)):
        values = {s: SAMPLE_POINTS[(i + shift) % len(SAMPLE_POINTS)] + i * 0.1 for i, s in enumerate(symbols)}
        try:
            x, y = complex(sympy.N(a.subs(values), 20)), complex(sympy.N(b.subs(values), 20))
        except (TypeError, ValueError, ZeroDivisionError, OverflowError, AttributeError):
            continue
        if any(map(math.isnan, (x.real, x.imag, y.real, y.imag))) or math.isinf(abs(x)) or math.isinf(abs(y)):
            continue
        if abs(x - y) > 1e-8 * max(1.0, abs(x), abs(y)):
            return True
    return False


def floats_close(a: Any, b: Any) -> bool:
    """Decimal approximation against an exact value: half a unit in the 6th significant place."""
    import sympy

    x, y = sympy.N(a, 30), sympy.N(b, 30)
    if not (x.is_real and y.is_real):
        return bool(abs(sympy.N(a - b, 30)) < 1e-9)
    scale = max(abs(x), abs(y), 1)
    return bool(abs(x - y) <= 1e-6 * scale)


def equations_proportional(e1: Any, e2: Any) -> bool:
    import sympy

    if not e1.free_symbols or e1.free_symbols != e2.free_symbols:
        return False
    if e2 == 0:
        return e1 == 0
    ratio = sympy.simplify(e1 / e2)
    return bool(ratio.is_number and ratio != 0 and ratio.is_finite)


def sympy_relation_equal(op: str, pred_lhs: str, pred_rhs: str, gold_lhs: str, gold_rhs: str) -> bool:
    import sympy

    try:
        e1 = latex_to_sympy(pred_lhs) - latex_to_sympy(pred_rhs)
        e2 = latex_to_sympy(gold_lhs) - latex_to_sympy(gold_rhs)
    except ComparisonTimeout:
        raise
    except Exception as exc:  # noqa: BLE001
        log.debug("relation parse failed: %s", exc)
        return False
    try:
        if not e1.free_symbols or e1.free_symbols != e2.free_symbols:
            return False  # "log(0.01) = -2" is a statement, not an equation up to a factor
        if e2 == 0:
            return e1 == 0
        ratio = sympy.simplify(e1 / e2)
        if not (ratio.is_number and ratio.is_finite and ratio != 0):
            return False
        if op in ("=", "!="):
            return True
        return bool(ratio > 0)
    except ComparisonTimeout:
        raise
    except Exception as exc:  # noqa: BLE001
        log.debug("relation comparison failed: %s", exc)
        return False
