"""Live progress of a run on stderr: a tqdm bar on a terminal, a plain periodic line otherwise.

``RunProgress`` is fed one graded sample at a time (``add``) and shows problems and samples
done, running accuracy (mean over samples), running maj@n over the problems whose n samples
are all in, tokens/s, the execution error rate and an ETA. Samples found on disk when a run
resumes are counted as done (``add(record, resumed=True)``) but not in tokens/s or the ETA, which measure
this process only.

What it deliberately does not do: grade, vote with equivalence, or write files (the plain
line goes through ``logging``-free ``stream.write`` because it *is* the command's output).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from qwen_math.record import SampleRecord

EXEC_ERROR_STATUSES = frozenset({"error", "timeout", "memory_error", "crashed", "blocked"})


@dataclass
class ProgressState:
    """Counters behind the progress line (mutable, owned by one ``RunProgress``)."""

    total_samples: int
    n: int
    samples_done: int = 0
    correct: int = 0
    problems_done: int = 0
    maj_correct: int = 0
    new_samples: int = 0
    new_tokens: int = 0
    tool_calls: int = 0
    exec_errors: int = 0
    answers: dict[Any, list[tuple[str | None, bool]]] = field(default_factory=lambda: defaultdict(list))

    def add(self, key: Any, answer: str | None, correct: bool, turns: list[dict[str, Any]]) -> None:
        self.samples_done += 1
        self.correct += bool(correct)
        self.tool_calls += sum(1 for t in turns if t.get("code") is not None)
        self.exec_errors += sum(1 for t in turns if t.get("status") in EXEC_ERROR_STATUSES)
        votes = self.answers[key]
        votes.append((answer, bool(correct)))
        if len(votes) == self.n:
            self.problems_done += 1
            self.maj_correct += plain_majority_correct(votes)
            del self.answers[key]


def plain_majority_correct(votes: Sequence[tuple[str | None, bool]]) -> bool:
    """Whether the most frequent answer *string* is correct (first seen wins a tie).

    For display and for rows of the official format, which carry no vote of their own; the
    reported maj@k (``metrics.json``) groups *equivalent* answers (``eval.metrics``).
    """
    counts = Counter(str(answer) for answer, _ in votes if answer is not None)
    if not counts:
        return False
    best = max(counts.values())
    winner = next(str(a) for a, _ in votes if a is not None and counts[str(a)] == best)
    return any(ok for answer, ok in votes if answer is not None and str(answer) == winner)


class RunProgress:
    """Progress for one dataset of a run; a context manager."""

    def __init__(self, label: str, *, total_samples: int, n: int, stream: TextIO | None = None,
                 interval_s: float = 10.0, enabled: bool = True) -> None:
        self.label = label
        self.state = ProgressState(total_samples=total_samples, n=n)
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s = interval_s
        self.enabled = enabled
        self._start_time = time.monotonic()
        self._last_line_time = 0.0
        self._bar = self._make_bar() if enabled and _is_terminal(self.stream) else None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._heartbeat = threading.Thread(target=self._beat, name="qwen-math-progress", daemon=True)
        if enabled and interval_s > 0:
            self._heartbeat.start()

    def _beat(self) -> None:
        """Every interval, show progress even when no sample finished (long generations)."""
        while not self._stopped.wait(self.interval_s):
            with self._lock:
                if self._bar is not None:
                    self._bar.set_postfix_str(self.summary(with_eta=False), refresh=False)
                    self._bar.refresh()
                elif time.monotonic() - self._last_line_time >= self.interval_s:
                    self._write_line()

    def _make_bar(self) -> Any:
        from tqdm import tqdm

        return tqdm(total=self.state.total_samples, desc=self.label, unit="sample",
                    file=self.stream, dynamic_ncols=True)

    def add(self, record: SampleRecord, *, resumed: bool = False) -> None:
        """Count one sample: found on disk (``resumed``) or just generated."""
        turns = [turn.to_json() for turn in record.turns]
        self.state.add(record.idx, record.answer, bool(record.correct), turns)
        if resumed:
            if self._bar is not None:
                self._bar.update(1)
            return
        self.state.new_samples += 1
        self.state.new_tokens += record.completion_tokens
        self._show()

    def _show(self) -> None:
        if not self.enabled:
            return
        with self._lock:
            if self._bar is not None:
                self._bar.set_postfix_str(self.summary(with_eta=False), refresh=False)
                self._bar.update(1)
            elif time.monotonic() - self._last_line_time >= self.interval_s:
                self._write_line()

    def _write_line(self) -> None:
        self._last_line_time = time.monotonic()
        self.stream.write(f"{self.label}: {self.summary(with_eta=True)}\n")
        self.stream.flush()

    def summary(self, *, with_eta: bool) -> str:
        s = self.state
        elapsed = max(time.monotonic() - self._start_time, 1e-9)
        acc = s.correct / s.samples_done if s.samples_done else 0.0
        maj = s.maj_correct / s.problems_done if s.problems_done else 0.0
        exec_rate = s.exec_errors / s.tool_calls if s.tool_calls else 0.0
        parts = [
            f"samples {s.samples_done}/{s.total_samples}",
            f"problems {s.problems_done}/{s.total_samples // max(s.n, 1)}",
            f"acc {acc:.3f}",
            f"maj@{s.n} {maj:.3f}",
            f"{s.new_tokens / elapsed:.1f} tok/s",
            f"exec err {exec_rate:.1%}",
        ]
        if with_eta:
            parts.append(f"elapsed {format_eta(elapsed)}")
            parts.append(f"ETA {format_eta(self.eta_s(elapsed))}")
        return " | ".join(parts)

    def eta_s(self, elapsed: float) -> float | None:
        s = self.state
        if not s.new_samples:
            return None
        return (s.total_samples - s.samples_done) * elapsed / s.new_samples

    def close(self) -> None:
        self._stopped.set()
        if self._heartbeat.is_alive():
            self._heartbeat.join()
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.enabled and self.state.new_samples:
            self.stream.write(f"{self.label}: {self.summary(with_eta=False)}\n")
            self.stream.flush()

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
