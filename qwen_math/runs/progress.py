"""Live progress on stderr, in tokens: a tqdm bar on a terminal, a plain periodic line otherwise.

``TokenMeter`` reads the backend's own running count of generated tokens (the hf engine's
``decoded_tokens``, see ``live_token_counter``) while samples are still decoding, so tokens/s
is real from the first step, not only once a sample finishes; backends without such a counter
count the tokens of finished samples. Its ETA is tokens remaining / tokens per second:
the remaining tokens start at the upper bound max tokens x open samples (less the tokens
already generated for them) and, once samples finish, use their mean length instead.

``SampleProgress`` shows samples done, generated tokens, tokens/s, elapsed time and the ETA,
refreshed at least once a second on a terminal and every ``interval_s`` (10 s) otherwise,
also while no sample has finished. ``RunProgress`` (one dataset of an eval run) adds
problems done, running accuracy (mean over samples), running maj@n over the problems whose
n samples are all in, and the execution error rate. Samples found on disk when a run resumes
are counted as done (``add(record, resumed=True)``) but not in tokens/s or the ETA, which
measure this process only.

What it deliberately does not do: grade, vote with equivalence, or write files (the plain
line goes through ``logging``-free ``stream.write`` because it *is* the command's output).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
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


#: Seconds between refreshes of the bar on a terminal (at most; plain lines use ``interval_s``).
TERMINAL_REFRESH_S = 1.0

Clock = Callable[[], float]


def live_token_counter(backend: Any) -> Callable[[], int] | None:
    """The backend's running count of generated tokens, read while samples decode (the hf
    backend's ``stats.decoded_tokens``); ``None`` when the backend keeps no such counter."""
    stats = getattr(backend, "stats", None)
    if stats is None or not isinstance(getattr(stats, "decoded_tokens", None), int):
        return None

    def read() -> int:
        return int(getattr(getattr(backend, "stats", None), "decoded_tokens", 0) or 0)
    return read


def max_tokens_per_sample(mode: str, max_tokens: int, tool_calls: int) -> int:
    """The most tokens one sample can generate: one call, or one per TIR round (``tool_calls``
    is the effective tool budget: the flag, else the TIR protocol's own limit)."""
    return max_tokens * (tool_calls + 1 if mode == "tir" else 1)


class TokenMeter:
    """Generated tokens, tokens/s and the token-based ETA of one progress display."""

    def __init__(self, *, counter: Callable[[], int] | None = None, max_tokens_per_sample: int | None = None,
                 clock: Clock = time.monotonic) -> None:
        self.counter = counter
        self.max_tokens_per_sample = max_tokens_per_sample
        self.clock = clock
        self.start = clock()
        self.baseline = counter() if counter is not None else 0
        self.finished_samples = 0
        self.finished_tokens = 0

    def sample_done(self, tokens: int) -> None:
        self.finished_samples += 1
        self.finished_tokens += tokens

    def elapsed(self) -> float:
        return max(self.clock() - self.start, 1e-9)

    def generated(self) -> int:
        """Tokens generated by this process so far, finished samples and unfinished ones."""
        if self.counter is None:
            return self.finished_tokens
        return max(self.counter() - self.baseline, self.finished_tokens)

    def rate(self) -> float:
        return self.generated() / self.elapsed()

    def remaining_tokens(self, open_samples: int) -> float | None:
        """Tokens still to generate: open samples x (their mean length once samples finished,
        else max tokens, the upper bound), less what the unfinished ones already have."""
        if self.finished_samples:
            per_sample = self.finished_tokens / self.finished_samples
            if self.max_tokens_per_sample:
                per_sample = min(per_sample, self.max_tokens_per_sample)
        elif self.max_tokens_per_sample:
            per_sample = self.max_tokens_per_sample
        else:
            return None
        in_flight = max(0, self.generated() - self.finished_tokens)
        return max(0.0, open_samples * per_sample - in_flight)

    def eta_s(self, open_samples: int) -> float | None:
        if open_samples <= 0:
            return 0.0
        rate, remaining = self.rate(), self.remaining_tokens(open_samples)
        return remaining / rate if remaining is not None and rate > 0 else None

    def parts(self, open_samples: int) -> list[str]:
        return [f"tokens {self.generated():,}", f"{self.rate():.1f} tok/s",
                f"elapsed {format_eta(self.elapsed())}", f"ETA {format_eta(self.eta_s(open_samples))}"]


