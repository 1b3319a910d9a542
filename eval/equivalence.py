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
process. What it deliberately does not do: extract answers from responses (``eval.extract``)
or run in parallel (``eval.grade``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import re
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from eval.normalize import (
    DECIMAL_COMMA,
    Normalized,
    canonical_text,
    normalize_answer,
    split_top_level,
    strip_delimiters,
)

log = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 2000
MIN_SIGNIFICANT_DIGITS = 2
PLAIN_INTEGER = re.compile(r"\s*-?\d{1,50}\s*")
MAX_EXPONENT = 100_000
MAX_FACTORIAL = 10_000


class ComparisonTimeout(BaseException):
    """The in-process deadline of one comparison expired (a BaseException, so that a broad
    ``except Exception`` inside SymPy cannot swallow it)."""


class AnswerRefused(Exception):
    """The pre-screen refused an answer as absurd (exponent tower, huge literal, too long)."""


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


# --- answer trees -----------------------------------------------------------------------------


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


# --- parsing --------------------------------------------------------------------------------

DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
SCIENTIFIC = re.compile(
    r"([+-]?(?:\d+\.?\d*|\.\d+))\s*(?:(?:\\times|\\cdot|\*|x)\s*10\s*\^\s*\{?\s*([+-]?\d+)\s*\}?"
    r"|[eE]\s*([+-]?\d+))"
)
FRACTION = re.compile(r"([+-]?)\s*\\frac\s*(?:\{\s*(\d+)\s*\}|(\d))\s*(?:\{\s*(\d+)\s*\}|(\d))")
SLASH = re.compile(r"([+-]?\d+)\s*/\s*(\d+)")
MIXED = re.compile(r"([+-]?)(\d+)\s*\\frac\s*\{\s*(\d+)\s*\}\s*\{\s*(\d+)\s*\}")
BASE = re.compile(r"([+-]?[0-9A-Z]+(?:\.[0-9A-Z]+)?)\s*_\s*\{?\s*\(?(\d+)\)?\s*\}?")
TIME = re.compile(r"(\d{1,2})(?::(\d{2})\s*(?:([ap])\.?\s*m\.?)?|\s*([ap])\.?\s*m\.?)", re.I)
RELATION_OPS = (("\\leq", "<="), ("\\geq", ">="), ("\\ne", "!="), ("<=", "<="), (">=", ">="),
                ("!=", "!="), ("=", "="), ("<", "<"), (">", ">"), ("\\equiv", "="))
RELATION_SPLIT = re.compile(r"\\leq(?![a-z])|\\geq(?![a-z])|\\ne(?![a-z])|<=|>=|!=|\\approx|=|<|>")
RELATION_OR_BRACKET = re.compile(RELATION_SPLIT.pattern + r"|\\[{}]|[()\[\]{}]")
FLIP = {"<": ">", ">": "<", "<=": ">=", ">=": "<=", "=": "=", "!=": "!="}
MATRIX = re.compile(r"\\begin\{([pbBvV]?matrix|array)\}(?:\{[^}]*\})?(.*?)\\end\{\1\}", re.S)
WORD_SEPARATOR = re.compile(r"\s+(?:and|or)\s+|(?<=[)\]}])\s*(?:and|or)\s*(?=[(\[{\\])", re.I)
LONE_SYMBOL = re.compile(
    r"(?:[A-Za-z]|\\[a-zA-Z]+)(?:_\s*\{?[\w,]+\}?)?(?:\([a-z,\s]*\))?'?|\|[A-Za-z]+\||"
    r"\\frac\{[A-Za-z]+\}\{[A-Za-z]+\}|[A-Za-z_{}0-9\\]+\s*:\s*[A-Za-z_{}0-9\\]+|"
    r"\((?:[A-Za-z](?:_\{?\w+\}?)?\s*,\s*)+[A-Za-z](?:_\{?\w+\}?)?\)|[A-Za-z]{1,3}"
)
TEXT_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{3,}")
LATEX_WORDS = {"sqrt", "frac", "sin", "cos", "tan", "log", "ln", "exp", "pi", "infty", "cup",
               "cap", "sec", "csc", "cot", "arcsin", "arccos", "arctan", "mod", "pmod", "cdot",
               "times", "begin", "end", "pmatrix", "bmatrix", "matrix", "array", "dots",
               "ldots", "cdots", "circ", "emptyset", "varnothing", "text"}


def parse_number(text: str, *, percent: bool = False) -> Number | None:
    """A plain number: integer, decimal, fraction, mixed number, scientific notation."""
    text = text.strip()
    if len(text) < 60:
        text = re.sub(r"(?<!\d) +| +(?!\d)", "", text)  # "- 5" -> "-5"; "1 2" stays two numbers
    if text.startswith("+"):
        text = text[1:]
    if DECIMAL.fullmatch(text):
        places = len(text.split(".")[1]) if "." in text else None
        if places == 0:
            places = None
        return Number(Fraction(text), places, percent)
    match = SCIENTIFIC.fullmatch(text)
    if match:
        mantissa, exponent = match.group(1), int(match.group(2) or match.group(3))
        if abs(exponent) > 400:
            return None
        places = len(mantissa.split(".")[1]) if "." in mantissa else 0
        value = Fraction(mantissa) * Fraction(10) ** exponent
        return Number(value, places - exponent if places - exponent > 0 else None, percent)
    for pattern in (FRACTION, SLASH, MIXED):
        match = pattern.fullmatch(text)
        if match:
            return Number(fraction_of(pattern, match), None, percent)
    return None


def fraction_of(pattern: re.Pattern[str], match: re.Match[str]) -> Fraction:
    if pattern is FRACTION:
        numerator = int(match.group(2) or match.group(3))
        denominator = int(match.group(4) or match.group(5))
        value = Fraction(numerator, denominator) if denominator else Fraction(0)
        return -value if match.group(1) == "-" else value
    if pattern is SLASH:
        denominator = int(match.group(2))
        return Fraction(int(match.group(1)), denominator) if denominator else Fraction(0)
    whole, numerator, denominator = (int(match.group(i)) for i in (2, 3, 4))
    value = whole + (Fraction(numerator, denominator) if denominator else 0)
    return -value if match.group(1) == "-" else value


def bracket_kind(text: str) -> tuple[str, str, str] | None:
    """(opener, body, closer) when ``text`` is one bracketed group."""
    text = text.strip()
    if text.startswith("\\{") and text.endswith("\\}"):
        body = text[2:-2]
        return ("{", body, "}") if balanced(body) else None
    if len(text) >= 2 and text[0] in "([" and text[-1] in ")]":
        body = text[1:-1]
        return (text[0], body, text[-1]) if balanced(body) else None
    if len(text) >= 2 and text[0] == "{" and text[-1] == "}":
        body = text[1:-1]
        return ("", body, "") if balanced(body) else None
    return None


def balanced(text: str) -> bool:
    depth = 0
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def looks_like_text(text: str) -> bool:
    words = [w for w in TEXT_WORD.findall(text) if w.lower() not in LATEX_WORDS]
    return bool(words)


def parse_tree(norm: Normalized) -> Any:
    """The answer tree of a normalised answer (top level carries the percent flag)."""
    return parse_node(norm.text, percent=norm.percent, top=True)


def parse_node(text: str, *, percent: bool = False, top: bool = False) -> Any:
    text = strip_delimiters(text.strip())
    if not text:
        return Text("")
    number = parse_number(text, percent=percent)
    if number is not None:
        return number
    for parser in NODE_PARSERS:
        node = parser(text, percent)
        if node is not None:
            return node
    if looks_like_text(text):
        return Text(canonical_text(text))
    return Expr(text, percent)


def parse_time(text: str, percent: bool) -> Time | None:
    match = TIME.fullmatch(text)
    if not match:
        return None
    half = (match.group(3) or match.group(4) or "").lower()  # "9 a.m." is 9:00 a.m.
    return Time(int(match.group(1)), int(match.group(2) or 0), half + "m" if half else "")


def parse_words_list(text: str, percent: bool) -> Seq | None:
    parts = [p for p in WORD_SEPARATOR.split(text) if p.strip()]
    if len(parts) < 2 or not all(balanced(p) for p in parts):
        return None
    items: list[Any] = []
    for part in parts:
        node = parse_node(part)
        items.extend(node.items if isinstance(node, Seq) and node.kind == "list" else [node])
    return Seq("list", tuple(items))


def parse_semicolon_list(text: str, percent: bool) -> Seq | None:
    parts = [p for p in split_top_level(text, ";") if p.strip()]
    if len(parts) < 2:
        return None
    return Seq("list", tuple(parse_node(p) for p in parts))


def parse_comma_list(text: str, percent: bool) -> Seq | None:
    parts = split_top_level(text, ",")
    if len(parts) < 2 or any(not p.strip() for p in parts):
        return None
    var = ""
    if any(has_relation(p) for p in parts) and not all(has_relation(p) for p in parts):
        # "x = 1, 2" -> lhs applies to the first item only; keep the items as values
        if lone_rhs(parts[0]) != parts[0]:
            var = split_relations(parts[0])[0][0].strip()
        parts = [lone_rhs(p) if has_relation(p) else p for p in parts]
    return Seq("list", tuple(parse_node(p) for p in parts), var=var)


def lone_rhs(text: str) -> str:
    pieces = split_relations(text)[0]
    return pieces[-1] if len(pieces) == 2 and LONE_SYMBOL.fullmatch(pieces[0].strip()) else text


def parse_union(text: str, percent: bool) -> Union | None:
    parts = re.split(r"\\cup(?![a-z])", text)
    if len(parts) < 2:
        return None
    return Union(tuple(parse_node(p) for p in parts))


def parse_pm(text: str, percent: bool) -> Seq | None:
    if text.count("\\pm") != 1 or "\\mp" in text:
        return None
    return Seq("set", (parse_node(text.replace("\\pm", "+")), parse_node(text.replace("\\pm", "-"))))


def parse_matrix(text: str, percent: bool) -> Matrix | None:
    inner = text.strip()
    bracket = bracket_kind(inner)
    if bracket and bracket[0] in "([":
        inner = bracket[1].strip()
    match = MATRIX.fullmatch(inner)
    if not match:
        return None
    rows = [r for r in re.split(r"\\\\", match.group(2)) if r.strip()]
    cells = tuple(tuple(parse_node(c) for c in row.split("&")) for row in rows)
    if len({len(r) for r in cells}) > 1:
        return None
    return Matrix(cells)


def parse_bracketed(text: str, percent: bool) -> Any:
    bracket = bracket_kind(text)
    if bracket is None:
        return None
    opener, body, closer = bracket
    if not opener:  # plain grouping braces: {1,3} is a bare list
        node = parse_node(body)
        return node
    parts = split_top_level(body, ",;")
    items = tuple(parse_node(p) for p in parts if p.strip())
    if opener == "{":
        return Seq("set", items, "{", "}")
    if len(items) == 1 and opener == "(" and closer == ")":
        return items[0]
    kind = "tuple" if opener == "(" and closer == ")" else "interval"
    return Seq(kind, items, opener, closer)


def split_relations(text: str) -> tuple[list[str], list[str]]:
    """Pieces and operators of a relation chain, splitting only outside brackets."""
    pieces, ops = [], []
    depth = start = 0
    for match in RELATION_OR_BRACKET.finditer(text):
        token = match.group(0)
        if token in "([{":
            depth += 1
        elif token in ")]}":
            depth -= 1
        elif depth == 0:
            pieces.append(text[start:match.start()])
            ops.append(canonical_op(token))
            start = match.end()
    pieces.append(text[start:])
    return pieces, ops


def has_relation(text: str) -> bool:
    return len(split_relations(text)[1]) > 0


def parse_relation(text: str, percent: bool) -> Any:
    pieces, ops = split_relations(text)
    if "\\approx" in ops:  # x = 1/3 \approx 0.33 -> x = 1/3
        cut = ops.index("\\approx")
        if cut > 0:
            pieces, ops = pieces[:cut + 1], ops[:cut]
        ops = ["=" if op == "\\approx" else op for op in ops]
    if len(pieces) < 2 or any(not p.strip() for p in pieces):
        return None
    if len(pieces) == 3 and ops[0] in ("<", "<=") and ops[1] in ("<", "<="):
        return chain(pieces, ops)
    if len(pieces) == 3 and ops[0] in (">", ">=") and ops[1] in (">", ">="):
        return chain(pieces[::-1], [FLIP[ops[1]], FLIP[ops[0]]])
    if all(op == "=" for op in ops):
        return equality_chain([p.strip() for p in pieces])
    if len(pieces) == 2:
        relation = Relation(ops[0], pieces[0].strip(), pieces[1].strip())
        return half_line(relation) or relation
    return None


INFINITY = "\\infty"


def half_line(relation: Relation) -> Chain | None:
    """``x < 3`` / ``5 \\leq x`` as the interval of ``x`` it describes."""
    op, lhs, rhs = relation.op, relation.lhs, relation.rhs
    if op not in ("<", "<=", ">", ">="):
        return None
    if not LONE_SYMBOL.fullmatch(lhs) and LONE_SYMBOL.fullmatch(rhs):
        op, lhs, rhs = FLIP[op], rhs, lhs
    if not LONE_SYMBOL.fullmatch(lhs) or LONE_SYMBOL.fullmatch(rhs):
        return None
    bound = parse_node(rhs)
    if op in ("<", "<="):
        interval = Seq("interval", (parse_node("-" + INFINITY), bound), "(", ")" if op == "<" else "]")
    else:
        interval = Seq("interval", (bound, parse_node(INFINITY)), "(" if op == ">" else "[", ")")
    return Chain(lhs, interval, relation)


def equality_chain(pieces: list[str]) -> Relation:
    """``x = 5+5+1 = 11`` -> ``x = 11``: the first lone symbol named, and the final value."""
    named = next((p for p in pieces[:-1] if LONE_SYMBOL.fullmatch(p)), pieces[0])
    return Relation("=", named, pieces[-1])


def chain(pieces: list[str], ops: list[str]) -> Chain | None:
    low, var, high = (p.strip() for p in pieces)
    if not LONE_SYMBOL.fullmatch(var):
        return None
    interval = Seq("interval", (parse_node(low), parse_node(high)),
                   "(" if ops[0] == "<" else "[", ")" if ops[1] == "<" else "]")
    return Chain(var, interval)


def canonical_op(op: str) -> str:
    for spelled, canonical in RELATION_OPS:
        if op == spelled:
            return canonical
    return op


def parse_membership(text: str, percent: bool) -> Any:
    match = re.fullmatch(r"([A-Za-z](?:_\{?\w+\}?)?)\s*\\in\s*(.+)", text, re.S)
    if not match:
        return None
    node = parse_node(match.group(2))
    return dataclasses.replace(node, var=match.group(1)) if isinstance(node, Seq) else node


def parse_base(text: str, percent: bool) -> BaseNumeral | None:
    match = BASE.fullmatch(text)
    if not match or not 2 <= int(match.group(2)) <= 36:
        return None
    return BaseNumeral(match.group(1), int(match.group(2)))


#: Tree parsers in order of precedence (the first that recognises the text wins).
NODE_PARSERS = (
    parse_time,
    parse_base,
    parse_matrix,
    parse_semicolon_list,
    parse_words_list,
    parse_membership,
    parse_comma_list,
    parse_union,
    parse_pm,
    parse_relation,
    parse_bracketed,
)


# --- comparison -----------------------------------------------------------------------------


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


def nodes_equal(pred: Any, gold: Any) -> bool:
    """Structural equivalence of two answer trees (SymPy only at the leaves)."""
    for rule in COMPARISON_RULES:
        verdict = rule(pred, gold)
        if verdict is not None:
            return verdict
    return sympy_equal(pred, gold)


def compare_same_number(pred: Any, gold: Any) -> bool | None:
    if isinstance(pred, Number) and isinstance(gold, Number):
        return numbers_equal(pred, gold)
    return None


def compare_text(pred: Any, gold: Any) -> bool | None:
    if isinstance(pred, Text) or isinstance(gold, Text):
        pred_key = pred.text if isinstance(pred, Text) else canonical_text(leaf_text(pred))
        gold_key = gold.text if isinstance(gold, Text) else canonical_text(leaf_text(gold))
        return bool(pred_key) and pred_key == gold_key
    return None


def leaf_text(node: Any) -> str:
    return getattr(node, "latex", None) or str(getattr(node, "value", node))


def compare_time(pred: Any, gold: Any) -> bool | None:
    if isinstance(pred, Time) or isinstance(gold, Time):
        return pred == gold
    return None


def compare_base(pred: Any, gold: Any) -> bool | None:
    if not (isinstance(pred, BaseNumeral) or isinstance(gold, BaseNumeral)):
        return None
    if isinstance(pred, BaseNumeral) and isinstance(gold, BaseNumeral):
        try:
            return pred.value() == gold.value()
        except ValueError:
            return pred == gold
    numeral, other = (pred, gold) if isinstance(pred, BaseNumeral) else (gold, pred)
    return isinstance(other, Number) and other.places is None and other.value.denominator == 1 \
        and str(other.value.numerator) == numeral.digits  # the digits, base left implicit


def compare_sequences(pred: Any, gold: Any) -> bool | None:
    if isinstance(pred, Seq) and isinstance(gold, Seq):
        return sequences_equal(pred, gold)
    # a list or set against one value: as sets ("0.5, \\frac12" -- one value spelled twice)
    if isinstance(pred, Seq) and pred.kind in ("list", "set") and not isinstance(gold, Relation | Chain):
        return unordered_equal(pred.items, (gold,))
    if isinstance(gold, Seq) and gold.kind in ("list", "set") and not isinstance(pred, Relation | Chain):
        return unordered_equal((pred,), gold.items)
    if isinstance(pred, Seq) or isinstance(gold, Seq):
        return False if not (isinstance(pred, Relation | Chain) or isinstance(gold, Relation | Chain)) else None
    return None


def sequences_equal(pred: Seq, gold: Seq) -> bool:
    if not same_variable(pred.var, gold.var):
        return False  # x = 1, 2 is not y = 1, 2
    ordered = {"interval", "tuple"} & {pred.kind, gold.kind}
    if ordered and len(pred.items) != len(gold.items):
        return False
    if "interval" in (pred.kind, gold.kind):
        if (pred.opener, pred.closer) != (gold.opener, gold.closer):
            return False
        return all(nodes_equal(p, g) for p, g in zip(pred.items, gold.items, strict=True))
    if "tuple" in (pred.kind, gold.kind):
        if pred.kind == "set" or gold.kind == "set":
            return False
        pred_items, gold_items = in_variable_order(pred), in_variable_order(gold)
        return all(nodes_equal(p, g) for p, g in zip(pred_items, gold_items, strict=True))
    return unordered_equal(pred.items, gold.items)


def in_variable_order(seq: Seq) -> tuple[Any, ...]:
    """A list of assignments ``y=2, x=3`` in the order of its variables (``x=3, y=2``), so
    that it compares with the tuple ``(x, y)`` position by position."""
    if seq.kind != "list" or not all(assigned_value(item) is not None for item in seq.items):
        return seq.items
    return tuple(sorted(seq.items, key=lambda item: variable_key(item.lhs)))


def variable_key(name: str) -> tuple[str, int]:
    """``a_{10}`` after ``a_2``: letters first, then the subscript as a number."""
    name = re.sub(r"[\s{}]", "", name)
    match = re.fullmatch(r"(.*?)_?(\d+)", name)
    return (match.group(1), int(match.group(2))) if match else (name, -1)


def unordered_equal(pred: tuple[Any, ...], gold: tuple[Any, ...]) -> bool:
    """Set equality: every item of each side is equivalent to some item of the other
    (repeats count once, as in ``{1, 1, 2} = {1, 2}``)."""
    matched_gold: set[int] = set()
    for item in pred:
        hits = [i for i, candidate in enumerate(gold) if nodes_equal(item, candidate)]
        if not hits:
            return False
        matched_gold.update(hits)
    return len(matched_gold) == len(gold)


def compare_unions(pred: Any, gold: Any) -> bool | None:
    if isinstance(pred, Union) and isinstance(gold, Union):
        return unordered_equal(pred.parts, gold.parts)
    if isinstance(pred, Union) or isinstance(gold, Union):
        return False
    return None


def compare_matrices(pred: Any, gold: Any) -> bool | None:
    if isinstance(pred, Matrix) and isinstance(gold, Matrix):
        if len(pred.rows) != len(gold.rows) or any(len(a) != len(b) for a, b in zip(pred.rows, gold.rows, strict=True)):
            return False
        return all(nodes_equal(p, g) for a, b in zip(pred.rows, gold.rows, strict=True) for p, g in zip(a, b, strict=True))
    if isinstance(pred, Matrix) and isinstance(gold, Seq) and gold.kind == "tuple":
        return compare_matrices(pred, column_matrix(gold))
    if isinstance(gold, Matrix) and isinstance(pred, Seq) and pred.kind == "tuple":
        return compare_matrices(column_matrix(pred), gold)
    return None


def column_matrix(seq: Seq) -> Matrix:
    return Matrix(tuple((item,) for item in seq.items))


def compare_relations(pred: Any, gold: Any) -> bool | None:
    if isinstance(pred, Chain) and isinstance(gold, Chain):
        return pred.var.replace(" ", "") == gold.var.replace(" ", "") and nodes_equal(pred.interval, gold.interval)
    if isinstance(pred, Chain) and isinstance(gold, Relation):
        return pred.relation is not None and relations_equal(pred.relation, gold)
    if isinstance(gold, Chain) and isinstance(pred, Relation):
        return gold.relation is not None and relations_equal(pred, gold.relation)
    if isinstance(pred, Chain):
        return nodes_equal(pred.interval, gold) if isinstance(gold, Seq | Union) \
            and same_variable(pred.var, getattr(gold, "var", "")) else False
    if isinstance(gold, Chain):
        return nodes_equal(pred, gold.interval) if isinstance(pred, Seq | Union) \
            and same_variable(getattr(pred, "var", ""), gold.var) else False
    pred_value = assigned_value(pred)
    gold_value = assigned_value(gold)
    if isinstance(pred, Relation) and isinstance(gold, Relation):
        if pred_value is not None and gold_value is not None and same_symbol(pred.lhs, gold.lhs):
            return nodes_equal(parse_node(pred.rhs), parse_node(gold.rhs))
        return relations_equal(pred, gold)
    if isinstance(pred, Relation):
        # the prediction states "expression = value" for a plain gold: its value is the answer
        # (the reverse is not true: a gold equation is itself the answer)
        value = pred_value if pred_value is not None else (
            pred.rhs if pred.op == "=" and is_formula(pred.lhs) else None)
        return value is not None and nodes_equal(parse_node(value), gold)
    if isinstance(gold, Relation):
        return gold_value is not None and nodes_equal(pred, parse_node(gold_value))
    return None


def is_formula(text: str) -> bool:
    """Math only: no bare ``$`` and no prose words (``\\max$ at $x`` is not a formula)."""
    words = [w for w in re.findall(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}", text) if w.lower() not in LATEX_WORDS]
    return not re.search(r"(?<!\\)\$", text) and not words


def assigned_value(node: Any) -> str | None:
    """``rhs`` of ``symbol = rhs`` (a lone symbol, ``f(x)``, ``|AB|``, ``A:B``, ``(p,q)``)."""
    if isinstance(node, Relation) and node.op == "=" and LONE_SYMBOL.fullmatch(node.lhs.strip()):
        return node.rhs
    return None


def same_symbol(a: str, b: str) -> bool:
    return re.sub(r"[\s{}]", "", a) == re.sub(r"[\s{}]", "", b)


def same_variable(a: str, b: str) -> bool:
    """Two named variables must be the same symbol; an unnamed side matches any."""
    return not a or not b or same_symbol(a, b)


def relations_equal(pred: Relation, gold: Relation) -> bool:
    """Relations up to a factor: equations any non-zero factor, inequalities a positive one."""
    pred_op, gold_op = pred.op, gold.op
    pred_lhs, pred_rhs = pred.lhs, pred.rhs
    if pred_op != gold_op and FLIP[pred_op] == gold_op:
        pred_op, pred_lhs, pred_rhs = gold_op, pred_rhs, pred_lhs
    if pred_op != gold_op:
        return False
    if same_symbol(pred_lhs, gold.lhs) and nodes_equal(parse_node(pred_rhs), parse_node(gold.rhs)):
        return True
    return sympy_relation_equal(pred_op, pred_lhs, pred_rhs, gold.lhs, gold.rhs)


#: Structural comparison rules, tried in order; ``None`` means "not mine".
COMPARISON_RULES = (
    compare_same_number,
    compare_relations,
    compare_time,
    compare_base,
    compare_matrices,
    compare_unions,
    compare_sequences,
    compare_text,
)


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
