"""Grading the samples of a run as they complete, through ``eval``'s worker pool.

``SampleGrader`` owns one grader pool for the whole run (started lazily, closed with the run)
and grades one finished sample at a time, so each record is written with its verdict the
moment its sample completes. The answer it grades is the one the strategy committed to
(``SampleResult.answer``: the ``\\boxed{}`` of a CoT/TIR transcript, the program's value in
PoT); a sample without one is ``no_answer`` without a trip to the pool.

A grader failure (a crashed pool, an unexpected exception) never ends the run: the sample is
recorded with ``grade_status = "error"`` and ``correct = None``, counted in ``metrics.json``
(``counters.grader_errors``), and ``qwen-math rescore`` can grade it again later.

What it deliberately does not do: extract or compare answers itself (``eval.grade`` does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Verdict:
    correct: bool | None
    status: str  # correct | wrong | no_answer | timeout | invalid | error
    answer: str | None


class SampleGrader:
    """Grades one sample at a time on a pool that lives as long as the run."""

    def __init__(self, *, workers: int | None = None, timeout_s: float = 5.0) -> None:
        self.workers = workers
        self.timeout_s = timeout_s
        self._pool: Any = None

    def grade(self, *, response: str, answer: str | None, gold: Any, dataset: str, mode: str,
              choices: tuple[str, ...] = ()) -> Verdict:
        """The verdict on one sample's committed ``answer`` (``choices``: a multiple-choice
        row's options, to grade an answer that gives an option's text); never raises."""
        if answer is None:
            return Verdict(False, "no_answer", None)
        try:
            (grade,) = self.grade_items([(answer, str(gold), dataset, tuple(choices))])
        except Exception as exc:  # noqa: BLE001 - recorded on the sample, the run goes on
            log.warning("grader failed on a %s sample (%s: %s); recorded as grade_status=error",
                        dataset, type(exc).__name__, exc)
            return Verdict(None, "error", answer)
        return Verdict(bool(grade), grade.status, answer)

    def grade_items(self, items: list[tuple[Any, ...]]) -> list[Any]:
        """``eval``'s grades of ``(answer, gold, dataset[, choices])`` items, on the run's pool."""
        return self.start().grade_batch(items, timeout=self.timeout_s)

    def start(self) -> Any:
        """Start the worker pool (before the backend loads torch, so workers fork lean)."""
        if self._pool is None:
            from eval.grade import GraderPool

            self._pool = GraderPool(self.workers, timeout=self.timeout_s, grade_fn=grade_committed_answer)
            self._pool.start()
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def grade_committed_answer(item: tuple[Any, ...], timeout: float) -> Any:
    """A grader-pool job: compare an answer the strategy already committed to with the gold.

    ``eval.grade.grade_item`` extracts from a response first; a run's answer is extracted by
    the strategy (or computed by the PoT program), so only the comparison is left to do.
    """
    from eval.choices import judge_answer
    from eval.grade import Grade

    answer, gold = item[0], item[1]
    dataset = item[2] if len(item) > 2 else None
    choices = item[3] if len(item) > 3 else None
    return Grade(judge_answer(answer, gold, dataset=dataset, choices=choices, timeout=timeout), answer)
