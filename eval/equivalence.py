"""Mathematical equivalence of two final answers.

``judge(pred, gold)`` returns a status (``correct | wrong | invalid | timeout``) and
``is_equivalent`` is ``judge(...) == "correct"``. The comparison runs from cheap to costly:

1. refuse absurd inputs (exponent towers, huge literals, 10^6-character answers): ``invalid``;
2. normalise both sides (``eval.normalize``) and compare spellings;
3. parse each side into a small answer tree — list, set, tuple, interval, union, matrix,
   equation, relation, time, base-``b`` numeral, ``\\pm`` pair, number — and compare the trees
   (sets order-free, tuples and intervals in order with their brackets, matrices cell by cell,
   ``x=3`` against ``3`` when the left side is a lone symbol, equations up to a non-zero
   factor);
4. numbers compare exactly as rationals; a tolerance of half a unit in the last place only when
   one side is a decimal approximation; a ``%`` on one side may be dropped, and read as /100
   only where it is written;
5. whatever is left goes to SymPy through ``latex2sympy2_extended`` (imported lazily), with
   ``simplify`` under a deadline.

The in-process deadline uses ``SIGALRM`` and therefore only works on the main thread and
cannot interrupt C code; the hard deadline is ``eval.grade``'s worker pool, which kills the
process.

Module layout: this module holds the verbs, the pre-screen and the cheap string checks; the
answer tree is ``eval.answer_tree``, its parsers ``eval.answer_parsers``, the comparison rules
``eval.comparison`` and the SymPy bridge (with the deadline) ``eval.sympy_bridge``.

What it deliberately does not do: extract answers from responses (``eval.extract``)
or run in parallel (``eval.grade``).
"""

from __future__ import annotations

import logging
import math
import re
from fractions import Fraction

from eval.answer_parsers import DECIMAL, parse_tree
from eval.comparison import nodes_equal
from eval.normalize import (
    DECIMAL_COMMA,
    canonical_text,
    normalize_answer,
)
from eval.sympy_bridge import ComparisonTimeout, deadline

log = logging.getLogger(__name__)


MAX_ANSWER_CHARS = 2000
PLAIN_INTEGER = re.compile(r"\s*-?\d{1,50}\s*")
MAX_EXPONENT = 100_000
MAX_FACTORIAL = 10_000



class AnswerRefused(Exception):
    """The pre-screen refused an answer as absurd (exponent tower, huge literal, too long)."""



# --- pre-screen -------------------------------------------------------------------------------

EXPONENT = re.compile(r"(?:\^|\*\*)\s*(\{|\(|-?\d+)")
FACTORIAL = re.compile(r"(\d+)\s*!")


def exponent_text(text: str, start: int) -> str:
    """The exponent starting at ``start`` (a braced/parenthesised group or a bare integer)."""
    opener = text[start]
    if opener not in "{(":
        return re.match(r"-?\d+", text[start:]).group(0)
    closer = "}" if opener == "{" else ")"
    depth = 0
    for i in range(start, len(text)):
        if text[i] == opener:
            depth += 1
        elif text[i] == closer:
            depth -= 1
            if depth == 0:
                return text[start + 1:i]
    return text[start + 1:]


def tower_value(text: str) -> float:
    """log10-free estimate of an integer exponent; ``inf`` when it is a tower of powers."""
    text = text.strip().strip("{}()")
    if re.fullmatch(r"-?\d+", text):
        return abs(int(text)) if len(text) < 12 else math.inf
    match = re.fullmatch(r"(\d+)\s*(?:\^|\*\*)\s*(.+)", text)
    if match:
        base = int(match.group(1)) if len(match.group(1)) < 12 else math.inf
        exponent = tower_value(match.group(2))
        if base <= 1:
            return base
        if exponent * math.log10(base) > 15:
            return math.inf
        return float(base) ** exponent
    return 0.0  # symbolic exponent: SymPy leaves it unevaluated


def prescreen(answer: str) -> None:
    """Raise ``AnswerRefused`` for answers SymPy could hang on or that no one writes."""
    if len(answer) > MAX_ANSWER_CHARS:
        raise AnswerRefused(f"answer of {len(answer)} characters (limit {MAX_ANSWER_CHARS})")
    for match in EXPONENT.finditer(answer):
        exponent = exponent_text(answer, match.start(1))
        if tower_value(exponent) > MAX_EXPONENT:
            raise AnswerRefused(f"exponent {exponent[:40]!r} is too large to evaluate")
    for match in FACTORIAL.finditer(answer):
        if len(match.group(1)) > 5 or int(match.group(1)) > MAX_FACTORIAL:
            raise AnswerRefused(f"factorial of {match.group(1)[:20]} is too large to evaluate")
    if re.search(r"\d{400,}", answer):
        raise AnswerRefused("a literal of more than 400 digits")


# --- public -----------------------------------------------------------------------------------


def judge(pred: str | None, gold: str | None, *, timeout: float | None = 5.0) -> str:
    """``correct``, ``wrong``, ``invalid`` (pre-screen refused) or ``timeout``."""
    if pred is None or gold is None or not str(pred).strip() or not str(gold).strip():
        return "wrong"
    pred, gold = str(pred), str(gold)
    if pred.strip() == gold.strip() and len(pred) <= MAX_ANSWER_CHARS:
        return "correct"  # the cheapest check first: the same spelling
    if PLAIN_INTEGER.fullmatch(pred) and PLAIN_INTEGER.fullmatch(gold):
        return "correct" if int(pred) == int(gold) else "wrong"
    try:
        prescreen(pred)
        prescreen(gold)
    except AnswerRefused as exc:
        log.debug("refused: %s", exc)
        return "invalid"
    try:
        with deadline(timeout):
            return "correct" if answers_equal(pred, gold) else "wrong"
    except ComparisonTimeout:
        return "timeout"
    except (RecursionError, MemoryError):
        return "invalid"
    except Exception:  # a bug of ours must not crash a batch: logged, and never "correct"
        log.exception("comparing %r with %r failed", pred[:200], gold[:200])
        return "invalid"


def answers_equal(pred: str, gold: str) -> bool:
    norm_pred, norm_gold = normalize_answer(pred), normalize_answer(gold)
    if not norm_pred.text or not norm_gold.text:
        return False
    if norm_pred.percent != norm_gold.percent and (norm_pred.decorated or norm_gold.decorated):
        return False  # 10% is not 10 edges: a percent sign is dropped only against a bare number
    if None not in (norm_pred.unit_power, norm_gold.unit_power) and norm_pred.unit_power != norm_gold.unit_power:
        return False  # 15 cm^3 is not 15 cm^2 (a bare 15 still is)
    if canonical_text(norm_pred.text) == canonical_text(norm_gold.text):
        return True
    if decimal_comma_equal(norm_pred.text, norm_gold.text):
        return True
    return nodes_equal(parse_tree(norm_pred), parse_tree(norm_gold))


def decimal_comma_equal(pred: str, gold: str) -> bool:
    """``1,22`` against the decimal ``1.22``: a comma read as a decimal point, only when the
    other side is a decimal number with exactly those digits (a pair never equals a scalar)."""
    for comma, point in ((pred, gold), (gold, pred)):
        if DECIMAL_COMMA.fullmatch(comma) and DECIMAL.fullmatch(point) and "." in point:
            return Fraction(comma.replace(",", ".")) == Fraction(point)
    return False


def is_equivalent(pred: str | None, gold: str | None, *, timeout: float = 5.0) -> bool:
    """True when ``pred`` and ``gold`` denote the same mathematical answer."""
    return judge(pred, gold, timeout=timeout) == "correct"
