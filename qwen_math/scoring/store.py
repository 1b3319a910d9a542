"""A run's rewards on disk: ``DIR/<dataset>/rewards.jsonl``, append-only, one line per sample.

Each line is ``{"idx", "sample", "reward", "reward_steps"?, "reward_model"}`` (the reward
model's revision). Lines are appended with ``AppendOnlyJsonl`` (one ``os.write`` each), so a
killed scorer leaves at most one torn last line, which the next run cuts off; samples already
in the file are never scored again: every sample is scored exactly once. ``samples.jsonl`` is
never rewritten: readers merge the rewards into the records (``with_rewards``; a reward the
record itself carries, written by ``eval --reward-model``, wins).

``score_records`` scores the records that have no reward yet, a few problems per batch, and
appends each problem's rewards as soon as they exist; ``ProblemScorer`` does the same from
inside ``eval``, one problem as soon as all its n samples are written.

What it deliberately does not do: load models (callers pass a scorer with ``score(items)``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from qwen_math.errors import UsageError
from qwen_math.record import SampleRecord, reward_steps_of
from qwen_math.runs.jsonl import AppendOnlyJsonl, read_jsonl_records, repair_torn_tail

log = logging.getLogger(__name__)

REWARDS_NAME = "rewards.jsonl"
#: problems per scoring call (their samples are batched together).
PROBLEMS_PER_BATCH = 4

Key = tuple[int, int]


def rewards_path(samples_path: Path) -> Path:
    return Path(samples_path).with_name(REWARDS_NAME)


def load_rewards(path: Path, *, repair: bool = False) -> dict[Key, dict[str, Any]]:
    """The reward rows of ``path`` keyed by ``(idx, sample)`` (first row of a key wins)."""
    if not path.exists():
        return {}
    if repair:
        repair_torn_tail(path)
    rows: dict[Key, dict[str, Any]] = {}
    for number, row in enumerate(read_jsonl_records(path).records, start=1):
        try:
            key = (int(row["idx"]), int(row["sample"]))
            reward = float(row["reward"])
            steps = reward_steps_of(row.get("reward_steps"))
        except (KeyError, TypeError, ValueError, UsageError) as exc:
            raise UsageError(f"{path}:{number}: not a reward row ({exc})") from None
        rows.setdefault(key, {**row, "reward": reward, "reward_steps": steps})
    return rows


def with_rewards(records: Mapping[Key, SampleRecord], rewards: Mapping[Key, Mapping[str, Any]]) -> dict[Key, SampleRecord]:
    """``records`` with the rewards of ``rewards`` filled in where a record has none."""
    merged = {}
    for key, record in records.items():
        row = rewards.get(key)
        if record.reward is None and row is not None:
            record = replace(record, reward=row["reward"], reward_steps=row["reward_steps"])
        merged[key] = record
    return merged


def reward_row(record: SampleRecord, reward: Any, revision: str) -> dict[str, Any]:
    row: dict[str, Any] = {"idx": record.idx, "sample": record.sample, "reward": reward.value}
    if reward.steps is not None:
        row["reward_steps"] = list(reward.steps)
    row["reward_model"] = revision
    return row


def score_problems(scorer: Any, problems: Sequence[Sequence[SampleRecord]]) -> list[Any]:
    """One reward per record of ``problems`` (flattened, in order)."""
    from qwen_math.scoring.hf import ScoreItem

    items = [ScoreItem(record.idx, record.question, record.response) for group in problems for record in group]
    return scorer.score(items)


def score_records(path: Path, records: Iterable[SampleRecord], scorer: Any, revision: str, *,
                  problems_per_batch: int = PROBLEMS_PER_BATCH,
                  progress: Callable[[int, int], None] | None = None) -> int:
    """Score and append every record not in ``path`` yet; returns how many were scored."""
    scored = load_rewards(path, repair=True)
    todo: dict[int, list[SampleRecord]] = {}
    for record in records:
        if (record.idx, record.sample) not in scored and record.reward is None:
            todo.setdefault(record.idx, []).append(record)
    groups = [sorted(todo[idx], key=lambda r: r.sample) for idx in sorted(todo)]
    total = sum(len(g) for g in groups)
    done = 0
    with AppendOnlyJsonl(path) as writer:
        for start in range(0, len(groups), problems_per_batch):
            batch = groups[start:start + problems_per_batch]
            rewards = score_problems(scorer, batch)
            for record, reward in zip((r for g in batch for r in g), rewards, strict=True):
                writer.append(reward_row(record, reward, revision))
            done += sum(len(g) for g in batch)
            if progress is not None:
                progress(done, total)
    return total


class ProblemScorer:
    """Scores a problem's samples from inside ``eval`` the moment all n of them exist."""

    def __init__(self, path: Path, scorer: Any, revision: str, n: int,
                 done: Mapping[Key, SampleRecord]) -> None:
        self.path, self.scorer, self.revision, self.n = path, scorer, revision, n
        self.waiting: dict[int, list[SampleRecord]] = {}
        for record in done.values():
            self.waiting.setdefault(record.idx, []).append(record)

    def add(self, record: SampleRecord) -> None:
        group = self.waiting.setdefault(record.idx, [])
        group.append(record)
        if len(group) >= self.n:
            score_records(self.path, self.waiting.pop(record.idx), self.scorer, self.revision)

    def finish(self, records: Iterable[SampleRecord]) -> None:
        """Score whatever is still unscored (e.g. problems resumed complete)."""
        started = time.monotonic()
        count = score_records(self.path, records, self.scorer, self.revision)
        if count:
            log.info("%s: scored %d sample(s) in %.1f s", self.path, count, time.monotonic() - started)
