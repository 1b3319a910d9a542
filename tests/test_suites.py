"""Suites, few-shot flags and their bad input; the model-card report beside the published numbers.

The done-when run (``eval --suite qwen25-math`` on the tiny checkpoint, ``--limit 2 --max-tokens
32``, killed and rerun, then ``report`` with the published column) uses a data dir holding three
of the suite's datasets (one per block family) so the test stays around a minute; the other
suite datasets are "not run" (one warning, exit 0), which the test checks too.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qwen_math.cli import main
from qwen_math.errors import ResumeRefused
from qwen_math.runs.manifest import Fingerprint, check_resumable

EXEMPLARS = "few_shot/qwen25_math_official_exemplars.json"
PUBLISHED = "published/qwen25_math_published.json"


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of ``qwen-math -q ARGV``; a traceback fails the test."""
    try:
        code = main(["-q", *argv])
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return code, out, err


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    return path


# --- listing and bad input (no model) ------------------------------------------------------

def test_list_suites_prints_every_dataset_with_its_setting(capsys):
    code, out, _ = run_cli(capsys, "eval", "--list-suites")
    assert code == 0
    for fragment in ("qwen25-math", "gaokao2024_I", "adapt-few-shot", "mmlu_stem", "5-shot", "aime24", "tabmwp"):
        assert fragment in out


@pytest.mark.parametrize(("argv", "code", "message"), [
    # an unknown suite
    (["eval", "--suite", "nope"], 2, "unknown suite 'nope'; known suites: qwen25-math"),
    (["prompts", "--suite", "nope"], 2, "unknown suite 'nope'"),
    # suite and per-run few-shot flags, TIR with shots, nothing to run
    (["eval", "--suite", "qwen25-math", "--num-shots", "3"], 2, "cannot be combined with --suite"),
    (["prompts", "--datasets", "x", "--num-shots", "-1"], 2, "--num-shots must be >= 0"),
    (["eval"], 2, "name the benchmarks"),
])
def test_bad_suite_input_is_one_line(capsys, argv, code, message):
    got, _, err = run_cli(capsys, *argv)
    assert got == code
    assert message in err
    assert len(err.strip().splitlines()) == 1, err


@pytest.fixture()
def mmlu_dir(tmp_path):
    rows = [{"question": "2+2?", "choices": ["3", "4", "5", "6"], "answer": 1, "type": "x"}]
    write_jsonl(tmp_path / "mmlu_stem.jsonl", rows)
    write_jsonl(tmp_path / "aqua.jsonl", [{"question": "1+1?", "options": ["A)1", "B)2"], "correct": "B"}])
    return tmp_path


