"""Generated multiple-choice check over real rows: for every multiple-choice row of the
Chinese and English choice datasets (the official harness's questions and golds, from the
reference prompt file) and of aqua, the gold letter written in each form below extracts to
the gold and grades correct, and every other letter grades wrong. Zero false positives.

The policy of each dataset is named here (the agreed names its ``DatasetSpec`` uses), so the
check does not depend on the dataset registry.
"""

from __future__ import annotations

import gzip
import json

import pytest

from eval.choices import options_in_text, options_map
from eval.extract import extract_answer
from eval.grade import grade_response
from eval.policies import POLICIES, gold_letters

DATASET_POLICY = {
    "aqua": "multiple_choice", "sat_math": "multiple_choice", "mmlu_stem": "multiple_choice",
    "gaokao2024_I": "zh_choice", "gaokao2024_II": "zh_choice", "gaokao_math_qa": "zh_choice",
    "cn_middle_school": "zh_mixed", "gaokao2024_mix": "zh_mixed",
}

#: How a response may commit to a choice (``{L}``: the letter, or letters for multi-select).
FORMS = (
    "答案是 {L}", "所以答案是{L}。", "故选：{L}", "故选{L}.", "所以选{L}", "答案为（{L}）。",
    "\\boxed{{{L}}}", "$\\boxed{{\\text{{({L})}}}}$", "The answer is ({L}).", "The answer is {L}.",
    "Answer: Option {L}", "The correct answer is {L}", "Therefore, the correct answer {L}.",
    "We check every option.\n{L}", "Final Answer: The final answer is $\\boxed{{{L}}}$. I hope it is correct.",
)
#: Forms that also carry a letter set ("ACD") for multi-select rows.
MULTI_FORMS = ("答案是 {L}", "故选：{L}", "故选{L}.", "\\boxed{{{L}}}", "所以选{L}")


def mc_rows(shared_data):
    """(dataset, idx, gold letters, options) of every multiple-choice row."""
    reference = shared_data / "reference" / "official_qwen25_math_cot_prompts.jsonl.gz"
    with gzip.open(reference, "rt", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            policy = DATASET_POLICY.get(row["dataset"])
            if policy and row["dataset"] != "aqua":
                gold = gold_letters(row["gt"], POLICIES[policy].choices)
                if gold:
                    yield row["dataset"], row["idx"], gold, options_in_text(row["question"])
    for idx, line in enumerate((shared_data / "benchmarks" / "aqua.jsonl").open(encoding="utf-8")):
        row = json.loads(line)
        yield "aqua", idx, row["correct"].strip(), options_map(row["options"])


def check_row(dataset: str, gold: str, options: dict[str, str]) -> list[str]:
    """The failures of one row: a form of the gold that is not correct, or another letter
    that is not wrong."""
    policy = DATASET_POLICY[dataset]
    letters = POLICIES[policy].choices
    failures = []
    for form in FORMS if len(gold) == 1 else MULTI_FORMS:
        response = form.format(L=gold)
        grade = grade_response(response, gold, dataset=policy, choices=options)
        if not grade or extract_answer(response, dataset=policy) is None:
            failures.append(f"gold {gold} as {response!r}: {grade.status} ({grade.answer!r})")
        for other in letters:
            if other in gold and len(gold) == 1:
                continue
            wrong = form.format(L=other)
            grade = grade_response(wrong, gold, dataset=policy, choices=options)
            if grade.status != "wrong":
                failures.append(f"letter {other} against gold {gold} as {wrong!r}: {grade.status}")
    return failures


def failures_of(rows) -> list[str]:
    return [f"{dataset} idx {idx}: {failure}"
            for dataset, idx, gold, options in rows for failure in check_row(dataset, gold, options)]


def test_every_multiple_choice_row_fast_subset(shared_data):
    """Every row of the small sets and every 25th mmlu_stem row (the full check is slow)."""
    rows = [row for row in mc_rows(shared_data) if row[0] != "mmlu_stem" or row[1] % 25 == 0]
    assert len(rows) > 800
    assert failures_of(rows) == []


@pytest.mark.slow
def test_every_multiple_choice_row(shared_data):
    rows = list(mc_rows(shared_data))
    counts = {name: sum(1 for r in rows if r[0] == name) for name in DATASET_POLICY}
    assert counts["mmlu_stem"] == 3018 and counts["aqua"] == 254 and counts["sat_math"] == 32
    assert counts["gaokao_math_qa"] == 351 and counts["cn_middle_school"] == 41
    assert failures_of(rows) == []


def test_options_found_on_every_row(shared_data):
    """Every multiple-choice row lists its options in a form ``options_in_text`` reads."""
    missing = [(dataset, idx) for dataset, idx, gold, options in mc_rows(shared_data)
               if not all(letter in options for letter in gold) or len(options) < 3]
    assert missing == []


@pytest.mark.parametrize("dataset", sorted(DATASET_POLICY))
def test_policy_names_exist(dataset):
    assert DATASET_POLICY[dataset] in POLICIES
