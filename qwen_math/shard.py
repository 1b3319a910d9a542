"""Sharded runs: a deterministic slice of the problems per shard, and merging shards back.

``qwen-math eval ... --shard i/N`` runs shard ``i`` of ``N`` (0 <= i < N): problems
``i, i+N, i+2N, ...`` of each dataset (``select_shard``), a round-robin slice, so every shard
gets a similar mix when a dataset is sorted by difficulty. The shards of one evaluation run
on separate machines, each into its own run directory; their manifests hold the same
fingerprint except the ``shard`` field (``SHARD_FIELD``), which names the slice.

``merge_runs(shard_dirs, output_dir)`` checks that the shards are complete, share one
fingerprint (``shard`` aside) and cover ``0..N-1`` exactly once, then writes one run
directory: every dataset's ``samples.jsonl`` (the union, ordered by problem and sample), its
views (``problems.jsonl``, ``metrics.json``) recomputed from those records by the same code an
unsharded run uses, the run's ``metrics.json``, and a manifest whose fingerprint is the shards'
without ``shard``: the fingerprint of the unsharded run, so the merged directory has the same
metrics as an unsharded run and resumes or extends like one.

What it deliberately does not do: schedule shards on machines (any job runner does that), or
merge runs of different configurations (a ``ResumeRefused`` names each difference).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from qwen_math.errors import PartialRun, ResumeRefused, UsageError
from qwen_math.paths import output_folder

T = TypeVar("T")

#: The fingerprint (and config) field naming a shard, ``"i/N"``; absent in unsharded runs.
SHARD_FIELD = "shard"
SHARD_PATTERN = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


# --- slicing (pure) ------------------------------------------------------------------------
@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    """``"i/N"`` -> ``Shard(i, N)``; anything else is a ``UsageError``."""
    match = SHARD_PATTERN.fullmatch(text) if isinstance(text, str) else None
    if match is None or not int(match.group(1)) < int(match.group(2)):
        raise UsageError(f"shard must be i/N with 0 <= i < N, got {text!r}")
    return Shard(int(match.group(1)), int(match.group(2)))


def select_shard(problems: Sequence[T], shard: str | None) -> list[T]:
    """The problems shard ``i/N`` runs: ``problems[i::N]`` (all of them when ``shard`` is None)."""
    if shard is None:
        return list(problems)
    parsed = parse_shard(shard)
    return list(problems[parsed.index::parsed.count])


def shard_fingerprint_fields(fields: dict[str, Any], shard: str | None) -> dict[str, Any]:
    """Fingerprint fields of a shard run: the unsharded run's plus ``shard`` (unchanged if None)."""
    if shard is None:
        return dict(fields)
    return {**fields, SHARD_FIELD: str(parse_shard(shard))}


# --- merging --------------------------------------------------------------------------------
@dataclass(frozen=True)
class MergeResult:
    run_dir: Path
    shards: int
    samples: dict[str, int]  # dataset -> samples merged


@dataclass(frozen=True)
class ShardRun:
    """One shard's run directory, read."""

    path: Path
    manifest: dict[str, Any]
    shard: Shard


def merge_runs(
    shard_dirs: Sequence[str | Path],
    output_dir: str | Path,
    *,
    overwrite: bool = False,
    command: Sequence[str] = (),
) -> MergeResult:
    """Merge the shard run directories into ``output_dir`` (see the module docstring)."""
    from qwen_math.runs.jsonl import write_json_atomic
    from qwen_math.runs.store import run_datasets
    from qwen_math.runs.views import write_run_metrics

    # 1) read every shard and check they are one run's complete, distinct slices
    shards = check_shards([read_shard(Path(path)) for path in shard_dirs])
    datasets = run_datasets(shards[0].manifest)
    by_dataset = {dataset: merged_records(shards, dataset) for dataset in datasets}
    layout = prepare_output(Path(output_dir), shards, overwrite=overwrite)
    # 2) per dataset: union of the samples, then the views an unsharded run writes
    metrics, samples, problems = [], {}, {}
    for dataset, records in by_dataset.items():
        metrics.append(write_merged_dataset(layout, dataset, records, shards))
        samples[dataset] = len(records)
        problems[dataset] = len({record.idx for record in records})
    # 3) the run's metrics and a manifest with the unsharded fingerprint
    write_run_metrics(layout, metrics, datasets)
    write_json_atomic(layout.manifest, merged_manifest(shards, problems_by_dataset=problems, command=command))
    return MergeResult(layout.root, len(shards), samples)


def read_shard(path: Path) -> ShardRun:
    from qwen_math.runs.manifest import read_manifest
    from qwen_math.runs.store import require_run

    require_run(path)
    manifest = read_manifest(path) or {}
    value = manifest["fingerprint"].get("fields", {}).get(SHARD_FIELD)
    if value is None:
        raise UsageError(f"{path}: not a shard (its fingerprint has no {SHARD_FIELD!r}; made "
                         "without --shard?)")
    return ShardRun(path, manifest, parse_shard(value))


