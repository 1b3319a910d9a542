"""Voting and accuracy metrics: majority vote, pass@k, maj@k, summarize."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from eval.metrics import (
    ProblemSamples,
    group_answers,
    interval,
    maj_at_k,
    majority_vote,
    pass_at_k,
    summarize,
    summarize_samples,
    vote_table,
    wilson_interval,
)


@pytest.mark.parametrize("answers,expected", [
    # --- equivalent spellings vote together
    (["\\frac{1}{2}", "0.5", "3", "\\dfrac12"], "\\frac{1}{2}"),
    (["10000", "10{,}000", "9999"], "10000"),
    (["48^\\circ", "48", "50"], "48^\\circ"),
    # --- ties: the group seen first wins
    (["3", "4"], "3"),
    (["4", "3", "3", "4"], "4"),
    # --- no answers
    ([None, None], None),
    ([], None),
    ([None, "7"], "7"),
])
def test_majority_vote(answers, expected):
    assert majority_vote(answers) == expected


def test_vote_table_counts_groups_in_order():
    assert vote_table(["1/2", "3", "0.5", None, "3", "3"]) == [("3", 3), ("1/2", 2)]


def test_custom_equivalence_is_used():
    answers = ["1/2", "0.5", "0.5"]
    assert majority_vote(answers) == "1/2"  # one group of three
    assert majority_vote(answers, equivalent=lambda x, y: False) == "0.5"  # spelling only


@pytest.mark.parametrize("n,c,k,expected", [
    # --- unbiased estimator 1 - C(n-c, k) / C(n, k)
    (8, 0, 1, 0.0),
    (8, 8, 8, 1.0),
    (8, 2, 1, 0.25),
    (8, 2, 2, 1 - math.comb(6, 2) / math.comb(8, 2)),
    (8, 1, 8, 1.0),
    (10, 3, 5, 1 - math.comb(7, 5) / math.comb(10, 5)),
])
def test_pass_at_k(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


@pytest.mark.parametrize("n,c,k", [(8, 9, 1), (8, 2, 0), (8, 2, 9)])
def test_pass_at_k_rejects_bad_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def brute_force_maj(groups, correct, k):
    wins = []
    for subset in itertools.combinations(range(len(groups)), k):
        counts = {}
        for i in subset:
            counts.setdefault(groups[i], []).append(i)
        best = min(counts.values(), key=lambda members: (-len(members), members[0]))
        wins.append(correct[best[0]])
    return sum(wins) / len(wins)


def test_maj_at_k_exact_matches_brute_force():
    groups = [0, 1, 0, 2, 1, 0, 3, 1]
    correct = [g == 0 for g in groups]
    for k in (1, 2, 4, 8):
        assert maj_at_k(groups, correct, k) == pytest.approx(brute_force_maj(groups, correct, k))
    assert maj_at_k(groups, correct, 1) == pytest.approx(3 / 8)


def test_maj_at_k_monte_carlo_is_seeded_and_close():
    groups = [i % 3 for i in range(64)]
    correct = [g == 0 for g in groups]
    first = maj_at_k(groups, correct, 16, seed=1)
    assert first == maj_at_k(groups, correct, 16, seed=1)
    assert 0.2 < first < 0.8


def test_group_answers_skips_missing():
    assert group_answers(["1", None, "1.0", "2"]) == [0, None, 0, 1]


def test_summarize_fields_and_values():
    problems = [
        ProblemSamples("p0", ("1", "1", "2", "1"), (True, True, False, True), {"level": "Level 1", "subject": "Algebra"}),
        ProblemSamples("p1", ("5", "6", "6", None), (True, False, False, False), {"level": "Level 2", "subject": "Algebra"}),
    ]
    summary = summarize(problems)
    assert (summary["n"], summary["problems"], summary["samples"]) == (4, 2, 8)
    assert summary["acc"] == pytest.approx(4 / 8)
    assert set(summary["pass@k"]) == set(summary["maj@k"]) == {"1", "2", "4"}
    assert summary["pass@k"]["4"] == 1.0
    assert summary["maj@k"]["4"] == pytest.approx(0.5)  # p0 right by vote, p1 wrong
    assert summary["by_level"]["Level 1"]["acc"] == pytest.approx(0.75)
    assert summary["by_subject"] == {"Algebra": {"acc": 0.5, "samples": 8}}
    low, high = summary["acc_ci95"]
    assert 0 <= low <= summary["acc"] <= high <= 1
    json.dumps(summary)  # JSON-ready


def test_summarize_samples_groups_record_rows():
    rows = [{"dataset": "d", "idx": i // 2, "sample": i % 2, "answer": str(i % 2), "correct": i % 2 == 0,
             "metadata": {}} for i in range(6)]
    summary = summarize_samples(rows)
    assert (summary["n"], summary["problems"], summary["acc"]) == (2, 3, 0.5)


def test_qwen_800_metrics(shared_data):
    rows = [json.loads(line) for line in
            (shared_data / "model_outputs" / "qwen25_math_instruct_math_cot_100x8.jsonl").open()]
    problems = [ProblemSamples(str(r["idx"]), tuple(r["pred"]), tuple(r["score"]), {"level": r["level"]})
                for r in rows]
    summary = summarize(problems)
    assert summary["acc"] == pytest.approx(728 / 800)
    assert summary["pass@k"]["1"] == pytest.approx(summary["acc"])
    assert summary["maj@k"]["1"] == pytest.approx(summary["acc"])
    assert summary["pass@k"]["8"] >= summary["maj@k"]["8"] >= summary["maj@k"]["1"] - 0.05


# --- intervals: one function, sound at the extremes, the problem as the unit ---------------
@pytest.mark.parametrize("correct,total", [(0, 32), (32, 32), (1, 32), (16, 32), (31, 32), (0, 1)])
def test_wilson_interval_holds_the_estimate_and_never_collapses(correct, total):
    low, high = interval([1.0] * correct + [0.0] * (total - correct))
    p = correct / total
    assert 0.0 <= low <= p <= high <= 1.0
    assert high - low > 0.05  # non-degenerate, also at 0/32 and 32/32
    assert (low, high) == wilson_interval(correct, total)


def test_wilson_interval_reference_values():
    # Wilson (1927) score interval, z = 1.96: 0/32 -> [0, 0.1072]; 32/32 -> [0.8928, 1]; 8/10 -> [0.4902, 0.9433]
    assert interval([0.0] * 32) == pytest.approx((0.0, 0.10719), abs=1e-4)
    assert interval([1.0] * 32) == pytest.approx((0.89281, 1.0), abs=1e-4)
    assert interval([1.0] * 8 + [0.0] * 2) == pytest.approx((0.49016, 0.94332), abs=1e-4)


def test_clustered_samples_count_problems_not_samples():
    # 4 problems x 8 samples at 50 %: as wide as 4 independent draws, not 32
    clustered = interval([1.0, 1.0, 0.0, 0.0])
    assert clustered == wilson_interval(2, 4)
    assert clustered[1] - clustered[0] > (lambda lo, hi: hi - lo)(*wilson_interval(16, 32))


@pytest.mark.parametrize("values", [[0.0] * 32, [1.0] * 32, [0.25, 0.5, 1.0, 0.0] * 8])
def test_bootstrap_interval_is_never_narrower_than_wilson(values):
    low, high = interval(values, method="bootstrap", seed=3)
    w_low, w_high = interval(values)
    assert low <= w_low and high >= w_high
    assert low <= sum(values) / len(values) <= high
    assert interval(values, method="bootstrap", seed=3) == (low, high)  # seeded


def test_interval_rejects_an_unknown_method():
    with pytest.raises(ValueError, match="interval method"):
        interval([1.0], method="percentile")


def test_summarize_intervals_at_zero_and_one():
    for verdict in (False, True):
        problems = [ProblemSamples(f"p{i}", ("1",) * 4, (verdict,) * 4) for i in range(32)]
        summary = summarize(problems)
        for key in ("acc_ci95", *(f"{name}_ci95" for name in ("pass@k", "maj@k"))):
            bounds = [summary[key]] if key == "acc_ci95" else list(summary[key].values())
            for low, high in bounds:
                assert high - low > 0.05, (verdict, key)


def test_summarize_mixed_n_uses_every_sample_and_equal_problem_weights():
    problems = [ProblemSamples("a", ("1",) * 8, (True,) * 6 + (False,) * 2),
                ProblemSamples("b", ("2",), (False,))]
    summary = summarize(problems)
    assert (summary["n"], summary["n_max"], summary["samples"]) == (1, 8, 9)
    assert summary["acc"] == pytest.approx((0.75 + 0.0) / 2)
    assert summary["pass@k"]["1"] == summary["maj@k"]["1"] == pytest.approx(0.375)  # not sample 0 only
    for name in ("pass@k", "maj@k"):
        low, high = summary[f"{name}_ci95"]["1"]
        assert low <= summary[name]["1"] <= high