@pytest.mark.parametrize(("extra", "message"), [
    # the few-shot file missing, or no file found at all
    (["--few-shot-file", "/nonexistent/shots.json"], "--few-shot-file /nonexistent/shots.json: no such file"),
    ([], "few-shot prompts need the exemplar file: pass --few-shot-file FILE"),
])
def test_few_shot_file_missing(capsys, mmlu_dir, monkeypatch, extra, message):
    monkeypatch.delenv("QWEN_MATH_FEW_SHOT_FILE", raising=False)
    code, _, err = run_cli(capsys, "prompts", "--datasets", "mmlu_stem", "--data-dir", str(mmlu_dir),
                           "--num-shots", "2", *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


def test_few_shot_file_from_the_environment(capsys, mmlu_dir, monkeypatch):
    shots = mmlu_dir / "shots.json"
    shots.write_text(json.dumps({"mmlu_stem": [{"question": "Q1", "answer": "A1"}]}))
    monkeypatch.setenv("QWEN_MATH_FEW_SHOT_FILE", str(shots))
    code, out, _ = run_cli(capsys, "prompts", "--datasets", "mmlu_stem", "--data-dir", str(mmlu_dir),
                           "--num-shots", "1")
    row = json.loads(out)
    assert code == 0 and row["gold"] == "B"
    assert "user\nQ1\nA1\n\n2+2?\nAnswer Choices: (A) 3 (B) 4 (C) 5 (D) 6<|im_end|>" in row["prompt"]
    # more shots than the family holds: one line, exit 2
    code, _, err = run_cli(capsys, "prompts", "--datasets", "mmlu_stem", "--data-dir", str(mmlu_dir),
                           "--num-shots", "2")
    assert code == 2 and "--num-shots 2 is larger than the 1 exemplars of family 'mmlu_stem'" in err


@pytest.mark.parametrize(("name", "row", "message"), [
    ("mmlu_stem", {"question": "2+2?", "answer": 1}, "mmlu_stem.jsonl:1: field 'choices' (the options"),
    ("sat_math", {"question": "2+2?", "options": "", "Answer": "A"}, "sat_math.jsonl:1: field 'options'"),
    ("gaokao_math_qa", {"question": "选?", "options": None, "label": "A"}, "gaokao_math_qa.jsonl:1: field 'options'"),
    ("gaokao2024_I", {"question": "没有选项", "answer": "A"}, "gaokao2024_I.jsonl:1: a multiple-choice row (gold 'A') whose options cannot be read"),
])
def test_a_row_without_the_options_its_spec_needs(capsys, tmp_path, name, row, message):
    write_jsonl(tmp_path / f"{name}.jsonl", [row])
    code, _, err = run_cli(capsys, "prompts", "--datasets", name, "--data-dir", str(tmp_path))
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err


# --- manifest: old runs resume ---------------------------------------------------------------

def test_an_old_run_without_the_suite_fields_still_resumes(tmp_path):
    old = Fingerprint({"mode": "cot", "sampling.n": 1})
    new = Fingerprint({"mode": "cot", "sampling.n": 1, "suite": None, "few_shot.num_shots": 0,
                       "few_shot.adapt": False, "few_shot.sha256": None})
    check_resumable(old, new, run_dir=tmp_path, extending=False)  # no exception
    with pytest.raises(ResumeRefused, match=re.escape("few_shot.num_shots: 0 -> 5")):
        check_resumable(old, Fingerprint({**new.fields, "few_shot.num_shots": 5}), run_dir=tmp_path, extending=False)


# --- the done-when run on the tiny checkpoint -------------------------------------------------

SUITE_SUBSET = ("gsm8k", "mmlu_stem", "gaokao2024_mix")


@pytest.fixture()
def subset_dir(shared_data: Path, tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    for name in SUITE_SUBSET:
        lines = (shared_data / "benchmarks" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()[:3]
        (data / f"{name}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return data


def test_suite_run_on_the_tiny_checkpoint_resumes_and_reports_the_card(shared_data, subset_dir, tiny_checkpoint, tmp_path):
    run_dir = tmp_path / "R"
    command = [sys.executable, "-m", "qwen_math", "eval", "--suite", "qwen25-math", "--model", str(tiny_checkpoint),
               "--data-dir", str(subset_dir), "--few-shot-file", str(shared_data / EXEMPLARS), "--limit", "2",
               "--max-tokens", "32", "--output-dir", str(run_dir), "--device", "cpu", "--dtype", "float32",
               "--no-progress"]
    # killed once its first sample is written ...
    first = run_dir / "gsm8k" / "samples.jsonl"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while process.poll() is None and time.monotonic() < deadline and not (first.is_file() and first.read_bytes().count(b"\n")):
        time.sleep(0.02)
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    # ... and rerun: it resumes (nothing regenerated) and finishes
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not run" in result.stderr and "tabmwp" in result.stderr  # the absent datasets, one warning
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["suite"] == "qwen25-math"
    assert set(manifest["config"]["not_run"]) >= {"math", "cmath", "aime24"}
    assert manifest["config"]["few_shot"]["mmlu_stem"] == {"num_shots": 5, "adapt": False}
    for name in SUITE_SUBSET:
        assert (run_dir / name / "samples.jsonl").read_bytes().count(b"\n") == 2
    if process.returncode == -signal.SIGKILL:
        assert manifest["resume_history_time"], "the rerun did not resume the killed run"
    # the prompts carried the exemplars: mmlu_stem 5-shot
    record = json.loads((run_dir / "mmlu_stem" / "samples.jsonl").read_text().splitlines()[0])
    assert record["prompt_tokens"] > 400
    # report: the card layout with the published column
    report = subprocess.run([sys.executable, "-m", "qwen_math", "report", str(run_dir), "--published",
                             "Qwen2.5-Math-7B-Instruct", "--published-file", str(shared_data / PUBLISHED), "--html"],
                            capture_output=True, text=True, timeout=300, check=False)
    assert report.returncode == 0, report.stderr[-3000:]
    for fragment in ("English:", "Chinese:", "Competitions:", "published greedy (Qwen2.5-Math-7B-Instruct, cot)",
                     "GaoKao (pooled, our reading)", "GaoKao (mean of 1)", "not run (no data file)", "95.2", "-95.2"):
        assert fragment in report.stdout, report.stdout
    html = (run_dir / "report" / "report.html").read_text()
    assert 'id="card"' in html and 'id="plot-card_english"' in html
    shutil.rmtree(run_dir)
