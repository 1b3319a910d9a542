"""Views derived from ``samples.jsonl``: the official ``problems.jsonl`` and ``metrics.json``.

``problems.jsonl`` has one line per problem with the official Qwen2.5-Math keys (``idx,
question, gt, code[], pred[], score[]``, samples in index order) so existing scripts keep
working, plus ``problem_id``, ``finish_reason[]`` and the dataset's metadata (level, subject).

A dataset's ``metrics.json`` is exactly ``eval.metrics``' summary of the graded samples (acc,
pass@k, maj@k, intervals, level/subject breakdown), with two more keys:
``counters`` (no-answer, truncated, tool-limit, context overflow, execution errors and
timeouts, grader timeouts and errors, tokens; pure functions of the records, so ``rescore``
reproduces them) and ``run_time`` (wall time and throughput: time-dependent, so it sits under
a key containing "time"). ``DIR/metrics.json`` gathers the datasets' objects.

What it deliberately does not do: grade or vote (``eval.metrics`` does), or read the manifest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from qwen_math.record import SampleRecord
from qwen_math.runs.jsonl import write_json_atomic, write_jsonl_atomic
from qwen_math.runs.progress import plain_majority_correct
from qwen_math.runs.store import RunLayout

#: sandbox statuses counted as execution errors (``timeout`` is also counted on its own).
EXEC_ERROR_STATUSES = ("error", "timeout", "memory_error", "crashed", "blocked", "output_truncated")


def problem_rows(records: Iterable[SampleRecord], problems: Sequence[Any] | None = None) -> list[dict[str, Any]]:
    """One official-format row per problem, samples in index order, with its majority vote."""
    from eval.metrics import majority_vote

    grouped: dict[int, list[SampleRecord]] = {}
    for record in records:
        grouped.setdefault(record.idx, []).append(record)
    order = [p.idx for p in problems] if problems is not None else sorted(grouped)
    rows = []
    for idx in order:
        samples = sorted(grouped.get(idx, []), key=lambda r: r.sample)
        if not samples:
            continue
        first = samples[0]
        answers = [r.answer for r in samples]
        winner = majority_vote(answers)
        rows.append({
            "idx": idx,
            "problem_id": first.question_id,
            "question": first.question,
            "gt": first.gold,
            **{k: v for k, v in first.metadata.items() if k not in OFFICIAL_KEYS},
            "code": [r.response for r in samples],
            "pred": [r.answer for r in samples],
            "score": [bool(r.correct) for r in samples],
            "finish_reason": [r.finish_reason for r in samples],
            "maj_pred": winner,
            "maj_score": winner is not None and any(
                bool(r.correct) for r in samples if r.answer == winner),
            **({"pred_score": [[r.reward] for r in samples]}
               if all(r.reward is not None for r in samples) else {}),
        })
    return rows


OFFICIAL_KEYS = frozenset({"idx", "question", "gt", "code", "pred", "score", "problem_id",
                           "finish_reason", "maj_pred", "maj_score", "pred_score"})


def majority_correct(row: Mapping[str, Any]) -> bool:
    """Whether a ``problems.jsonl`` row's majority answer is correct.

    Rows this project wrote carry ``maj_score`` (equivalence-grouped vote of ``eval``); rows of
    the official format fall back to the most frequent exact answer string (first seen wins).
    """
    if "maj_score" in row:
        return bool(row["maj_score"])
    return plain_majority_correct(list(zip(row.get("pred") or [], map(bool, row.get("score") or []), strict=False)))


def run_counters(records: Sequence[SampleRecord]) -> dict[str, int]:
    """Counts of everything that went wrong or was spent, from the records alone."""
    finish = Counter(r.finish_reason for r in records)
    grades = Counter(r.grade_status for r in records)
    turn_status = Counter(t.status for r in records for t in r.turns if t.code is not None)
    return {
        "samples": len(records),
        "no_answer": grades["no_answer"],
        "truncated": finish["length"],
        "tool_limit": finish["tool_limit"],
        "context_overflow": finish["context"],
        "generation_errors": finish["error"],
        "tool_calls": sum(turn_status.values()),
        "exec_errors": sum(turn_status[s] for s in EXEC_ERROR_STATUSES),
        "exec_timeouts": turn_status["timeout"],
        "grader_timeouts": grades["timeout"],
        "grader_errors": grades["error"],
        "prompt_tokens": sum(r.prompt_tokens for r in records),
        "completion_tokens": sum(r.completion_tokens for r in records),
    }


def run_time(records: Sequence[SampleRecord], wall_duration_s: float | None) -> dict[str, Any]:
    """Time-dependent figures: wall time of generation (all sessions) and throughput."""
    tokens = sum(r.completion_tokens for r in records)
    per_sample = [r.generation_time_s for r in records if r.generation_time_s is not None]
    return {
        "wall_duration_s": wall_duration_s,
        "completion_tokens_per_s": round(tokens / wall_duration_s, 2) if wall_duration_s else None,
        "samples_per_s": round(len(records) / wall_duration_s, 3) if wall_duration_s else None,
        "mean_sample_generation_time_s": round(sum(per_sample) / len(per_sample), 3) if per_sample else None,
    }


def summarize_records(records: Sequence[SampleRecord]) -> dict[str, Any]:
    """``eval.metrics``' summary of graded records (the object ``rescore`` recomputes)."""
    from eval.metrics import summarize_samples

    return summarize_samples([r.to_json() for r in records])


def dataset_metrics(records: Sequence[SampleRecord], *, wall_duration_s: float | None = None,
                    excluded_no_gold: Sequence[int] = ()) -> dict[str, Any]:
    metrics = dict(summarize_records(records))
    metrics["counters"] = {**run_counters(records), "excluded_no_gold": len(excluded_no_gold)}
    metrics["run_time"] = run_time(records, wall_duration_s)
    return metrics


def write_dataset_views(layout: RunLayout, dataset: str, records: Sequence[SampleRecord],
                        problems: Sequence[Any], *, excluded_no_gold: Sequence[int] = (),
                        wall_duration_s: float | None = None) -> dict[str, Any]:
    """Write ``problems.jsonl`` and ``metrics.json`` of one dataset; returns the metrics."""
    write_jsonl_atomic(layout.problems(dataset), problem_rows(records, problems))
    metrics = dataset_metrics(records, wall_duration_s=wall_duration_s, excluded_no_gold=excluded_no_gold)
    write_json_atomic(layout.dataset_metrics(dataset), metrics)
    return metrics


def write_run_metrics(layout: RunLayout, metrics: Sequence[Mapping[str, Any]], datasets: Sequence[str]) -> None:
    write_json_atomic(layout.metrics, {"datasets": dict(zip(datasets, metrics, strict=True))})
