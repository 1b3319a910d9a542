"""`qwen-math eval` end to end with the scripted backend: the run directory, resume after an
interruption, refused and extended resumes, progress, and the faults of the issue (full disk,
grader crash, rows without gold, bad input)."""

from __future__ import annotations

import errno
import json
import os
import re

import pytest

from qwen_math.cli import main
from qwen_math.errors import ExitCode
from qwen_math.record import strip_time_dependent
from qwen_math.runs.store import RunLayout

#: gsm8k test rows 0-2 have gold 18, 3, 70: sample answers alternate right and wrong.
SCRIPT_LINES = [
    ["Janet keeps 16 - 3 - 4 = 9 eggs. The answer is $\\boxed{18}$."],
    ["I think it is $\\boxed{5}$."],
    ["No final answer here."],
]


@pytest.fixture
def script(tmp_path):
    def write(lines=SCRIPT_LINES):
        path = tmp_path / f"script{len(list(tmp_path.glob('script*')))}.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        return path

    return write


@pytest.fixture
def eval_argv(shared_data, script):
    """argv of a small scripted CoT run on gsm8k; keyword overrides replace flags."""

    def argv(run_dir, *extra, lines=SCRIPT_LINES, limit=3, n=2):
        return [
            "eval", "--datasets", "gsm8k", "--data-dir", str(shared_data / "benchmarks"),
            "--limit", str(limit), "-n", str(n), "--mode", "cot", "--backend", "scripted",
            "--script", str(script(lines)), "--output-dir", str(run_dir), "--max-tokens", "64",
            "--no-progress", "--grader-workers", "1", *extra,
        ]

    return argv


def samples_of(run_dir, dataset="gsm8k"):
    lines = RunLayout(run_dir).samples(dataset).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def keyed(records):
    return {(r["idx"], r["sample"]): strip_time_dependent(r) for r in records}


# --- the run directory --------------------------------------------------------------------
def test_eval_writes_manifest_samples_problems_and_metrics(tmp_path, eval_argv, capsys):
    run = tmp_path / "run"
    assert main(eval_argv(run)) == 0
    out = capsys.readouterr().out
    assert "gsm8k" in out and "run directory" in out
    layout = RunLayout(run)

    records = samples_of(run)
    assert sorted((r["idx"], r["sample"]) for r in records) == [(i, s) for i in range(3) for s in range(2)]
    assert all(r["dataset"] == "gsm8k" and r["mode"] == "cot" for r in records)

    rows = [json.loads(line) for line in layout.problems("gsm8k").read_text().splitlines()]
    assert [row["idx"] for row in rows] == [0, 1, 2]
    for row in rows:
        assert {"idx", "question", "gt", "code", "pred", "score"} <= set(row)
        assert len(row["code"]) == len(row["pred"]) == len(row["score"]) == 2

    metrics = json.loads(layout.dataset_metrics("gsm8k").read_text())
    assert metrics["counters"]["samples"] == 6
    assert json.loads(layout.metrics.read_text())["datasets"]["gsm8k"] == metrics

    # `qwen-math rescore` of the samples reproduces metrics.json (the run's counters aside)
    assert main(["rescore", "--json", str(layout.samples("gsm8k"))]) == 0
    rescored = json.loads(capsys.readouterr().out)
    assert 0 < metrics["acc"] < 1
    assert {k: v for k, v in metrics.items() if k not in ("counters", "run_time")} == {
        k: rescored[k] for k in metrics if k not in ("counters", "run_time")}

    manifest = json.loads(layout.manifest.read_text())
    assert manifest["fingerprint"]["fields"]["sampling.n"] == 2
    assert manifest["fingerprint"]["fields"]["datasets.gsm8k.checksum"]
    assert manifest["datasets"]["gsm8k"]["source_checksum"]
    assert manifest["prompt"]["sha256"] and manifest["versions"]["qwen-math"]
    assert manifest["host"]["hostname"]
    # the foundation rule: time-dependent values only under time/duration/latency keys
    stripped = json.dumps(strip_time_dependent(manifest))
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", stripped)


