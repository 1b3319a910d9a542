"""Reference-solution self-consistency: each dataset's own worked solution, graded against its
own gold under the dataset's name, must be judged correct.

Targets (issue 11): gsm8k (text before ``####``) >= 99 %, math500 100 %, aime24 >= 29/30,
aqua (rationale) >= 98 %, asdiv (formula) >= 94 %, carp_en (steps) >= 75 %. Each worked
solution is read by ``eval.datasets.reference_solution``. Where a target is not reached, the
floor asserted is the measured figure (no regression), and why is explained beside it. The
full sets run under ``-m slow`` on the grader pool; by default the first 300 rows of each (a
5-point margin below the floor on the big sets) run.
"""

from __future__ import annotations

import json

import pytest

from eval.datasets import DATASETS, problem_from_row, reference_solution
from eval.grade import grade_batch


def solution_items(shared_data, name: str) -> list[tuple]:
    """(worked solution, gold, dataset[, options]) of every row of ``name``: the solution as
    ``eval.datasets.reference_solution`` reads it, the gold and options as ``eval`` loads them."""
    spec = DATASETS[name]
    path = shared_data / "benchmarks" / f"{name}.jsonl"
    items = []
    for idx, line in enumerate(path.open(encoding="utf-8")):
        row = json.loads(line)
        problem = problem_from_row(spec, row, idx, f"{path}:{idx + 1}")
        item = (reference_solution(spec, row), problem.gold, name)
        items.append((*item, problem.choices) if problem.choices else item)
    return items


#: dataset -> (issue target, floor asserted). Measured on the full sets (``-m slow``): gsm8k
#: 1308/1319 (99.2 %), math500 500/500, aime24 29/30, aqua 249/254 (98.0 %: a rationale that
#: names no letter is read for its final value and graded through the row's options), asdiv
#: 2090/2215 (94.4 %: a formula ending in a division with remainder, ``47/6=7 r5``, is read by
#: the row's ASDiv solution type: Surplus the remainder, Floor-Division the quotient,
#: Ceil-Division the quotient + 1), carp_en 614/976 (62.9 %). carp_en's floor is below its
#: target because the target is out of reach of any grader on this file:
#: - in 295 rows the gold's spelling (spaces removed) appears nowhere in the steps; 209 of those
#:   golds are plain numbers or fractions and only 10 of them occur as a value anywhere in the
#:   steps: the answer column belongs to another problem (``... = 4 - 4 = 0``, gold ``34``;
#:   ``x = 20``, gold ``1``); the other 86 (``x > 3`` for steps ending ``a = 3``) read the same
#:   way, so about 70 % (976 - 285 rows) is the ceiling;
#: - in 20 more the steps' final value is the gold of the neighbouring row, and in the rest
#:   the gold's spelling occurs but the final statement states another quantity.
#: The other asdiv misses: comparisons answered by a word or name (``... < 5*7=35 square
#: feet(Rug B)``, gold ``Rug B``), number patterns (gold the next term), two unknowns combined.
#: aime24's one miss states ``t = 24. $180 + 24 = 204$`` with no anchor.
TARGETS = {
    "gsm8k": (0.99, 0.99),
    "math500": (1.0, 1.0),
    "aime24": (29 / 30, 29 / 30),
    "aqua": (0.98, 0.98),
    "asdiv": (0.94, 0.94),
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
