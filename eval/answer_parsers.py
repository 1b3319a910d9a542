r"""Parsers from a normalised answer to an answer tree (``eval.answer_tree``): a table of node
parsers (``NODE_PARSERS``) tried in order: time, word lists, ``;``/``,`` lists, unions,
``\pm`` pairs, matrices, bracketed sequences and intervals, relations and chains,
memberships, base-``b`` numerals, numbers; what none of them takes is an expression (or text).

What it deliberately does not do: compare trees (``eval.comparison``) or call SymPy.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from fractions import Fraction
from typing import Any

from eval.answer_tree import (
    BaseNumeral,
    Chain,
    Expr,
    Matrix,
    Number,
    Relation,
    Seq,
    Text,
    Time,
    Union,
)
from eval.normalize import (
    Normalized,
    canonical_text,
    split_top_level,
    strip_delimiters,
)

log = logging.getLogger(__name__)


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
