"""Ctrl-C and SIGTERM on a terminal: one line, no traceback from any process, exit 3, resumable.

Each case runs a real `python -m qwen_math` in a pseudo-terminal (its own session, the pty as
controlling terminal, so it is the foreground process group the way a shell would start it),
and sends SIGINT to the terminal's foreground process group, which is what Ctrl-C does: the
grader workers and the sandbox driver get it too unless they keep out of it. The moments:
during model load (transformers' "Loading weights" bar), at the first progress line, mid-run
(after the first sample is on disk). After each stop the same command is rerun; the last
rerun completes every sample exactly once. `solve` gets the same treatment (its rerun starts
over: nothing of a solve is kept), and SIGTERM to the CLI process stops `eval` the same way.

The tiny random checkpoint keeps each run to seconds of decoding (most of the time is
imports, model load and the sandbox driver's start). The default suite stops `eval` mid-run
and `solve` at two moments; every moment for `eval` is `pytest -m slow`.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import signal
import struct
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from qwen_math.errors import ExitCode
from qwen_math.runs.store import RunLayout

LIMIT, N = 6, 2
TIMEOUT_S = 400


def eval_command(shared_data: Path, model: Path, run_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "qwen_math", "eval", "--datasets", "gsm8k",
        "--data-dir", str(shared_data / "benchmarks"), "--limit", str(LIMIT), "-n", str(N),
        "--mode", "tir", "--model", str(model), "--output-dir", str(run_dir),
        "--max-tokens", "24", "--device", "cpu", "--dtype", "float32",
    ]


def solve_command(model: Path) -> list[str]:
    return [
        sys.executable, "-m", "qwen_math", "solve", "What is 6*7?", "--mode", "tir", "-n", "4",
        "--model", str(model), "--max-tokens", "400", "--device", "cpu", "--dtype", "float32",
    ]


def run_in_terminal(command: list[str], stop_when: Callable[[bytes], bool] | None,
                    signum: int = signal.SIGINT, to_group: bool = True) -> tuple[str, int, bool]:
    """Run ``command`` on a pty (100x24); once ``stop_when(output so far)`` holds, send
    ``signum`` to the foreground process group (or to the CLI process alone). Returns the
    terminal's text, the exit code and whether the signal was sent."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), TERM="xterm")
    pid, fd = pty.fork()
    if pid == 0:  # the child: session leader with the pty as its controlling terminal
        try:
            os.execvpe(command[0], command, env)
        finally:
            os._exit(127)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    output, sent, deadline = b"", False, time.monotonic() + TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.02)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:  # EIO: every process holding the terminal has gone
                    break
                if not chunk:
                    break
                output += chunk
            if not sent and stop_when is not None and stop_when(output):
                if to_group:
                    os.killpg(os.tcgetpgrp(fd), signum)
                else:
                    os.kill(pid, signum)
                sent = True
        else:
            os.killpg(pid, signal.SIGKILL)
            pytest.fail(f"no exit within {TIMEOUT_S} s: {output.decode(errors='replace')[-2000:]}")
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return output.decode(errors="replace"), os.waitstatus_to_exitcode(status), sent


def assert_clean_stop(text: str, code: int, sent: bool) -> None:
    assert sent, f"the command ended before the signal: {text[-2000:]}"
    assert "Traceback" not in text, text[-4000:]
    assert "KeyboardInterrupt" not in text, text[-4000:]
    assert code == ExitCode.PARTIAL, f"exit {code}: {text[-2000:]}"
    last = [line for line in text.replace("\r", "\n").splitlines() if line.strip()][-1]
    assert "interrupted" in last and "rerun the same command" in last, last


def seen(marker: str) -> Callable[[bytes], bool]:
    return lambda output: marker.encode() in output


def later(marker: str, seconds: float) -> Callable[[bytes], bool]:
    """``seconds`` after ``marker`` first shows on the terminal."""
    first: list[float] = []

    def check(output: bytes) -> bool:
        if not first and marker.encode() in output:
            first.append(time.monotonic())
        return bool(first) and time.monotonic() - first[0] >= seconds
    return check


def file_has_lines(path: Path) -> Callable[[bytes], bool]:
    return lambda output: path.exists() and path.read_bytes().count(b"\n") >= 1


def sample_keys(run_dir: Path) -> list[tuple[int, int]]:
    path = RunLayout(run_dir).samples("gsm8k")
    return sorted((r["idx"], r["sample"]) for r in map(json.loads, path.read_text().splitlines()))


def interrupt_then_resume(shared_data: Path, model: Path, run_dir: Path, moments) -> None:
    """Stop the same eval command at each moment in turn, then rerun it to the end."""
    command = eval_command(shared_data, model, run_dir)
    for moment in moments:
        assert_clean_stop(*run_in_terminal(command, moment))
    written = sample_keys(run_dir)
    assert written, "the mid-run stop came after a sample was written"
    text, code, _ = run_in_terminal(command, None)
    assert code == 0, text[-3000:]
    assert f"{len(written)} of {LIMIT * N} samples already written" in text
    assert sample_keys(run_dir) == [(i, s) for i in range(LIMIT) for s in range(N)]


def test_ctrl_c_mid_eval_then_rerun_resumes(tmp_path, shared_data, tiny_checkpoint):
    samples = RunLayout(tmp_path / "run").samples("gsm8k")
    interrupt_then_resume(shared_data, tiny_checkpoint, tmp_path / "run", [file_has_lines(samples)])


@pytest.mark.slow
def test_ctrl_c_during_eval_at_load_first_progress_line_and_mid_run_then_rerun_resumes(
        tmp_path, shared_data, tiny_checkpoint):
    samples = RunLayout(tmp_path / "run").samples("gsm8k")
    moments = [seen("Loading weights"), seen("gsm8k:"), file_has_lines(samples)]
    interrupt_then_resume(shared_data, tiny_checkpoint, tmp_path / "run", moments)


def test_sigterm_stops_eval_like_ctrl_c(tmp_path, shared_data, tiny_checkpoint):
    run_dir = tmp_path / "run"
    samples = RunLayout(run_dir).samples("gsm8k")
    command = eval_command(shared_data, tiny_checkpoint, run_dir)
    assert_clean_stop(*run_in_terminal(command, file_has_lines(samples), signal.SIGTERM, to_group=False))


def test_ctrl_c_during_solve_at_load_and_mid_generation(tiny_checkpoint):
    command = solve_command(tiny_checkpoint)
    generating = later("hf backend:", 2.0)  # logged once the model is loaded; sampling follows
    for moment in (seen("Loading weights"), generating):
        assert_clean_stop(*run_in_terminal(command, moment))
