"""Benchmark loading: every registered dataset from ../shared, bad rows, offline hub."""

from __future__ import annotations

import json

import pytest

from eval.datasets import DATASETS, Problem, load_benchmark, reference_solution
from eval.errors import DataError, DataUnavailable


@pytest.mark.parametrize("name,rows,first_gold,answer_type", [
    # --- every registered dataset, with the first gold its parser reads
    ("gsm8k", 1319, "18", "number"),
    ("math", 5000, "2", "expression"),
    ("math500", 500, "\\left( 3, \\frac{\\pi}{2} \\right)", "expression"),
    ("aime24", 30, "204", "number"),
    ("amc23", 40, "27.0", "number"),
    ("minerva_math", 272, "1.6", "expression"),
    ("olympiadbench", 675, "2", "expression"),
    ("svamp", 1000, "145.0", "number"),
    ("asdiv", 2215, "9", "number"),
    ("mawps", 2065, "43.0", "number"),
    ("aqua", 254, "A", "choice"),
    ("carp_en", 976, "b ^ { 2 } - 9 a ^ { 2 }", "expression"),
    ("college_math", 2818, "$10-4 n$", "expression"),
    ("gaokao2023en", 385, "$\\{x|-2\\leq x < 1\\}$", "expression"),
])
def test_load_every_dataset(shared_data, name, rows, first_gold, answer_type):
    problems = load_benchmark(name, data_dir=shared_data / "benchmarks")
    assert len(problems) == rows
    first = problems[0]
    assert isinstance(first, Problem)
    assert (first.dataset, first.idx, first.gold, first.answer_type) == (name, 0, first_gold, answer_type)
    assert first.question.strip()
    assert len({p.problem_id for p in problems}) == rows  # stable and unique


def test_registry_covers_the_listed_datasets():
    listed = {"gsm8k", "math", "math500", "aime24", "amc23", "svamp", "minerva_math", "olympiadbench",
              "aqua", "asdiv", "mawps", "carp_en", "college_math", "gaokao2023en"}
    assert listed <= set(DATASETS)


def test_metadata_ids_choices_and_limit(shared_data):
    bench = shared_data / "benchmarks"
    math500 = load_benchmark("math500", data_dir=bench, limit=3)
    assert len(math500) == 3
    assert math500[0].problem_id == "test/precalculus/807.json"
    assert math500[0].metadata == {"level": 2, "subject": "Precalculus"}
    assert load_benchmark("gsm8k", data_dir=bench, limit=2)[1].problem_id == "gsm8k/1"
    aqua = load_benchmark("aqua", data_dir=bench, limit=1)[0]
    assert aqua.choices[0].startswith("(A) ") and "Answer Choices" in aqua.question
    svamp = load_benchmark("svamp", data_dir=bench, limit=1)[0]
    assert svamp.question.startswith("There are 87 oranges")  # Body + Question


def test_file_and_folder_paths(tmp_path):
    (tmp_path / "gsm8k.jsonl").write_text(json.dumps({"question": "1+1?", "answer": "so #### 2"}) + "\n")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "test.jsonl").write_text(json.dumps({"problem": "2+2?", "answer": "4"}) + "\n")
    assert load_benchmark(tmp_path / "gsm8k.jsonl")[0].gold == "2"
    assert load_benchmark(tmp_path / "mine")[0].gold == "4"  # unregistered: fields guessed
    assert load_benchmark("gsm8k", data_dir=tmp_path)[0].question == "1+1?"


@pytest.mark.parametrize("content,message", [
    # --- malformed rows name file:line
    (b'{"question": "q", "answer": "#### 1"}\n{not json\n', r"gsm8k.jsonl:2: not valid JSON"),
    (b'\n{"question": "q"}\n', r"gsm8k.jsonl:2: missing field\(s\) answer; fields present: question"),
    (b'{"question": "q", "answer": "\xff#### 1"}\n', r"gsm8k.jsonl:1: not UTF-8"),
    (b'[1, 2]\n', r"gsm8k.jsonl:1: a row must be a JSON object"),
])
def test_bad_rows_raise_data_error(tmp_path, content, message):
    path = tmp_path / "gsm8k.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        load_benchmark(path)


def test_unknown_name_and_bad_limit():
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load_benchmark("nope")
    with pytest.raises(DataError, match="limit"):
        load_benchmark("gsm8k", limit=-1)


def test_offline_hub_fails_with_one_clear_sentence(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("QWEN_MATH_DATA_DIR", raising=False)
    with pytest.raises(DataUnavailable) as info:
        load_benchmark("openai/gsm8k")
    message = str(info.value)
    assert "\n" not in message and "local JSONL file" in message


def test_unreachable_hub_fails_fast(monkeypatch):
    import eval.datasets as datasets_module

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "QWEN_MATH_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(datasets_module, "hub_reachable", lambda timeout_s=3.0: False)
    with pytest.raises(DataUnavailable, match=r"cannot reach the Hugging Face hub .* math500\.jsonl"):
        load_benchmark("HuggingFaceH4/MATH-500")


@pytest.mark.parametrize("formula,solution_type,expected", [
    # ASDiv's division with remainder: the solution type names the part that answers
    ("47/6=7 r5", "Surplus", "47/6=7 r5\nThe answer is 5."),
    ("94/8=11 r6", "Floor-Division", "94/8=11 r6\nThe answer is 11."),
    ("35/6=5 r5", "Ceil-Division", "35/6=5 r5\nThe answer is 6."),
    ("36/6=6 r0", "Ceil-Division", "36/6=6 r0\nThe answer is 6."),  # exact: no extra group
    # an exact division under any type is its quotient; a remainder under another type reads nothing
    ("360/4=90 r0", "Common-Division", "360/4=90 r0\nThe answer is 90."),
    ("47/6=7 r5", "Common-Division", "47/6=7 r5"),
    # no remainder at the end: the formula as it is
    ("47/5=9 r2; 5-2=3", "Surplus", "47/5=9 r2; 5-2=3"),
    ("4+5=9", "Addition", "4+5=9"),
])
def test_asdiv_formula_solution_reads_the_remainder_by_solution_type(formula, solution_type, expected):
    row = {"body": "b", "question": "q", "answer": "1", "formula": formula, "solution_type": solution_type}
    assert reference_solution(DATASETS["asdiv"], row) == expected


@pytest.mark.parametrize("name,row,expected", [
    # the worked solution field of each dataset that has one
    ("gsm8k", {"question": "q", "answer": "2 + 2 = 4\n#### 4"}, "2 + 2 = 4\n"),
    ("math500", {"problem": "p", "answer": "4", "solution": "so \\boxed{4}"}, "so \\boxed{4}"),
    ("carp_en", {"content": "c", "answer": "4", "steps": "x = 4"}, "x = 4"),
    # none: a dataset without a solution field, or an empty one
    ("svamp", {"Body": "b", "Question": "q", "Answer": 4}, None),
    ("aqua", {"question": "q", "options": ["A)1"], "correct": "A", "rationale": ""}, None),
])
def test_reference_solution_per_dataset(name, row, expected):
    assert reference_solution(DATASETS[name], row) == expected
