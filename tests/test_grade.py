"""Grades and the grading pool: statuses, hard deadlines, dead workers, hostile inputs."""

from __future__ import annotations

import os
import time

import pytest

from eval.grade import Grade, GraderPool, default_pool, grade_batch, grade_item, grade_response


def test_grade_is_truthy_exactly_when_correct():
    assert Grade("correct", "3")
    for status in ("wrong", "no_answer", "timeout", "invalid"):
        assert not Grade(status)
    with pytest.raises(ValueError, match="one of"):
        Grade("maybe")


@pytest.mark.parametrize("response,gold,dataset,status,answer", [
    # --- the four in-process statuses
    ("so $\\boxed{\\frac{1}{2}}$", "0.5", None, "correct", "\\frac{1}{2}"),
    ("so $\\boxed{3}$", "4", None, "wrong", "3"),
    ("I am not sure.", "4", None, "no_answer", None),
    ("\\boxed{9^{9^{9^{9}}}}", "1", None, "invalid", "9^{9^{9^{9}}}"),
    # --- dataset policy decides the fallback
    ("so she pays 18 dollars", "18", "gsm8k", "correct", "18"),
    ("so she pays 18 dollars", "18", "math", "no_answer", None),
    # --- hostile inputs give a verdict
    ("", "1", None, "no_answer", None),
    (None, "1", None, "no_answer", None),
    ("\x00\\boxed{2}\x00", "2", None, "correct", "2"),
    ("\\boxed{2}", None, None, "wrong", "2"),
])
def test_grade_response(response, gold, dataset, status, answer):
    grade = grade_response(response, gold, dataset=dataset)
    assert (grade.status, grade.answer) == (status, answer)


def hang_or_grade(item, timeout):
    """Test job: "hang" spins in C-level big-integer code no signal can interrupt."""
    if item[0] == "hang":
        return 9 ** (9 ** 9)
    return grade_item(item, timeout)


def die_or_grade(item, timeout):
    if item[0] == "die":
        os._exit(3)
    return grade_item(item, timeout)


def test_tower_batch_finishes_within_deadline():
    items = [("\\boxed{9^{9^{9^{9}}}}", "1")] + [(f"\\boxed{{{i}}}", str(i)) for i in range(6)]
    start = time.monotonic()
    grades = grade_batch(items, workers=2, timeout=1.0)
    assert time.monotonic() - start < 1.0 + 2.0
    assert grades[0].status in ("timeout", "invalid")
    assert all(grades[1:])


def test_stuck_worker_is_killed_and_replaced():
    items = [("\\boxed{1}", "1"), ("hang", "1"), ("\\boxed{2}", "2"), ("\\boxed{3}", "4"), ("hang", "1")]
    with GraderPool(2, timeout=0.5, grade_fn=hang_or_grade) as pool:
        start = time.monotonic()
        grades = pool.grade_batch(items)
        elapsed = time.monotonic() - start
        assert [g.status for g in grades] == ["correct", "timeout", "correct", "wrong", "timeout"]
        assert pool.killed == 2
        assert elapsed < 2 * (0.5 + 1.0) + 2.0
        # the replaced workers still grade
        assert [g.status for g in pool.grade_batch([("\\boxed{5}", "5")])] == ["correct"]


def test_dead_worker_marks_its_item_invalid():
    items = [("\\boxed{1}", "1"), ("die", "1"), ("\\boxed{2}", "2")]
    with GraderPool(1, grade_fn=die_or_grade) as pool:
        assert [g.status for g in pool.grade_batch(items)] == ["correct", "invalid", "correct"]


def test_batch_of_hostile_items_completes():
    items = [
        ("x " * 500_000 + "\\boxed{7}", "7"),  # a 1 MB response
        ("\\boxed{" + "1" * 1_000_000 + "}", "1"),  # a 10^6-character box
        ("", "1"),
        ("\x00\x00", "1"),
        ("\\boxed{3}", "3", "gsm8k"),
        ("only", "two", "fields", (), "too many"),  # malformed item: a verdict, not a crash
    ]
    grades = grade_batch(items, timeout=2.0)
    assert [g.status for g in grades] == ["correct", "invalid", "no_answer", "no_answer", "correct", "invalid"]


def test_default_pool_is_one_lazy_object():
    assert default_pool() is default_pool()
    assert grade_batch([]) == []


def test_pool_rejects_bad_worker_count():
    with pytest.raises(ValueError, match="workers"):
        GraderPool(0)


# --- workers die with their parent (regression: orphans left by a SIGKILLed `qwen-math eval`) ---
def test_workers_die_when_the_parent_is_killed():
    import os
    import signal
    import subprocess
    import sys
    import time

    code = (
        "from eval.grade import GraderPool\n"
        "pool = GraderPool(2); pool.start()\n"
        "print(' '.join(str(w.process.pid) for w in pool._workers), flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pids = [int(pid) for pid in parent.stdout.readline().split()]
    assert len(pids) == 2
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in pids)
    assert os.getpid()  # the test process itself is untouched


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False
