"""`qwen-math rescore`: official Qwen/ToRA files and sample records, JSON and text output."""

from __future__ import annotations

import json
import re

import pytest

from qwen_math.cli import main
from qwen_math.record import SampleRecord, Turn

QWEN_800 = "model_outputs/qwen25_math_instruct_math_cot_100x8.jsonl"


def rescore_json(capsys, *args):
    code = main(["rescore", "--json", *map(str, args)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def test_official_file_json(shared_data, capsys, tmp_path):
    out = tmp_path / "verdicts.jsonl"
    result = rescore_json(capsys, shared_data / QWEN_800, "--out", out)
    assert (result["n"], result["problems"]) == (8, 100)
    assert result["acc"] == pytest.approx(737 / 800)
    assert list(result["pass@k"]) == list(result["maj@k"]) == ["1", "2", "4", "8"]
    disagreements = {(d["idx"], d["sample"]) for d in result["disagreements"]}
    assert disagreements == {(3, i) for i in range(8)} | {(72, 7)}
    verdicts = [json.loads(line) for line in out.open()]
    assert len(verdicts) == 800 and sum(v["correct"] for v in verdicts) == 737


def test_official_file_text(shared_data, capsys):
    assert main(["rescore", str(shared_data / QWEN_800)]) == 0
    text = capsys.readouterr().out
    assert "acc     92.12 %" in text and "9 verdict(s) differ" in text and "maj@k" in text


def record_row(idx, sample, text, gold, *, mode="cot", answer=None):
    return SampleRecord(
        dataset="math", idx=idx, sample=sample, question_id=f"math/{idx}", question="q",
        turns=(Turn(text=text),), answer=answer, gold=gold, correct=False, finish_reason="stop",
        mode=mode, metadata={"level": "Level 1"},
    ).to_json()


def test_sample_records(tmp_path, capsys):
    path = tmp_path / "samples.jsonl"
    rows = [
        record_row(0, 0, "so \\boxed{\\frac12}", "0.5"),
        record_row(0, 1, "so \\boxed{3}", "0.5"),
        record_row(1, 0, "program", "7", mode="pot", answer="7.0"),  # PoT keeps its answer
        record_row(1, 1, "no answer here", "7"),
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = rescore_json(capsys, path)
    assert (result["n"], result["problems"], result["acc"]) == (2, 2, 0.5)
    assert len(result["disagreements"]) == 2  # the records said correct=False for both


def test_several_files_pool(tmp_path, capsys):
    for name, gold in (("a.jsonl", "1"), ("b.jsonl", "2")):
        (tmp_path / name).write_text(json.dumps({"idx": 0, "code": ["\\boxed{1}"], "answer": gold}) + "\n")
    result = rescore_json(capsys, tmp_path / "a.jsonl", tmp_path / "b.jsonl")
    assert set(result["files"]) == {str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")}
    assert (result["problems"], result["acc"]) == (2, 0.5)


@pytest.mark.parametrize("content,message", [
    # --- bad input: one line naming file:line, exit 2
    ('{"idx": 0, "code": ["\\\\boxed{1}"], "gt": "1"}\n{broken\n', "x.jsonl:2: not valid JSON"),
    ('{"idx": 0, "question": "q"}\n', "x.jsonl:1: neither an official output row .* fields present: idx, question"),
    ('{"idx": 0, "code": "not a list"}\n', "x.jsonl:1: field 'code' must be a list"),
    ("", "x.jsonl: no samples"),
])
def test_bad_files(tmp_path, capsys, content, message):
    path = tmp_path / "x.jsonl"
    path.write_text(content)
    assert main(["rescore", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert re.search(message, err), err


def test_missing_file(tmp_path, capsys):
    assert main(["rescore", str(tmp_path / "nope.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_pooled_files_keep_their_n_and_every_estimate_sits_in_its_interval(shared_data, capsys):
    files = [shared_data / QWEN_800, shared_data / "model_outputs/tora_code_34b_gsm8k_tir.jsonl"]
    result = rescore_json(capsys, *files)
    assert result["n_per_file"] == {str(files[0]): "8", str(files[1]): "1"}
    assert (result["n"], result["n_max"], result["problems"]) == (1, 8, 100 + 1319)
    assert "disagreements" not in result  # listed once, with their file
    assert len(result["files"][str(files[0])]["disagreements"]) == 9
    for summary in (result, *result["files"].values()):
        low, high = summary["acc_ci95"]
        assert low <= summary["acc"] <= high
        for name in ("pass@k", "maj@k"):
            for k, value in summary[name].items():
                low, high = summary[f"{name}_ci95"][k]
                assert low <= value <= high, (name, k)
    # pass@1 / maj@1 of the n=8 file use all 8 samples (737 of 800 correct), not sample 0
    qwen = result["files"][str(files[0])]
    assert qwen["pass@k"]["1"] == pytest.approx(737 / 800)
    assert qwen["maj@k"]["1"] == pytest.approx(737 / 800)


def test_pooled_text_lists_disagreements_once(tmp_path, capsys):
    for name in ("a.jsonl", "b.jsonl"):
        (tmp_path / name).write_text(json.dumps(
            {"idx": 0, "code": ["\\boxed{1}", "\\boxed{1}"], "answer": "1", "pred": ["1", "1"],
             "score": [False, True]}) + "\n")
    assert main(["rescore", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl")]) == 0
    text = capsys.readouterr().out
    assert text.count("ours correct") == 2  # one per file, none repeated under "pooled"
    assert "pooled: 2 problems x n=2" in text
