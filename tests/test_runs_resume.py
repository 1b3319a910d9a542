"""The issue's done-when test: a TIR run on the tiny checkpoint, SIGKILLed at a random moment
and rerun, ends with the same samples.jsonl as a run that was never interrupted.

Both runs are real `qwen-math eval` processes (hf backend, tiny random Qwen2 checkpoint, CPU,
fp32, --max-tokens 16 so the test stays fast). The kill lands after a random number of
samples (1 .. 70 of 80) plus a random delay of up to 50 ms, i.e. in a write, between writes
or while decoding. The comparison drops only the time-dependent keys
(``qwen_math.record.strip_time_dependent``). Set QWEN_MATH_KILL_SEED to replay a failure.
The uninterrupted run is also checked against `qwen-math rescore` (same acc, pass@k, maj@k).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from qwen_math.record import strip_time_dependent
from qwen_math.runs.store import RunLayout

LIMIT, N = 20, 4


def eval_command(shared_data: Path, model: Path, run_dir: Path) -> list[str]:
    return [
        sys.executable, "-m", "qwen_math", "eval", "--datasets", "gsm8k",
        "--data-dir", str(shared_data / "benchmarks"), "--limit", str(LIMIT), "-n", str(N),
        "--mode", "tir", "--model", str(model), "--output-dir", str(run_dir),
        "--max-tokens", "16", "--device", "cpu", "--dtype", "float32", "--progress-interval", "1",
    ]


def run_to_end(command: list[str]) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def kill_at_random_moment(command: list[str], samples: Path, rng: random.Random) -> int:
    """Start the run, SIGKILL it after a random number of samples; returns lines at the kill."""
    target = rng.randint(1, LIMIT * N - 10)
    log = samples.parent.parent.with_suffix(".killed.log")
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    deadline, orphans = time.monotonic() + 600, []
    try:
        while count_lines(samples) < target and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.05))
        orphans = descendants(process.pid)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        reap(orphans)
    assert process.returncode == -signal.SIGKILL, f"the run ended before the kill: {log.read_text()[-2000:]}"
    return count_lines(samples)


def descendants(pid: int) -> list[int]:
    """Processes below ``pid`` (grader workers, the sandbox driver), from /proc."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def reap(pids: list[int]) -> None:
    """SIGKILL what the killed run left behind (a SIGKILLed parent cannot stop its children)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def records(run_dir: Path) -> list[dict]:
    lines = RunLayout(run_dir).samples("gsm8k").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_sigkill_at_a_random_moment_then_rerun_equals_an_uninterrupted_run(tmp_path, shared_data, tiny_checkpoint):
    seed = int(os.environ.get("QWEN_MATH_KILL_SEED", random.SystemRandom().randrange(1 << 30)))
    rng = random.Random(seed)
    reference, resumed = tmp_path / "reference", tmp_path / "resumed"
    run_to_end(eval_command(shared_data, tiny_checkpoint, reference))
    assert_rescore_reproduces_metrics(reference)

    command = eval_command(shared_data, tiny_checkpoint, resumed)
    samples = RunLayout(resumed).samples("gsm8k")
    at_kill = kill_at_random_moment(command, samples, rng)
    written_before = samples.read_bytes()[: written_prefix(samples)]
    rerun = run_to_end(command)

    final = records(resumed)
    keys = [(r["idx"], r["sample"]) for r in final]
    context = f"(QWEN_MATH_KILL_SEED={seed}, {at_kill} lines at the kill)"
    assert sorted(keys) == [(i, s) for i in range(LIMIT) for s in range(N)], context  # each exactly once
    assert samples.read_bytes().startswith(written_before), context  # nothing written was rewritten
    expected = {(r["idx"], r["sample"]): strip_time_dependent(r) for r in records(reference)}
    assert {(r["idx"], r["sample"]): strip_time_dependent(r) for r in final} == expected, context
    if 0 < at_kill < LIMIT * N:  # samples finishing in one burst can all land before the kill
        assert f"{at_kill} of {LIMIT * N} samples already written" in rerun.stderr, context

    # the metrics of the resumed run equal the uninterrupted run's (time-dependent keys aside)
    metrics = [json.loads(RunLayout(d).dataset_metrics("gsm8k").read_text()) for d in (reference, resumed)]
    assert strip_time_dependent(metrics[0]) == strip_time_dependent(metrics[1]), context


def written_prefix(path: Path) -> int:
    """Bytes up to the last newline: what the killed run had completely written."""
    data = path.read_bytes()
    return data.rfind(b"\n") + 1


def assert_rescore_reproduces_metrics(run_dir: Path) -> None:
    """`qwen-math rescore` of the run's samples gives the metrics the run wrote."""
    rescored = subprocess.run(
        [sys.executable, "-m", "qwen_math", "rescore", "--json", str(RunLayout(run_dir).samples("gsm8k"))],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert rescored.returncode == 0, rescored.stderr[-2000:]
    metrics = json.loads(RunLayout(run_dir).dataset_metrics("gsm8k").read_text())
    summary = json.loads(rescored.stdout)
    own = {"counters", "run_time"}  # the run's counters and timings (not rescore's business)
    assert {k: v for k, v in metrics.items() if k not in own} == {k: summary[k] for k in metrics if k not in own}
