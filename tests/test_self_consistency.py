"""Reference-solution self-consistency: each dataset's own worked solution, graded against its
own gold under the dataset's name, must be judged correct.

Targets (issue 11): gsm8k (text before ``####``) >= 99 %, math500 100 %, aime24 >= 29/30,
aqua (rationale) >= 98 %, asdiv (formula) >= 94 %, carp_en (steps) >= 75 %. Where a target is
not reached yet, the floor asserted is the measured figure (no regression), named as such;
the unreached part is explained beside it. The full sets run under ``-m slow`` on the grader
pool; by default the first 300 rows of each (a 5-point margin below the floor on the
big sets) run.
"""

from __future__ import annotations

import json

import pytest

from eval.datasets import gold_after_hashes, gold_without_unit_note
from eval.grade import grade_batch


def solution_items(shared_data, name: str) -> list[tuple]:
    """(solution, gold, dataset[, options]) of every row of ``name``."""
    rows = [json.loads(line) for line in (shared_data / "benchmarks" / f"{name}.jsonl").open(encoding="utf-8")]
    build = {
        "gsm8k": lambda r: (r["answer"].split("####")[0], gold_after_hashes(r["answer"]), "gsm8k"),
        "math500": lambda r: (r["solution"], r["answer"], "math500"),
        "aime24": lambda r: (r["solution"], str(r["answer"]), "aime24"),
        "aqua": lambda r: (r["rationale"], r["correct"], "aqua", tuple(r["options"])),
        "asdiv": lambda r: (r["formula"], gold_without_unit_note(r["answer"]), "asdiv"),
        "carp_en": lambda r: (r["steps"], r["answer"], "carp_en"),
    }[name]
    return [build(row) for row in rows]


#: dataset -> (issue target, floor asserted). Measured on the full sets (``-m slow``): gsm8k
#: 1308/1319 (99.2 %), math500 500/500, aime24 29/30, aqua 249/254 (98.0 %: a rationale that
#: names no letter is read for its final value and graded through the row's options), asdiv
#: 1940/2215 (87.6 %), carp_en 614/976 (62.9 %). A floor below the target is the measured
#: figure, and the target is out of reach of honest extraction:
#: - asdiv (275 misses): 154 formulas end in a division with remainder (``868/6=144 r4``) whose
#:   gold is the quotient, the remainder or the quotient + 1 depending on the question; 58 are
#:   comparisons answered by a word or name (``... < 5*7=35 square feet(Rug B)``, gold
#:   ``Rug B``); 35 are number patterns (``2, 4, 7, 11, 16, 22``, gold the last term: a list is
#:   a list answer); 21 set up two unknowns whose answer is a combination (``10x+y``); the rest
#:   are ordinals/dates (``6th``, ``February 3rd``) or proportions whose gold is an inner term
#:   (``3:4=18:24``, gold 18) or written with expressions (``(7-3):10=20:50``).
#: - carp_en (362 misses): in 260 rows the gold's spelling (spaces removed) appears nowhere in
#:   the steps; in 20 the steps' final value is the gold of the neighbouring row (misaligned
#:   rows); in the other 82 the gold's spelling occurs somewhere, but the final statement
#:   states another quantity (``m \neq 2`` for gold ``1``): at most 71.3 % is reachable.
#: - aime24 (1 miss): the solution states ``t = 24. $180 + 24 = 204$`` with no anchor.
TARGETS = {
    "gsm8k": (0.99, 0.99),
    "math500": (1.0, 1.0),
    "aime24": (29 / 30, 29 / 30),
    "aqua": (0.98, 0.98),
    "asdiv": (0.94, 0.87),
    "carp_en": (0.75, 0.62),
}


def rate(items: list[tuple]) -> float:
    grades = grade_batch(items, timeout=5.0)
    return sum(bool(g) for g in grades) / len(grades)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_reference_solutions_grade_correct_subset(shared_data, name):
    items = solution_items(shared_data, name)[:300]  # the first 300 rows (all of the small sets)
    _target, floor = TARGETS[name]
    assert rate(items) >= (floor if len(items) < 300 else floor - 0.05)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(TARGETS))
def test_reference_solutions_grade_correct(shared_data, name):
    _target, floor = TARGETS[name]
    assert rate(solution_items(shared_data, name)) >= floor
