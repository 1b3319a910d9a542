"""The run directory's building blocks: crash-safe JSONL, fingerprints, progress lines."""

from __future__ import annotations

import errno
import io
import json
import os
import time

import pytest

from qwen_math.errors import ExitCode, ResumeRefused, UsageError
from qwen_math.record import SampleRecord, Turn
from qwen_math.runs.jsonl import (
    AppendOnlyJsonl,
    DiskFull,
    read_jsonl_records,
    repair_torn_tail,
)
from qwen_math.runs.manifest import Fingerprint, check_resumable, flatten
from qwen_math.runs.progress import RunProgress, format_eta, plain_majority_correct
from qwen_math.runs.store import dataset_dir_name


# --- JSONL: torn tails are dropped, corruption in the middle is an error -----------------
@pytest.mark.parametrize(
    "content, records, torn",
    [
        # clean files
        (b"", 0, 0),
        (b'{"a": 1}\n{"a": 2}\n', 2, 0),
        # a write cut short by SIGKILL / power loss: no final newline
        (b'{"a": 1}\n{"a": 2', 1, 7),
        # a complete object whose newline never landed is still torn (the writer writes both)
        (b'{"a": 1}\n{"a": 2}', 1, 8),
        # power loss on ext4 can leave NUL blocks at the end
        (b'{"a": 1}\n\x00\x00\x00\x00', 1, 4),
        (b'{"a": 1}\n\x00\x00\n', 1, 3),
    ],
)
def test_read_drops_only_a_torn_tail(tmp_path, content, records, torn):
    path = tmp_path / "s.jsonl"
    path.write_bytes(content)
    contents = read_jsonl_records(path)
    assert len(contents.records) == records
    assert contents.torn_bytes == torn
    assert repair_torn_tail(path) == torn
    assert path.read_bytes() == content[: len(content) - torn]


def test_corrupt_line_in_the_middle_names_file_and_line(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(b'{"a": 1}\nnot json\n{"a": 3}\n')
    with pytest.raises(UsageError, match=r"s\.jsonl:2"):
        read_jsonl_records(path)


def test_writer_appends_one_line_per_record_and_survives_reopen(tmp_path):
    path = tmp_path / "d" / "s.jsonl"
    with AppendOnlyJsonl(path) as writer:
        writer.append({"k": 1, "text": "ünïcode\nnewline"})
    with AppendOnlyJsonl(path) as writer:
        writer.append({"k": 2})
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["k"] for line in lines] == [1, 2]


# --- full disk: a clear error, the file stays valid JSONL ---------------------------------
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_full_disk_cuts_back_to_the_last_complete_line(tmp_path, monkeypatch, code):
    path = tmp_path / "s.jsonl"
    writer = AppendOnlyJsonl(path)
    writer.append({"k": 1})
    real_write = os.write

    def write_half_then_fail(fd, data):  # a disk that fills up in the middle of a line
        if fd == writer._fd and len(data) > 4:
            real_write(fd, bytes(data[:4]))
            raise OSError(code, os.strerror(code))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write_half_then_fail)
    with pytest.raises(DiskFull, match="disk full") as exc:
        writer.append({"k": 2, "long": "x" * 100})
    assert exc.value.exit_code == ExitCode.PARTIAL
    monkeypatch.undo()
    writer.close()
    assert [r["k"] for r in read_jsonl_records(path).records] == [1]
    assert read_jsonl_records(path).torn_bytes == 0


