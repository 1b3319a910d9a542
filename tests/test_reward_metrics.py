"""rm@k, weighted maj@k and PRM step aggregation (eval.metrics), and rescore's reward columns."""

from __future__ import annotations

import itertools
import json
import math

import pytest

from eval.metrics import (
    aggregate_steps,
    rm_at_k,
    rm_first_k,
    vote_weights,
    weighted_maj_at_k,
)
from qwen_math.cli import main

QWEN_800 = "model_outputs/qwen25_math_instruct_math_cot_100x8.jsonl"


def brute_rm_at_k(rewards, correct, k):
    """Independent: enumerate the subsets, pick max reward, ties to the lower index."""
    subsets = list(itertools.combinations(range(len(rewards)), k))
    return sum(correct[max(s, key=lambda i: (rewards[i], -i))] for s in subsets) / len(subsets)


# --- rm@k: closed form equals enumeration, ties to the lower sample index --------------------
@pytest.mark.parametrize("rewards, correct", [
    ([3.0, 1.0, 3.0, 2.0], [False, True, True, False]),  # a tie at the top: sample 0 wins
    ([0.5] * 5, [False, True, True, True, True]),  # all tied: always the lowest index in the subset
    ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [True, False, True, False, True, False]),
    ([-1.0, -0.5, 2.0], [True, True, False]),
])
def test_rm_at_k_closed_form(rewards, correct):
    for k in range(1, len(rewards) + 1):
        assert rm_at_k(rewards, correct, k) == pytest.approx(brute_rm_at_k(rewards, correct, k))


def test_rm_at_k_bounds():
    assert rm_at_k([1.0, 2.0], [True, False], 1) == 0.5  # k = 1: the accuracy
    assert rm_at_k([1.0, 2.0], [True, False], 2) == 0.0  # k = n: the single best sample
    with pytest.raises(ValueError, match="1 <= k <= n"):
        rm_at_k([1.0], [True], 2)


# --- weighted maj@k ---------------------------------------------------------------------------
def test_weighted_vote_beats_count():
    # two wrong samples with low reward vs one right sample with high reward
    groups, rewards, correct = [0, 0, 1], [0.1, 0.1, 0.9], [False, False, True]
    assert weighted_maj_at_k(groups, rewards, correct, 3) == 1.0
    # k = 2: {0,1} -> wrong; {0,2}, {1,2} -> right
    assert weighted_maj_at_k(groups, rewards, correct, 2) == pytest.approx(2 / 3)


@pytest.mark.parametrize("scheme", ["raw", "softmax", "minmax"])
def test_weighted_maj_schemes_are_deterministic(scheme):
    groups, rewards, correct = [0, 1, 0, None, 1], [1.0, 3.0, 0.5, 9.0, -1.0], [True, False, True, False, False]
    a = weighted_maj_at_k(groups, rewards, correct, 3, weighting=scheme)
    assert a == weighted_maj_at_k(groups, rewards, correct, 3, weighting=scheme) and 0 <= a <= 1


def test_weights():
    assert vote_weights([1.0, 3.0], "minmax") == [0.0, 1.0]
    assert sum(vote_weights([1.0, 3.0, -2.0], "softmax")) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown vote weighting"):
        vote_weights([1.0], "bogus")


def test_weighted_maj_monte_carlo_is_seeded():
    n = 20
    groups = [i % 3 for i in range(n)]
    rewards = [math.sin(i) for i in range(n)]
    correct = [g == 0 for g in groups]
    a = weighted_maj_at_k(groups, rewards, correct, 10, seed=3)  # C(20, 10) > EXACT_SUBSETS
    assert a == weighted_maj_at_k(groups, rewards, correct, 10, seed=3)


# --- PRM step aggregation -----------------------------------------------------------------------
@pytest.mark.parametrize("how, expected", [("min", 0.2), ("last", 0.5), ("prod", 0.9 * 0.2 * 0.5)])
def test_aggregate_steps(how, expected):
    assert aggregate_steps([0.9, 0.2, 0.5], how) == pytest.approx(expected)


# --- rescore on the real 100x8 file (done-when figures) --------------------------------------------
def official_rm_at_k(rows, k):
    """The official rm_maj_eval.py definition, restated: per problem, the file's verdict of the
    first maximum of the flattened pred_score over the first k samples; mean over problems."""
    right = 0
    for row in rows:
        flat = [s for per_sample in row["pred_score"][:k] for s in per_sample]
        right += bool(row["score"][:k][flat.index(max(flat))])
    return right / len(rows)


def test_rescore_rm_at_k_on_real_file(shared_data, capsys, tmp_path):
    out = tmp_path / "verdicts.jsonl"
    assert main(["rescore", "--json", str(shared_data / QWEN_800), "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert list(result["rm@k"]) == list(result["wmaj@k"]) == ["1", "2", "4", "8"]
    assert result["rm@k"]["8"] == pytest.approx(0.96)
    # independent: our verdicts (737/800) x the file's pred_score, enumerated subsets
    rows = [json.loads(line) for line in (shared_data / QWEN_800).open()]
    verdicts = {}
    for v in map(json.loads, out.open()):
        verdicts[(v["idx"], v["sample"])] = v["correct"]
    assert sum(verdicts.values()) == 737
    for k in (1, 2, 4, 8):
        expected = sum(brute_rm_at_k([s[0] for s in row["pred_score"]],
                                     [verdicts[(row["idx"], i)] for i in range(8)], k) for row in rows) / 100
        assert result["rm@k"][str(k)] == pytest.approx(expected)
    # cross-check of the estimator: the official definition on the file's own score gives 0.94
    assert official_rm_at_k(rows, 8) == pytest.approx(0.94)
    crosscheck = result["file_verdicts_crosscheck"]
    assert crosscheck["rm@k_first_k"]["8"] == pytest.approx(0.94) == crosscheck["rm@k"]["8"]
    assert [rm_first_k([s[0] for s in r["pred_score"]], r["score"], 8) for r in rows].count(True) == 94
