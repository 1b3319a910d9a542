"""`qwen-math compare`: per-problem flips, paired significance, configuration difference."""

from __future__ import annotations

import json

import pytest
from test_report import PROBLEMS, write_finished_run

from qwen_math.cli import main
from qwen_math.errors import UsageError
from qwen_math.runs.compare import compare_runs, mcnemar_exact, paired_bootstrap


# --- statistics ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "b, c, p",
    [
        (0, 0, 1.0),
        (5, 5, 1.0),
        # two-sided exact binomial: 2 * P(X <= 0 | n=6) = 2 / 64
        (0, 6, 2 / 64),
        # textbook: 2 * P(X <= 1 | n=10) = 2 * 11 / 1024
        (1, 9, 22 / 1024),
        (9, 1, 22 / 1024),
    ],
)
def test_mcnemar_exact(b, c, p):
    assert mcnemar_exact(b, c) == pytest.approx(p)


def test_paired_bootstrap_is_seeded_and_brackets_the_difference():
    a = [0.0, 0.5, 1.0, 0.25, 0.0, 1.0, 0.75, 0.5] * 5
    b = [1.0, 0.5, 1.0, 0.75, 0.5, 1.0, 1.0, 0.5] * 5
    first = paired_bootstrap(a, b, seed=0, resamples=2000)
    assert first == paired_bootstrap(a, b, seed=0, resamples=2000)
    diff, low, high, p = first
    assert diff == pytest.approx(0.28125)
    assert 0 < low < diff < high
    assert p < 0.01
    # identical runs: no difference, p = 1
    assert paired_bootstrap(a, a, seed=0, resamples=200) == (0.0, 0.0, 0.0, 1.0)


# --- two runs -----------------------------------------------------------------------------
#: run B fixes problem 2 (majority now right) and breaks problem 0
PROBLEMS_B = {**PROBLEMS, 0: ("4", ["5", "5", "4", "5"]), 2: ("12", ["12", "12", "12", "11"])}


@pytest.fixture
def two_runs(tmp_path):
    a = write_finished_run(tmp_path / "a")
    b = write_finished_run(tmp_path / "b", problems=PROBLEMS_B, temperature=1.0)
    return a, b


def test_flips_significance_and_config_difference(two_runs):
    a, b = two_runs
    comparison = compare_runs(a, b, resamples=500)
    test = comparison.datasets["math500"]
    assert (test.problems, test.solved_a, test.solved_b) == (6, 4, 4)
    assert test.a_only == (0,) and test.b_only == (2,)
    assert test.mcnemar_p == 1.0
    assert test.acc_b - test.acc_a == pytest.approx((1 - 4) / 4 / 6 + (3 - 1) / 4 / 6)
    assert any(line.startswith("sampling.temperature: 0.7 -> 1.0") for line in comparison.config_differences)


def test_compare_cli_prints_text_and_json(two_runs, capsys):
    a, b = two_runs
    assert main(["compare", str(a), str(b)]) == 0
    text = capsys.readouterr().out
    assert "solved by A only: 0" in text and "solved by B only: 2" in text
    assert "McNemar exact p = 1" in text and "sampling.temperature: 0.7 -> 1.0" in text
    assert main(["compare", str(a), str(b), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["datasets"]["math500"]["b_only"] == [2]


def test_runs_of_different_questions_are_refused(tmp_path):
    a = write_finished_run(tmp_path / "a")
    b = write_finished_run(tmp_path / "b", dataset="gsm8k")
    with pytest.raises(UsageError, match="share no dataset"):
        compare_runs(a, b)
