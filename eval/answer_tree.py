"""The answer tree: the small typed values a final answer parses into (number, expression,
text, time, base-``b`` numeral, sequence/set/tuple/interval, union, matrix, relation, chain),
and the equality of two numbers (exact rationals; half a unit in the last place only against a
written decimal approximation).

What it deliberately does not do: parse text into trees (``eval.answer_parsers``) or compare
them (``eval.comparison``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any


@dataclass(frozen=True)
class Number:
    """An exact rational, or a decimal approximation with ``places`` digits after the point."""

    value: Fraction
    places: int | None = None  # None: exact (integer or fraction); else a written decimal
    percent: bool = False
    irrational: bool = False  # ``value`` is a 40-digit stand-in for a closed form like 2*pi

    def readings(self) -> list[tuple[Fraction, int | None]]:
        found = [(self.value, self.places)]
        if self.percent:
            found.append((self.value / 100, None if self.places is None else self.places + 2))
        return found


@dataclass(frozen=True)
class Expr:
    latex: str
    percent: bool = False


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Time:
    hour: int
    minute: int
    half: str  # "am", "pm" or ""


@dataclass(frozen=True)
class BaseNumeral:
    """Digits in base ``base``, with a sign and a fractional part (``-221_3``, ``0.0011_2``)."""

    digits: str
    base: int

    def value(self) -> Fraction:
        """The numeral's value (raises ``ValueError`` for a digit the base does not have)."""
        sign, digits = (-1, self.digits[1:]) if self.digits.startswith("-") else (1, self.digits.lstrip("+"))
        whole, _, fraction = digits.partition(".")
        value = int(whole + fraction, self.base)
        return sign * Fraction(value, self.base ** len(fraction))


@dataclass(frozen=True)
class Seq:
    """A bracketed or bare sequence: ``kind`` is list | set | tuple | interval."""

    kind: str
    items: tuple[Any, ...]
    opener: str = ""
    closer: str = ""
    var: str = ""  # the symbol it is the value of: ``x = 1, 2``, ``x \\in [2, 5)``


@dataclass(frozen=True)
class Union:
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Matrix:
    rows: tuple[tuple[Any, ...], ...]


@dataclass(frozen=True)
class Relation:
    """``lhs op rhs`` with op one of = < <= > >= !=; ``chain`` holds a <x< b style chains."""

    op: str
    lhs: str
    rhs: str


@dataclass(frozen=True)
class Chain:
    """``low op1 var op2 high`` (e.g. ``-2 \\leq x < 7``), read as an interval of ``var``."""

    var: str
    interval: Seq
    relation: Relation | None = None  # the written form of a one-sided inequality


# --- exact numbers ---------------------------------------------------------------------------

MIN_SIGNIFICANT_DIGITS = 2


def numbers_equal(pred: Number, gold: Number) -> bool:
    irrational = pred.irrational or gold.irrational
    return any(
        values_close(p, p_places, g, g_places, irrational=irrational)
        for p, p_places in pred.readings()
        for g, g_places in gold.readings()
    )


def values_close(p: Fraction, p_places: int | None, g: Fraction, g_places: int | None, *,
                 irrational: bool = False) -> bool:
    """Exact for exact values; half a unit in the last place of the decimal approximation."""
    if p == g:
        return True
    if p_places is None and g_places is None:
        return False
    if g_places is not None and (p_places is None or p_places >= g_places):
        places = g_places  # the gold is the coarser (or only) approximation
    elif p_places is not None and g_places is None:
        places = p_places
    else:
        return False  # the prediction is coarser than the gold decimal
    approximation = g if places == g_places else p
    if significant_digits(approximation, places) < MIN_SIGNIFICANT_DIGITS:
        return False  # 0.3 is too coarse to stand for 1/3
    exact = [v for v, v_places in ((p, p_places), (g, g_places)) if v_places is None]
    if exact and not irrational and terminates(exact[0]):
        return False  # 5/4 has an exact decimal (1.25): 1.2 or 1.3 is not it
    difference = abs(p - g)
    float_noise = abs(g) * Fraction(1, 10**12)
    return difference < Fraction(1, 2 * 10**places) or difference <= float_noise  # a tie is no match


def terminates(value: Fraction) -> bool:
    """Whether ``value`` has a finite decimal expansion (denominator 2^a 5^b)."""
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    return denominator == 1


def significant_digits(value: Fraction, places: int) -> int:
    """Significant digits of a decimal written with ``places`` digits after the point."""
    digits = str(abs(round(value * 10**places)))
    return len(digits.lstrip("0"))
