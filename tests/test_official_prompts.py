"""Prompt identity with the official Qwen2.5-Math harness, and the few-shot rules behind it.

The reference (``../shared/data/reference/official_qwen25_math_cot_prompts.jsonl.gz``) holds
what the official prompt-construction code builds for every row of 22 datasets with prompt
type ``qwen25-math-cot`` and the settings of its ``sh/eval.sh`` groups. ``qwen-math prompts
--suite qwen25-math --mode cot`` must equal it byte for byte on every row, and our gold must
equal its ``gt`` on every multiple-choice row.
"""

from __future__ import annotations

import difflib
import gzip
import json
from pathlib import Path

import pytest

from qwen_math.errors import UsageError
from qwen_math.fewshot import Exemplar, FewShot, load_exemplars, shots_for, shots_wanted, user_text

REFERENCE = "reference/official_qwen25_math_cot_prompts.jsonl.gz"
EXEMPLARS = "few_shot/qwen25_math_official_exemplars.json"


def first_difference(expected: str, got: str) -> str:
    """A short unified diff of two prompts around their first differing line."""
    diff = difflib.unified_diff(expected.splitlines(), got.splitlines(), "reference", "ours",
                                lineterm="", n=1)
    return "\n".join(list(diff)[:20])


@pytest.fixture(scope="module")
def reference(shared_data: Path) -> dict[tuple[str, int], dict]:
    path = shared_data / REFERENCE
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return {(row["dataset"], row["idx"]): row for row in rows}


@pytest.fixture(scope="module")
def ours(shared_data: Path, reference) -> dict[tuple[str, int], tuple[str, object]]:
    from qwen_math.runs.prompts import dataset_prompts
    from qwen_math.suites import get_suite

    datasets = tuple(d for d in get_suite("qwen25-math").datasets
                     if (shared_data / "benchmarks" / f"{d}.jsonl").is_file())
    return {(dataset, problem.idx): (prompt, problem)
            for dataset, problem, prompt in dataset_prompts(
                datasets, suite="qwen25-math", mode="cot", setting=FewShot(),
                data_dir=str(shared_data / "benchmarks"), few_shot_file=str(shared_data / EXEMPLARS))}


def test_every_reference_prompt_is_reproduced_byte_for_byte(reference, ours):
    assert len(reference) == 21388
    missing = sorted(set(reference) - set(ours))
    assert not missing, f"{len(missing)} reference rows have no prompt of ours, first {missing[:3]}"
    for key in sorted(reference):  # report the first mismatch with a diff
        expected, (got, _) = reference[key]["prompt"], ours[key]
        assert got == expected, f"{key[0]} idx {key[1]}: prompt differs\n{first_difference(expected, got)}"


def test_gold_equals_the_official_gt_on_every_multiple_choice_row(reference, ours):
    choice_rows = [(key, problem) for key, (_, problem) in ours.items() if problem.answer_type == "choice"]
    assert len(choice_rows) > 3600  # mmlu_stem 3018, gaokao_math_qa 351, aqua 254, sat_math 32, ...
    wrong = [(key, problem.gold, reference[key]["gt"]) for key, problem in choice_rows
             if problem.gold != reference[key]["gt"]]
    assert not wrong, f"{len(wrong)} choice golds differ from gt, first {wrong[:3]}"
    for key, problem in choice_rows:  # every option is "(X) text", the gold's letters among them
        letters = {choice[1] for choice in problem.choices}
        assert all(choice.startswith(f"({choice[1]}) ") for choice in problem.choices), key
        assert set(problem.gold) <= letters, (key, problem.gold, problem.choices)


# --- the few-shot rules (no shared data needed) ----------------------------------------------

FAMILIES = {"gaokao": tuple(Exemplar(f"q{i}", f"a{i}") for i in range(5)),
            "mmlu_stem": tuple(Exemplar(f"m{i}", f"b{i}") for i in range(5)),
            "aqua": tuple(Exemplar(f"x{i}", f"y{i}") for i in range(4))}


@pytest.mark.parametrize(("dataset", "setting", "gold", "expected"), [
    # adapt-few-shot: the GaoKao family takes 5 when the gold is one choice letter, else none
    ("gaokao2024_mix", FewShot(adapt=True), "C", 5),
    ("cn_middle_school", FewShot(adapt=True), "-6", 0),
    ("gaokao2024_I", FewShot(adapt=True), "BC", 0),
    ("cmath", FewShot(adapt=True), "9", 0),
    # plain --num-shots
    ("sat_math", FewShot(5), "A", 5),
    ("gsm8k", FewShot(), "18", 0),
])
def test_shots_wanted(dataset, setting, gold, expected):
    assert shots_wanted(dataset, setting, gold) == expected


def test_family_mapping_and_user_turn():
    shots = shots_for("sat_math", FewShot(2), "A", FAMILIES)
    assert shots == FAMILIES["mmlu_stem"][:2]  # sat_math reads the mmlu_stem exemplars
    assert user_text("Q?", shots) == "m0\nb0\n\nm1\nb1\n\nQ?"
    assert user_text("Q?", ()) == "Q?"


@pytest.mark.parametrize(("dataset", "setting", "message"), [
    ("aqua", FewShot(5), "--num-shots 5 is larger than the 4 exemplars of family 'aqua'"),
    ("cmath", FewShot(2), "has no exemplars for 'cmath'"),
])
def test_few_shot_errors_are_one_line(dataset, setting, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        shots_for(dataset, setting, "A", FAMILIES)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("text", "where"), [
    ('{"gsm8k": [\n  {"question": "q", "answer": "a"},\n  oops\n]}', ":3: not valid JSON"),
    ('{"gsm8k": [{"question": "q", "answer": "a"}],\n "math": {"question": "q"}}', ":2: family 'math' must be a list"),
    ('{"gsm8k": [{"question": "q"}]}', ":1: family 'gsm8k' item 0 needs text fields"),
    ('[1, 2]', ":1: expected an object"),
])
def test_malformed_exemplar_file_names_file_and_line(tmp_path, text, where):
    path = tmp_path / "shots.json"
    path.write_text(text)
    with pytest.raises(UsageError, match=f"{path}{where}".replace("(", r"\(")):
        load_exemplars(path)


# --- question construction for a dataset with no local file here (tabmwp) ---------------------

@pytest.mark.parametrize(("row", "expected"), [
    ({"table_title": "Prices", "table": "a | 1\nb | 2", "question": "What is a?", "choices": None, "answer": "1"},
     'Read the following table regarding "Prices" and answer a question:\na | 1\nb | 2\nWhat is a?'),
    ({"table_title": None, "table": "x | 3", "question": "Which is larger?", "choices": ["x", "y"], "answer": "x"},
     "Read the following table and answer a question:\nx | 3\nWhich is larger? Please select from the following options: ['x', 'y']"),
])
def test_tabmwp_question_as_the_official_harness_builds_it(tmp_path, row, expected):
    from eval.datasets import load_benchmark

    (tmp_path / "tabmwp.jsonl").write_text(json.dumps(row) + "\n")
    problem = load_benchmark("tabmwp", data_dir=tmp_path)[0]
    assert problem.question == expected and problem.gold == row["answer"]