def check_shards(shards: list[ShardRun]) -> list[ShardRun]:
    """The shards ordered by index; one run's, each exactly once, all of them."""
    from qwen_math.runs.manifest import Fingerprint

    first = shards[0]
    base = Fingerprint.from_json(first.manifest["fingerprint"])
    for other in shards[1:]:
        differences = base.differences(Fingerprint.from_json(other.manifest["fingerprint"]),
                                       ignore=frozenset({SHARD_FIELD}))
        if differences:
            raise ResumeRefused(f"{other.path} was made with a different configuration than "
                                f"{first.path} ({'; '.join(differences)}); only shards of one run merge")
    counts = sorted({shard.shard.count for shard in shards})
    if len(counts) > 1:
        raise UsageError(f"the shards split the run differently (N = {', '.join(map(str, counts))})")
    seen: dict[int, Path] = {}
    for shard in shards:
        if shard.shard.index in seen:
            raise UsageError(f"shard {shard.shard} appears twice: {seen[shard.shard.index]} and {shard.path}")
        seen[shard.shard.index] = shard.path
    missing = [f"{index}/{counts[0]}" for index in range(counts[0]) if index not in seen]
    if missing:
        raise UsageError(f"shard(s) {', '.join(missing)} missing; merge needs all {counts[0]}")
    return sorted(shards, key=lambda shard: shard.shard.index)


def prepare_output(output: Path, shards: Sequence[ShardRun], *, overwrite: bool):  # -> RunLayout
    from qwen_math.runs.store import RunLayout, run_datasets

    resolved = output.resolve()
    if any(shard.path.resolve() == resolved for shard in shards):
        raise UsageError(f"--output-dir {output} is one of the shards; choose a new folder")
    layout = RunLayout(output)
    if output.exists() and not output.is_dir():
        raise UsageError(f"--output-dir {output}: is a file, not a folder")
    if output.exists() and any(output.iterdir()):
        if not (overwrite and layout.is_run()):
            raise UsageError(f"{output} exists and is not empty; choose a new --output-dir "
                             "(or pass --overwrite to replace a run there)")
        layout.discard(run_datasets(shards[0].manifest))
    output_folder(output, what="--output-dir")
    return layout


def merged_records(shards: Sequence[ShardRun], dataset: str) -> list[Any]:
    """Every sample of ``dataset`` across the shards, by (problem idx, sample)."""
    from qwen_math.runs.store import RunLayout, load_samples

    merged: dict[tuple[int, int], Any] = {}
    owner: dict[tuple[int, int], Path] = {}
    for shard in shards:
        layout = RunLayout(shard.path)
        if not layout.dataset_metrics(dataset).is_file():
            raise PartialRun(f"{shard.path}: dataset {dataset} is not finished (no metrics.json); "
                             "rerun that shard's command to complete it, then merge")
        for key, record in load_samples(layout.samples(dataset)).items():
            if key in merged:
                raise UsageError(f"problem {key[0]} sample {key[1]} of {dataset} is in both "
                                 f"{owner[key]} and {shard.path}; the shards overlap")
            merged[key], owner[key] = record, shard.path
    return [merged[key] for key in sorted(merged)]


def write_merged_dataset(layout, dataset: str, records: list[Any], shards: Sequence[ShardRun]) -> dict[str, Any]:
    """Samples and views of one dataset in the merged run; returns its metrics."""
    from qwen_math.runs.jsonl import write_jsonl_atomic
    from qwen_math.runs.views import write_dataset_views

    layout.dataset_dir(dataset).mkdir(parents=True, exist_ok=True)
    write_jsonl_atomic(layout.samples(dataset), [record.to_json() for record in records])
    excluded = sorted({idx for shard in shards
                       for idx in shard.manifest.get("datasets", {}).get(dataset, {}).get("excluded_no_gold", [])})
    duration = sum(shard.manifest.get("generation_duration_s", {}).get(dataset, 0.0) for shard in shards)
    return write_dataset_views(layout, dataset, records, None, excluded_no_gold=excluded,
                               wall_duration_s=round(duration, 3))


def merged_manifest(shards: Sequence[ShardRun], *, problems_by_dataset: dict[str, int],
                    command: Sequence[str]) -> dict[str, Any]:
    """The first shard's manifest, made the unsharded run's: fingerprint, config, counts."""
    from qwen_math.runs.manifest import Fingerprint

    manifest = copy.deepcopy(shards[0].manifest)
    fields = dict(manifest["fingerprint"]["fields"])
    fields.pop(SHARD_FIELD, None)
    manifest["fingerprint"] = Fingerprint(fields).to_json()
    manifest.get("config", {}).pop(SHARD_FIELD, None)
    for dataset, problems in problems_by_dataset.items():
        manifest.setdefault("datasets", {}).setdefault(dataset, {})["problems"] = problems
    manifest["generation_duration_s"] = {
        dataset: round(sum(s.manifest.get("generation_duration_s", {}).get(dataset, 0.0) for s in shards), 3)
        for dataset in problems_by_dataset
    }
    manifest["command"] = list(command)
    manifest["merged_from"] = [{"run_dir": str(shard.path), SHARD_FIELD: str(shard.shard)} for shard in shards]
    return manifest
