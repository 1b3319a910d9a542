"""Comparison rules between two answer trees (``COMPARISON_RULES``, first decisive rule wins):
numbers as exact rationals (half a unit in the last place only against a written decimal),
text, times, base-``b`` numerals, sequences (sets order-free, tuples and intervals in order
with their brackets), unions, matrices, relations (``x=3`` against ``3``, equations up to a
factor); what is left goes to SymPy (``eval.sympy_bridge``).

What it deliberately does not do: parse (``eval.answer_parsers``) or normalise strings.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from eval.answer_parsers import FLIP, LATEX_WORDS, LONE_SYMBOL, parse_node
from eval.answer_tree import (
    BaseNumeral,
    Chain,
    Matrix,
    Number,
    Relation,
    Seq,
    Text,
    Time,
    Union,
    numbers_equal,
)
from eval.normalize import (
    canonical_text,
)
from eval.sympy_bridge import sympy_equal, sympy_relation_equal

log = logging.getLogger(__name__)


# --- comparison -----------------------------------------------------------------------------


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