# --- resume -------------------------------------------------------------------------------
def test_resume_after_a_torn_write_keeps_every_line_and_regenerates_nothing(tmp_path, eval_argv):
    one_line = [SCRIPT_LINES[0]]  # the scripted backend assigns lines in order: keep one
    reference, run = tmp_path / "reference", tmp_path / "run"
    assert main(eval_argv(reference, lines=one_line)) == 0
    assert main(eval_argv(run, lines=one_line)) == 0
    path = RunLayout(run).samples("gsm8k")
    lines = path.read_bytes().splitlines(keepends=True)
    kept = b"".join(lines[:3])
    path.write_bytes(kept + lines[3][:25])  # SIGKILL in the middle of the fourth write
    RunLayout(run).dataset_metrics("gsm8k").unlink()

    assert main(eval_argv(run, lines=one_line)) == 0
    assert path.read_bytes().startswith(kept)  # nothing written was rewritten
    records = samples_of(run)
    assert len(records) == 6  # every (problem, sample) exactly once
    assert keyed(records) == keyed(samples_of(reference))


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--top-p", "0.95"], "sampling.top_p: 0.8 -> 0.95"),
        (["--max-tokens", "32"], "sampling.max_tokens: 64 -> 32"),
        (["--seed", "7"], "sampling.seed: 0 -> 7"),
        (["--limit", "2"], "limit: 3 -> 2"),
    ],
)
def test_resume_with_a_different_configuration_is_refused(tmp_path, eval_argv, capsys, extra, named):
    run = tmp_path / "run"
    assert main(eval_argv(run)) == 0
    before = RunLayout(run).samples("gsm8k").read_bytes()
    capsys.readouterr()
    assert main([*eval_argv(run), *extra]) == ExitCode.RESUME_REFUSED
    err = capsys.readouterr().err
    assert named in err and "--overwrite" in err
    assert RunLayout(run).samples("gsm8k").read_bytes() == before
    # --overwrite discards the old run and starts again
    assert main([*eval_argv(run), *extra, "--overwrite"]) == 0


def test_extend_n_adds_samples_without_regenerating(tmp_path, eval_argv):
    run = tmp_path / "run"
    assert main(eval_argv(run, n=2)) == 0
    before = RunLayout(run).samples("gsm8k").read_bytes()
    assert main([*eval_argv(run, n=2), "--extend-n", "4"]) == 0
    after = RunLayout(run).samples("gsm8k").read_bytes()
    assert after.startswith(before)
    assert sorted((r["idx"], r["sample"]) for r in samples_of(run)) == [(i, s) for i in range(3) for s in range(4)]
    manifest = json.loads(RunLayout(run).manifest.read_text())
    assert manifest["fingerprint"]["fields"]["sampling.n"] == 4
    # the extended run resumes under its new n, and refuses the old one
    assert main(eval_argv(run, n=4)) == 0
    assert main(eval_argv(run, n=2)) == ExitCode.RESUME_REFUSED


def test_ctrl_c_stops_with_exit_3_and_the_same_command_resumes(tmp_path, eval_argv, monkeypatch, capsys):
    from qwen_math.runs import grading

    real = grading.SampleGrader.grade_items
    calls = {"count": 0}

    def interrupt_at_the_third(self, items):
        calls["count"] += 1
        if calls["count"] == 3:
            raise KeyboardInterrupt
        return real(self, items)

    monkeypatch.setattr(grading.SampleGrader, "grade_items", interrupt_at_the_third)
    run = tmp_path / "run"
    assert main(eval_argv(run)) == ExitCode.PARTIAL
    assert "rerun the same command to resume" in capsys.readouterr().err
    written = len(samples_of(run))
    assert 0 < written < 6
    monkeypatch.undo()
    assert main(eval_argv(run)) == 0
    assert len(samples_of(run)) == 6


