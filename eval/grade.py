"""Grade responses against gold answers: extract, compare, and do it in parallel with a hard
per-item deadline.

``grade_response`` is the single-item, in-process verb. ``GraderPool`` owns worker processes
(forked after SymPy is imported, so a replacement starts in milliseconds); each worker grades
one item at a time and the parent watches a deadline per item. A worker that overruns it
(e.g. stuck in C-level big-integer code, where no signal can reach Python) is killed with
SIGKILL and replaced; its item becomes ``timeout`` and the batch goes on. A worker that dies
marks its item ``invalid``. ``grade_batch`` uses one lazily created default pool (behind
``default_pool()``), or a private pool when a different worker count is asked for.

What it deliberately does not do: decide equivalence (``eval.equivalence``) or extraction
(``eval.extract``); it only orchestrates them.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from eval.choices import Options, judge_answer
from eval.extract import extract_answer, resolve_policy

log = logging.getLogger(__name__)

STATUSES = ("correct", "wrong", "no_answer", "timeout", "invalid")
#: Seconds a worker may run past the in-process deadline before it is killed.
KILL_GRACE_S = 1.0
#: Most items sent to a worker at once (results still come back one by one).
MAX_CHUNK = 16


@dataclass(frozen=True)
class Grade:
    """The verdict on one response: truthy exactly when ``status == "correct"``."""

    status: str
    answer: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"grade status must be one of {', '.join(STATUSES)}, got {self.status!r}")

    def __bool__(self) -> bool:
        return self.status == "correct"

    @property
    def correct(self) -> bool:
        return self.status == "correct"


Item = tuple  # (response, gold), (response, gold, dataset) or (response, gold, dataset, choices)


def grade_response(response: str | None, gold: str | None, *, dataset: str | None = None,
                   timeout: float = 5.0, choices: Options = None) -> Grade:
    """Extract the final answer of ``response`` and compare it with ``gold``.

    ``choices`` (a multiple-choice row's options: ``"(A) text"`` entries, or a letter -> text
    mapping) lets an answer that gives an option's text instead of its letter be graded.
    """
    policy = resolve_policy(dataset).for_gold(gold)
    answer = extract_answer(response, dataset=policy)
    if answer is None:
        return Grade("no_answer", None)
    return Grade(judge_answer(answer, gold, dataset=policy, choices=choices, timeout=timeout), answer)


def grade_item(item: Sequence[Any], timeout: float) -> Grade:
    """Grade one ``(response, gold[, dataset[, choices]])`` tuple (the workers' default job)."""
    if not 2 <= len(item) <= 4:
        raise ValueError("a grading item is (response, gold), (response, gold, dataset) or "
                         f"(response, gold, dataset, choices), got {len(item)} fields")
    response, gold = item[0], item[1]
    dataset = item[2] if len(item) >= 3 else None
    choices = item[3] if len(item) == 4 else None
    return grade_response(response, gold, dataset=dataset, timeout=timeout, choices=choices)


# --- worker side ---------------------------------------------------------------------------


def worker_main(conn: Connection, grade_fn: Callable[[Sequence[Any], float], Grade], parent_pid: int) -> None:
    """A worker process: die with the parent (even a SIGKILLed one), then serve ``worker_loop``.

    Without the parent-death signal a worker would outlive a killed parent forever: it holds
    inherited copies of its siblings' pipe ends, so its own pipe never reports EOF. Ctrl-C is
    the parent's to handle (it reaches the whole foreground process group): a worker ignores
    SIGINT and ends when the parent sends ``None``, closes the pipe or dies. The parent forks
    it with SIGINT blocked (``sigint_blocked``), so no Ctrl-C lands before it is ignored.
    """
    ignore_sigint()
    kill_me_when_parent_dies()
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        return
    worker_loop(conn, grade_fn)


def ignore_sigint() -> None:
    """Ignore SIGINT from now on, then unblock it (the parent forked us with it blocked)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT in this thread while a worker is forked (a pending one arrives after)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def kill_me_when_parent_dies() -> None:
    """``prctl(PR_SET_PDEATHSIG, SIGKILL)`` where Linux offers it; a no-op elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError) as exc:
        log.debug("PR_SET_PDEATHSIG unavailable: %s", exc)


def worker_loop(conn: Connection, grade_fn: Callable[[Sequence[Any], float], Grade]) -> None:
    """Receive ``([(index, item), ...], timeout)`` chunks and send one ``(index, status,
    answer)`` per item as soon as it is graded; ``None`` stops the loop."""
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        chunk, timeout = message
        for index, item in chunk:
            try:
                grade = grade_fn(item, timeout)
            except Exception as exc:  # noqa: BLE001 - a bad item is a verdict, never a dead worker
                log.debug("grading item %d failed: %s", index, exc)
                grade = Grade("invalid", None)
            conn.send((index, grade.status, grade.answer))


def warm_imports() -> None:
    """Import SymPy and the LaTeX parser once, before forking workers."""
    import sympy  # noqa: F401
    from latex2sympy2_extended import latex2sympy  # noqa: F401


# --- parent side ---------------------------------------------------------------------------


@dataclass
class _Worker:
    process: Any
    conn: Connection
    in_flight: deque[int] = field(default_factory=deque)  # items sent, in grading order
    deadline: float = 0.0  # for the head of ``in_flight``