class SampleProgress:
    """Samples done and the token meter on stderr; a context manager (see the module)."""

    unit = "sample"

    def __init__(self, label: str, *, total_samples: int, stream: TextIO | None = None,
                 interval_s: float = 10.0, enabled: bool = True, tokens: Callable[[], int] | None = None,
                 max_tokens_per_sample: int | None = None, clock: Clock = time.monotonic) -> None:
        self.label = label
        self.total_samples = total_samples
        self.samples_done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s = interval_s
        self.enabled = enabled
        self.clock = clock
        self.meter = TokenMeter(counter=tokens, max_tokens_per_sample=max_tokens_per_sample, clock=clock)
        self._last_line_time = self.meter.start
        self._bar = self._make_bar() if enabled and _is_terminal(self.stream) else None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        beat = min(interval_s, TERMINAL_REFRESH_S) if self._bar is not None else interval_s
        self._heartbeat = threading.Thread(target=self._beat, args=(beat,), name="qwen-math-progress",
                                           daemon=True)
        if enabled and beat > 0:
            self._heartbeat.start()

    def _beat(self, every: float) -> None:
        """Refresh even when no sample finished (long generations): tokens keep counting."""
        while not self._stopped.wait(every):
            self.refresh()

    def refresh(self) -> None:
        """Redraw the bar now, or write the plain line when ``interval_s`` has passed."""
        if not self.enabled:
            return
        with self._lock:
            if self._bar is not None:
                self._update_bar()
            elif self.clock() - self._last_line_time >= self.interval_s:
                self._write_line()

    def _make_bar(self) -> Any:
        from tqdm import tqdm

        class Bar(tqdm):
            """tqdm with our summary as the whole right-hand side (no tqdm rate or ETA: the
            samples of a batch finish together, so a per-sample rate jumps)."""

            summary = ""

            @property
            def format_dict(self) -> dict[str, Any]:
                return {**super().format_dict, "summary": self.summary}

        return Bar(total=self.total_samples, desc=self.label, unit=self.unit, file=self.stream,
                   dynamic_ncols=True, bar_format="{desc}: {percentage:3.0f}%|{bar:10}| {summary}")

    def _update_bar(self, done: int = 0) -> None:
        # the token figures first: a narrow terminal cuts the end of the line
        self._bar.summary = " | ".join(self.meter.parts(self.open_samples()) + self.parts())
        if done:
            self._bar.update(done)
        else:
            self._bar.refresh()

    def sample_done(self, tokens: int, *, resumed: bool = False) -> None:
        """Count one finished sample (``resumed``: found on disk, not generated now)."""
        self.samples_done += 1
        if not resumed:
            self.meter.sample_done(tokens)
        if not self.enabled:
            return
        with self._lock:
            if self._bar is not None:
                self._update_bar(done=1)
            elif not resumed and self.clock() - self._last_line_time >= self.interval_s:
                self._write_line()

    def _write_line(self) -> None:
        self._last_line_time = self.clock()
        self.stream.write(f"{self.label}: {self.summary()}\n")
        self.stream.flush()

    def open_samples(self) -> int:
        return max(0, self.total_samples - self.samples_done)

    def parts(self) -> list[str]:
        """The figures of the line, before the token meter's."""
        return [f"samples {self.samples_done}/{self.total_samples}"]

    def summary(self) -> str:
        return " | ".join(self.parts() + self.meter.parts(self.open_samples()))

    def close(self) -> None:
        self._stopped.set()
        if self._heartbeat.is_alive():
            self._heartbeat.join()
        if self._bar is not None:
            self._update_bar()
            self._bar.close()
            self._bar = None
        elif self.enabled and self.meter.finished_samples:
            self._write_line()

    def __enter__(self) -> SampleProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class RunProgress(SampleProgress):
    """Progress for one dataset of a run: adds problems, accuracy, maj@n and exec errors."""

    def __init__(self, label: str, *, total_samples: int, n: int, **kwargs: Any) -> None:
        self.state = ProgressState(total_samples=total_samples, n=n)
        super().__init__(label, total_samples=total_samples, **kwargs)

    def add(self, record: SampleRecord, *, resumed: bool = False) -> None:
        """Count one sample: found on disk (``resumed``) or just generated."""
        turns = [turn.to_json() for turn in record.turns]
        self.state.add(record.idx, record.answer, bool(record.correct), turns)
        self.sample_done(record.completion_tokens, resumed=resumed)

    def parts(self) -> list[str]:
        s = self.state
        acc = s.correct / s.samples_done if s.samples_done else 0.0
        maj = s.maj_correct / s.problems_done if s.problems_done else 0.0
        exec_rate = s.exec_errors / s.tool_calls if s.tool_calls else 0.0
        return [
            f"samples {s.samples_done}/{s.total_samples}",
            f"problems {s.problems_done}/{s.total_samples // max(s.n, 1)}",
            f"acc {acc:.3f}",
            f"maj@{s.n} {maj:.3f}",
            f"exec err {exec_rate:.1%}",
        ]


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())