# --- progress -----------------------------------------------------------------------------
def test_progress_goes_to_stderr_as_plain_lines_off_a_terminal(tmp_path, eval_argv, capsys):
    argv = [a for a in eval_argv(tmp_path / "run") if a != "--no-progress"]
    assert main([*argv, "--progress-interval", "0"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("gsm8k: samples")]
    assert lines and "samples 6/6" in lines[-1] and "maj@2" in lines[-1] and "tok/s" in lines[-1]


# --- faults -------------------------------------------------------------------------------
def test_full_disk_stops_with_valid_jsonl_and_resumes(tmp_path, eval_argv, monkeypatch, capsys):
    run = tmp_path / "run"
    samples_path = str(RunLayout(run).samples("gsm8k"))
    real_write, real_open = os.write, os.open
    fds: set[int] = set()
    writes = {"count": 0}

    def tracking_open(path, *args, **kwargs):
        fd = real_open(path, *args, **kwargs)
        if str(path) == samples_path:
            fds.add(fd)
        return fd

    def write_until_full(fd, data):
        if fd in fds:
            writes["count"] += 1
            if writes["count"] == 4:  # the disk fills during the fourth sample
                real_write(fd, bytes(data[:10]))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "open", tracking_open)
    monkeypatch.setattr(os, "write", write_until_full)
    assert main(eval_argv(run)) == ExitCode.PARTIAL
    assert "disk full" in capsys.readouterr().err
    monkeypatch.undo()
    assert len(samples_of(run)) == 3  # valid JSONL up to the last complete line
    assert main(eval_argv(run)) == 0
    assert len(samples_of(run)) == 6


def test_grader_crash_is_recorded_on_the_sample_and_the_run_continues(tmp_path, eval_argv, monkeypatch):
    from qwen_math.runs import grading

    real = grading.SampleGrader.grade_items
    calls = {"count": 0}

    def crash_once(self, items):
        calls["count"] += 1
        if calls["count"] == 2:
            raise RuntimeError("grader worker pool died")
        return real(self, items)

    monkeypatch.setattr(grading.SampleGrader, "grade_items", crash_once)
    run = tmp_path / "run"
    assert main(eval_argv(run)) == 0
    statuses = [r["grade_status"] for r in samples_of(run)]
    assert statuses.count("error") == 1 and len(statuses) == 6
    metrics = json.loads(RunLayout(run).dataset_metrics("gsm8k").read_text())
    assert metrics["counters"]["grader_errors"] == 1