class GraderPool:
    """Worker processes that grade items with a hard per-item deadline (a context manager)."""

    def __init__(self, workers: int | None = None, *, timeout: float = 5.0,
                 grade_fn: Callable[[Sequence[Any], float], Grade] = grade_item) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.size = workers or max(1, os.cpu_count() or 1)
        self.timeout = timeout
        self.grade_fn = grade_fn
        self.killed = 0
        self._workers: list[_Worker] = []
        methods = multiprocessing.get_all_start_methods()
        self._context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")

    # lifecycle
    def __enter__(self) -> GraderPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        if self._workers:
            return
        warm_imports()
        self._workers = [self._spawn() for _ in range(self.size)]

    def close(self) -> None:
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in self._workers:
            worker.process.join(timeout=1.0)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self._workers = []

    def _spawn(self) -> _Worker:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=worker_main, args=(child_end, self.grade_fn, os.getpid()), daemon=True
        )
        with sigint_blocked():
            process.start()
        child_end.close()
        return _Worker(process, parent_end)

    def _replace(self, worker: _Worker) -> _Worker:
        worker.process.kill()
        worker.process.join()
        worker.conn.close()
        fresh = self._spawn()
        self._workers[self._workers.index(worker)] = fresh
        return fresh

    # grading
    def grade_batch(self, items: Iterable[Sequence[Any]], *, timeout: float | None = None) -> list[Grade]:
        """Grade every item; the result list is in item order and always complete."""
        items = [tuple(item) for item in items]
        timeout = self.timeout if timeout is None else timeout
        self.start()
        results: list[Grade | None] = [None] * len(items)
        pending: deque[int] = deque(range(len(items)))
        for worker in self._workers:
            self._dispatch(worker, pending, items, timeout)
        while any(w.in_flight for w in self._workers):
            self._collect(results, pending, items, timeout)
        return [r if r is not None else Grade("invalid") for r in results]

    def _chunk_size(self, remaining: int) -> int:
        return max(1, min(MAX_CHUNK, remaining // (2 * len(self._workers))))

    def _dispatch(self, worker: _Worker, pending: deque[int], items: list[tuple[Any, ...]],
                  timeout: float) -> None:
        """Send the worker its next chunk of items (it streams one result per item back)."""
        chunk = [pending.popleft() for _ in range(min(len(pending), self._chunk_size(len(pending))))]
        if not chunk:
            return
        worker.in_flight.extend(chunk)
        worker.deadline = time.monotonic() + timeout + KILL_GRACE_S
        try:
            worker.conn.send(([(i, items[i]) for i in chunk], timeout))
        except (BrokenPipeError, OSError):
            worker.deadline = 0.0  # handled as an overrun by _collect

    def _collect(self, results: list[Grade | None], pending: deque[int],
                 items: list[tuple[Any, ...]], timeout: float) -> None:
        busy = [w for w in self._workers if w.in_flight]
        wait_s = max(0.0, min(w.deadline for w in busy) - time.monotonic())
        ready = wait([w.conn for w in busy], timeout=wait_s)
        for worker in busy:
            if worker.conn in ready:
                self._receive(worker, results, pending, items, timeout)
            elif time.monotonic() >= worker.deadline:
                log.warning("grading item %d overran %.1f s; worker killed", worker.in_flight[0], timeout)
                self.killed += 1
                self._fail_head(worker, "timeout", results, pending, items, timeout)

    def _receive(self, worker: _Worker, results: list[Grade | None], pending: deque[int],
                 items: list[tuple[Any, ...]], timeout: float) -> None:
        try:
            index, status, answer = worker.conn.recv()
        except (EOFError, OSError):
            self._fail_head(worker, "invalid", results, pending, items, timeout)  # worker died
            return
        results[index] = Grade(status, answer)
        worker.in_flight.popleft()
        worker.deadline = time.monotonic() + timeout + KILL_GRACE_S
        if not worker.in_flight:
            self._dispatch(worker, pending, items, timeout)

    def _fail_head(self, worker: _Worker, status: str, results: list[Grade | None],
                   pending: deque[int], items: list[tuple[Any, ...]], timeout: float) -> None:
        """The item being graded gets ``status``; the rest of its chunk is re-queued first."""
        results[worker.in_flight.popleft()] = Grade(status)
        pending.extendleft(reversed(worker.in_flight))
        worker.in_flight.clear()
        fresh = self._replace(worker)
        self._dispatch(fresh, pending, items, timeout)


_DEFAULT_POOL: GraderPool | None = None


def default_pool(workers: int | None = None) -> GraderPool:
    """The process-wide pool, created on first use and closed at exit."""
    global _DEFAULT_POOL
    if _DEFAULT_POOL is None:
        _DEFAULT_POOL = GraderPool(workers)
        atexit.register(_DEFAULT_POOL.close)
    return _DEFAULT_POOL


def grade_batch(items: Iterable[Sequence[Any]], *, workers: int | None = None,
                timeout: float = 5.0) -> list[Grade]:
    """Grade ``(response, gold[, dataset[, choices]])`` items in worker processes with a hard
    deadline."""
    items = list(items)
    if not items:
        return []
    if workers is None or workers == default_pool().size:
        return default_pool().grade_batch(items, timeout=timeout)
    with GraderPool(workers, timeout=timeout) as pool:
        return pool.grade_batch(items)
