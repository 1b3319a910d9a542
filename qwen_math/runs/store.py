"""The run directory on disk: where each file lives, and loading the samples already written.

Layout of ``--output-dir DIR`` (the run directory itself)::

    DIR/manifest.json              configuration, versions, host, checksums, fingerprint
    DIR/metrics.json               {"datasets": {name: <that dataset's metrics.json>}}
    DIR/<dataset>/samples.jsonl    one SampleRecord per (problem, sample), append-only
    DIR/<dataset>/rewards.jsonl    reward-model scores per (problem, sample), append-only
                                   (``qwen-math score``; merged into the records on load)
    DIR/<dataset>/problems.jsonl   the official view: idx, question, gt, code[], pred[], score[]
    DIR/<dataset>/metrics.json     acc, maj@k, pass@k, intervals, breakdowns, run counters
    DIR/report/                    report.html and the PNG plots (``qwen-math report --html``)
    DIR/.lock                      locked (lockf) while a run writes: one writer per run

``load_samples`` reads a ``samples.jsonl`` back into ``SampleRecord`` objects keyed by
``(idx, sample)``; a torn last line (an interrupted write) is dropped, a malformed line in the
middle is an error naming file and line, and a repeated key keeps the first record.

What it deliberately does not do: generate, grade or compute metrics.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from qwen_math.errors import UsageError
from qwen_math.paths import output_folder
from qwen_math.record import SampleRecord
from qwen_math.runs.jsonl import read_jsonl_records, repair_torn_tail
from qwen_math.runs.manifest import MANIFEST_NAME

log = logging.getLogger(__name__)

SAMPLES_NAME = "samples.jsonl"
PROBLEMS_NAME = "problems.jsonl"
METRICS_NAME = "metrics.json"
REPORT_DIR = "report"
LOCK_NAME = ".lock"


def dataset_dir_name(dataset: str) -> str:
    """A dataset name safe as one path component (``a/b.jsonl`` -> ``a_b.jsonl``)."""
    cleaned = re.sub(r"[^A-Za-z0-9._+-]+", "_", dataset).strip("._") or "dataset"
    return cleaned


@dataclass(frozen=True)
class RunLayout:
    """Paths inside one run directory."""

    root: Path

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_NAME

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_NAME

    @property
    def report_dir(self) -> Path:
        return self.root / REPORT_DIR

    def dataset_dir(self, dataset: str) -> Path:
        return self.root / dataset_dir_name(dataset)

    def samples(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / SAMPLES_NAME

    def problems(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / PROBLEMS_NAME

    def dataset_metrics(self, dataset: str) -> Path:
        return self.dataset_dir(dataset) / METRICS_NAME

    def is_run(self) -> bool:
        return self.manifest.is_file()

    def holds_foreign_files(self) -> bool:
        """Whether the folder has files although it is not a run (never overwritten blindly)."""
        return self.root.is_dir() and not self.is_run() and any(
            p.name != LOCK_NAME for p in self.root.iterdir())

    def discard(self, datasets: list[str]) -> None:
        """Remove this run's own files (``--overwrite``); other files in the folder stay."""
        for name in datasets:
            shutil.rmtree(self.dataset_dir(name), ignore_errors=True)
        shutil.rmtree(self.report_dir, ignore_errors=True)
        for path in (self.metrics, self.manifest):
            path.unlink(missing_ok=True)


@contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """Hold ``DIR/.lock`` while a run writes; a second writer is refused.

    A POSIX record lock (``lockf``): it belongs to this process only, so the grader and
    sandbox processes it forks do not inherit it, and the kernel drops it when the process
    exits in any way (SIGKILL included): a killed run never leaves a stale lock behind.
    """
    root = output_folder(root, what="--output-dir")
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno not in (errno.EACCES, errno.EAGAIN):
            raise
        raise UsageError(f"{root} is being written by another `qwen-math eval` process; wait for "
                         "it to finish or choose another --output-dir") from None
    try:
        yield
    finally:
        os.close(fd)


def load_samples(path: Path, *, repair: bool = False) -> dict[tuple[int, int], SampleRecord]:
    """Records of a ``samples.jsonl`` keyed by ``(idx, sample)``; ``repair`` cuts a torn tail."""
    if repair:
        repair_torn_tail(path)
    contents = read_jsonl_records(path)
    if contents.torn_bytes and not repair:
        log.warning("%s: ignoring a torn last line (%d bytes)", path, contents.torn_bytes)
    records: dict[tuple[int, int], SampleRecord] = {}
    for number, data in enumerate(contents.records, start=1):
        try:
            record = SampleRecord.from_json(data)
        except UsageError as exc:
            raise UsageError(f"{path}:{number}: {exc}") from None
        key = (record.idx, record.sample)
        if key in records:
            log.warning("%s:%d: repeats problem %d sample %d; keeping the first", path, number, *key)
            continue
        records[key] = record
    from qwen_math.scoring.store import load_rewards, rewards_path, with_rewards

    return with_rewards(records, load_rewards(rewards_path(path)))


def run_datasets(manifest: dict) -> list[str]:
    """Dataset names recorded in a manifest, in run order."""
    return list(manifest.get("config", {}).get("datasets", []))


def require_run(run_dir: Path) -> RunLayout:
    """The layout of an existing run, or a ``UsageError`` saying what is missing."""
    layout = RunLayout(Path(run_dir))
    if layout.root.exists() and not layout.root.is_dir():
        raise UsageError(f"{run_dir}: is a file, not a run directory")
    if not layout.root.is_dir():
        raise UsageError(f"{run_dir}: no such run directory")
    if not layout.is_run():
        raise UsageError(f"{run_dir}: not a run directory (no {MANIFEST_NAME}; made by `qwen-math eval`?)")
    return layout