@pytest.mark.parametrize(
    "argv_edit, code, message",
    [
        # unknown benchmark
        (lambda a: [x if x != "gsm8k" else "no_such_benchmark" for x in a], ExitCode.USAGE, "no_such_benchmark"),
        # a --data-dir that does not exist (no silent fallback to the hub)
        (lambda a: [x if not x.endswith("benchmarks") else "/nonexistent/dir" for x in a], ExitCode.USAGE,
         "--data-dir /nonexistent/dir: no such folder"),
        # --extend-n needs a run
        (lambda a: [*a, "--extend-n", "4"], ExitCode.USAGE, "--extend-n needs an existing run"),
        # bad values
        (lambda a: [*a, "--limit", "0"], ExitCode.USAGE, "--limit must be >= 1"),
        (lambda a: [*a, "--top-p", "1.5"], ExitCode.USAGE, "top_p must be in (0, 1]"),
    ],
)
def test_bad_input_exits_with_a_one_line_error(tmp_path, eval_argv, capsys, argv_edit, code, message):
    assert main(argv_edit(eval_argv(tmp_path / "run"))) == code
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_a_folder_that_is_not_a_run_is_not_touched(tmp_path, eval_argv, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("mine")
    assert main(eval_argv(run)) == ExitCode.USAGE
    assert "not a run directory" in capsys.readouterr().err
    assert [p.name for p in run.iterdir()] == ["notes.txt"]


def test_rows_without_gold_are_reported_and_excluded(tmp_path, eval_argv, caplog):
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"question": "1+1?", "answer": "#### 2"}, {"question": "no gold here", "answer": ""},
            {"question": "2+2?", "answer": "#### 4"}]
    (data / "gsm8k.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = eval_argv(tmp_path / "run")
    argv[argv.index("--data-dir") + 1] = str(data)
    assert main(argv) == 0
    assert sorted({r["idx"] for r in samples_of(tmp_path / "run")}) == [0, 2]
    assert "no gold answer and are excluded" in caplog.text
    manifest = json.loads(RunLayout(tmp_path / "run").manifest.read_text())
    assert manifest["datasets"]["gsm8k"]["excluded_no_gold"] == [1]


# --- tool calls: sandbox failures are recorded on the sample, the run goes on -------------
#: each first completion ends where the model asks for the output (the TIR stop string)
TIR_LINES = [
    ["Compute.\n```python\nprint(16 - 3 - 4)\n```\n```output", "So $9 \\cdot 2 = \\boxed{18}$."],
    ["```python\nprint(1/0)\n```\n```output", "That failed; $\\boxed{3}$."],
    ["```python\nimport os\nos.kill(os.getpid(), 9)\n```\n```output", "No answer."],
]


def test_tir_run_records_sandbox_failures_and_continues(tmp_path, eval_argv):
    run = tmp_path / "run"
    argv = eval_argv(run, lines=TIR_LINES, n=3)
    argv[argv.index("cot")] = "tir"
    assert main(argv) == 0
    records = samples_of(run)
    assert len(records) == 9
    statuses = sorted({turn["status"] for r in records for turn in r["turns"] if turn["code"]})
    assert "ok" in statuses and "error" in statuses
    assert set(statuses) - {"ok", "error"}, statuses  # the killed program: crashed or blocked
    counters = json.loads(RunLayout(run).dataset_metrics("gsm8k").read_text())["counters"]
    assert counters["tool_calls"] == 9 and counters["exec_errors"] == 6
    sandbox = json.loads(RunLayout(run).manifest.read_text())["sandbox"]
    assert sandbox["minimum_met"] and {"process", "seccomp"} <= set(sandbox["active"])


# --- flags: the official script's spellings are aliases ----------------------------------
@pytest.mark.parametrize(
    "official, ours",
    [
        (["--data_names", "gsm8k,math500"], ["--datasets", "gsm8k,math500"]),
        (["--datasets", "gsm8k", "--n_sampling", "8"], ["--datasets", "gsm8k", "-n", "8"]),
        (["--datasets", "gsm8k", "--max_tokens_per_call", "99"], ["--datasets", "gsm8k", "--max-tokens", "99"]),
        (["--datasets", "gsm8k", "--model_name_or_path", "m"], ["--datasets", "gsm8k", "--model", "m"]),
        (["--datasets", "gsm8k", "--prompt_type", "tir"], ["--datasets", "gsm8k", "--mode", "tir"]),
        (["--datasets", "gsm8k", "--output_dir", "r", "--data_dir", "d"],
         ["--datasets", "gsm8k", "--output-dir", "r", "--data-dir", "d"]),
    ],
)
def test_official_flag_spellings_build_the_same_config(official, ours):
    from qwen_math.cli import build_parser
    from qwen_math.commands.evaluate import config_from_args

    parser = build_parser()
    configs = [config_from_args(parser.parse_args(["eval", *argv])) for argv in (official, ours)]
    assert configs[0] == configs[1]


def test_default_run_dir_is_stable_so_the_same_command_resumes():
    from qwen_math.cli import build_parser
    from qwen_math.commands.evaluate import config_from_args

    argv = ["eval", "--datasets", "gsm8k", "--model", "/models/Qwen2.5-Math-7B-Instruct/", "-n", "4"]
    config = config_from_args(build_parser().parse_args(argv))
    assert str(config.output_dir) == "runs/Qwen2.5-Math-7B-Instruct-gsm8k-cot-n4-seed0"
