"""Voting and accuracy metrics: majority vote, pass@k, maj@k, summarize."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from eval.metrics import (
    ProblemSamples,
    group_answers,
    maj_at_k,
    majority_vote,
    pass_at_k,
    summarize,
    summarize_samples,
    vote_table,
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