# --- fingerprint: differences are named, --extend-n may change only n --------------------
def test_flatten_names_nested_fields():
    assert flatten("", {"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a.b": 1, "a.c": [1, 2], "d": None}


@pytest.mark.parametrize(
    "old, new, extending, message",
    [
        # same run: resumes
        ({"sampling.n": 4, "mode": "tir"}, {"sampling.n": 4, "mode": "tir"}, False, None),
        # the anchor's stale-resume bug: n, top_p, max_tokens changed silently
        ({"sampling.n": 4}, {"sampling.n": 8}, False, r"sampling\.n: 4 -> 8"),
        ({"sampling.top_p": 0.8}, {"sampling.top_p": 0.95}, False, r"sampling\.top_p: 0\.8 -> 0\.95"),
        ({"sampling.max_tokens": 512, "mode": "cot"}, {"sampling.max_tokens": 64, "mode": "tir"}, False,
         r"mode: \"cot\" -> \"tir\"; sampling\.max_tokens: 512 -> 64"),
        # --extend-n: n may grow, nothing else may change, n may not shrink
        ({"sampling.n": 4}, {"sampling.n": 8}, True, None),
        ({"sampling.n": 4, "sampling.seed": 0}, {"sampling.n": 8, "sampling.seed": 1}, True, r"sampling\.seed: 0 -> 1"),
        ({"sampling.n": 4}, {"sampling.n": 2}, True, r"below the run's n = 4"),
    ],
)
def test_resume_is_refused_naming_each_difference(tmp_path, old, new, extending, message):
    check = lambda: check_resumable(Fingerprint(old), Fingerprint(new), run_dir=tmp_path, extending=extending)  # noqa: E731
    if message is None:
        check()
        return
    with pytest.raises(ResumeRefused, match=message) as exc:
        check()
    assert exc.value.exit_code == ExitCode.RESUME_REFUSED
    assert "--overwrite" in str(exc.value)


def test_fingerprint_digest_ignores_field_order():
    assert Fingerprint({"a": 1, "b": 2}).digest == Fingerprint({"b": 2, "a": 1}).digest
    assert Fingerprint({"a": 1}).digest != Fingerprint({"a": 2}).digest


# --- progress: plain periodic line off a terminal ----------------------------------------
def progress_record(idx: int, answer: str, correct: bool, statuses: tuple[str, ...] = ()) -> SampleRecord:
    turns = (*(Turn(text="", code="x = 1", status=status) for status in statuses), Turn(text="done"))
    return SampleRecord(dataset="gsm8k", idx=idx, sample=0, question_id=str(idx), question="q",
                        turns=turns, answer=answer, gold="5", correct=correct, finish_reason="eos",
                        completion_tokens=10)


def test_progress_line_appears_while_no_sample_has_finished():
    # long generations: every sample still running, the user still sees a periodic line
    stream = io.StringIO()
    with RunProgress("gsm8k", total_samples=80, n=4, stream=stream, interval_s=0.05):
        time.sleep(0.3)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 2 and all(line.startswith("gsm8k: samples 0/80") for line in lines)
    assert "elapsed" in lines[-1]


def test_plain_progress_line_reports_counts_accuracy_and_maj():
    stream = io.StringIO()
    with RunProgress("gsm8k", total_samples=6, n=2, stream=stream, interval_s=0.0) as progress:
        progress.add(progress_record(9, "5", True), resumed=True)  # on disk: not in tok/s or ETA
        progress.add(progress_record(0, "5", True, ("ok", "error")))
        progress.add(progress_record(0, "5", True))
        progress.add(progress_record(1, "3", False))
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("gsm8k: samples 2/6 | problems 0/3 | acc 1.000")
    assert "samples 4/6 | problems 1/3 | acc 0.750 | maj@2 1.000" in lines[-1]
    assert "exec err 50.0%" in lines[-1] and "tok/s" in lines[-1]
    assert "ETA" in lines[0]


@pytest.mark.parametrize(
    "votes, expected",
    [
        ([("1", True), ("2", False), ("1", True)], True),
        ([("2", False), ("2", False), ("1", True)], False),
        ([(None, False), (None, False)], False),
        # tie: the answer seen first wins
        ([("2", False), ("1", True)], False),
    ],
)
def test_live_majority(votes, expected):
    assert plain_majority_correct(votes) is expected


@pytest.mark.parametrize("seconds, text", [(None, "?"), (59, "0:59"), (3725, "1:02:05")])
def test_format_eta(seconds, text):
    assert format_eta(seconds) == text


@pytest.mark.parametrize("name, safe", [("gsm8k", "gsm8k"), ("../data/my set.jsonl", "data_my_set.jsonl")])
def test_dataset_dir_name(name, safe):
    assert dataset_dir_name(name) == safe


# --- one writer per run directory ---------------------------------------------------------
def test_a_second_writer_is_refused_and_a_dead_one_leaves_no_stale_lock(tmp_path):
    import signal
    import subprocess
    import sys

    from qwen_math.runs.store import run_lock

    # the holder forks a child (as the grader pool does), then waits to be killed
    holder = subprocess.Popen([sys.executable, "-c", (
        "import os, sys, time; from qwen_math.runs.store import run_lock\n"
        f"with run_lock({str(tmp_path / 'run')!r}):\n"
        "    if os.fork() == 0: time.sleep(5); os._exit(0)\n"
        "    print('locked', flush=True); time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(UsageError, match="another `qwen-math eval`"), run_lock(tmp_path / "run"):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # SIGKILLed: the kernel dropped its lock although its child still runs
    with run_lock(tmp_path / "run"):
        pass
