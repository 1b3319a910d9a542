"""Scoring a run with a reward model: ``score_run`` (``qwen-math score``) and the scorer factory
``eval --reward-model`` shares.

``score_run(run_dir, options)`` takes the run's lock, records the reward model in the manifest
(``reward_model``: model id, path, revision, kind, aggregation, backend), scores every sample
that has no reward yet into ``<dataset>/rewards.jsonl`` (append-only; a rerun after a kill
scores only the rest), then rewrites the finished datasets' ``metrics.json`` and
``problems.jsonl`` (``rm@k``, ``wmaj@k``, official ``pred_score``). A run scored with another
reward model (revision, kind or aggregation) is refused (exit 5): rewards never mix.

What it deliberately does not do: generate or grade.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_math.errors import ResumeRefused, UsageError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RewardOptions:
    """Which reward model, how to run it, how to turn a PRM's steps into one score."""

    model: str
    kind: str | None = None  # orm | prm; None: read from the checkpoint's head
    aggregation: str = "min"  # PRM steps -> one score: min | last | prod
    backend: str = "hf"  # hf (in process) | vllm | openai (vLLM's /pooling at base_url)
    base_url: str | None = None
    device: str = "cpu"
    dtype: str = "auto"
    token_budget: int = 16384
    tensor_parallel: int = 1

    def __post_init__(self) -> None:
        from eval.metrics import STEP_AGGREGATIONS

        if self.kind is not None and self.kind not in ("orm", "prm"):
            raise UsageError(f"--kind {self.kind}: choose orm or prm")
        if self.aggregation not in STEP_AGGREGATIONS:
            raise UsageError(f"--aggregation {self.aggregation}: choose {', '.join(STEP_AGGREGATIONS)}")
        if self.backend not in SCORER_FACTORIES:
            raise UsageError(f"--reward-backend {self.backend}: choose {', '.join(SCORER_FACTORIES)}")
        if self.backend == "openai" and not self.base_url:
            raise UsageError("--reward-backend openai needs --reward-base-url (a vLLM server's URL)")


@dataclass(frozen=True)
class LoadedScorer:
    """A scorer and what the manifest records about it."""

    scorer: Any
    manifest: dict[str, Any]

    @property
    def revision(self) -> str:
        return str(self.manifest["revision"])

    def close(self) -> None:
        self.scorer.close()


def make_hf_scorer(options: RewardOptions) -> LoadedScorer:
    from qwen_math.model import resolve_checkpoint
    from qwen_math.scoring.hf import HFRewardScorer

    try:
        path = resolve_checkpoint(options.model)
    except UsageError as exc:  # its messages name --model; here the flag is --reward-model
        raise UsageError(str(exc).replace("--model ", "--reward-model ", 1)) from None
    scorer = HFRewardScorer.create(options.model, path, kind=options.kind, device=options.device,
                                   dtype=options.dtype, token_budget=options.token_budget,
                                   aggregation=options.aggregation)
    return LoadedScorer(scorer, {**scorer.info.to_json(), "aggregation": options.aggregation, "backend": "hf"})


def remote_manifest(options: RewardOptions, kind: str) -> dict[str, Any]:
    return {"model": options.model, "kind": kind, "revision": options.model, "aggregation": options.aggregation,
            "backend": options.backend, "base_url": options.base_url}


def make_vllm_scorer(options: RewardOptions) -> LoadedScorer:
    from qwen_math.scoring.remote import VLLMRewardScorer

    kind = options.kind or "orm"
    scorer = VLLMRewardScorer(options.model, kind, options.aggregation, tensor_parallel=options.tensor_parallel)
    return LoadedScorer(scorer, remote_manifest(options, kind))


def make_openai_scorer(options: RewardOptions) -> LoadedScorer:
    from qwen_math.scoring.remote import HTTPPoolingScorer
    from qwen_math.tokenizer import load_offline_tokenizer

    kind = options.kind or "orm"
    scorer = HTTPPoolingScorer(str(options.base_url), options.model, kind, options.aggregation,
                               load_offline_tokenizer())
    return LoadedScorer(scorer, remote_manifest(options, kind))


#: reward backend name -> factory.
SCORER_FACTORIES: dict[str, Callable[[RewardOptions], LoadedScorer]] = {
    "hf": make_hf_scorer, "vllm": make_vllm_scorer, "openai": make_openai_scorer,
}


def load_scorer(options: RewardOptions) -> LoadedScorer:
    return SCORER_FACTORIES[options.backend](options)


#: manifest fields that must agree between two scorings of one run.
SAME_SCORER_FIELDS = ("revision", "kind", "aggregation")


def check_same_scorer(run_dir: Path, old: dict[str, Any] | None, new: dict[str, Any]) -> None:
    if not old:
        return
    differences = [f"{name}: {old.get(name)} -> {new.get(name)}" for name in SAME_SCORER_FIELDS
                   if old.get(name) != new.get(name)]
    if differences:
        raise ResumeRefused(f"{run_dir} was scored with another reward model ({'; '.join(differences)}); "
                            "score a copy of the run directory instead (rewards never mix)")


def record_scorer(layout: Any, manifest: dict[str, Any], loaded: LoadedScorer) -> None:
    from qwen_math.runs.jsonl import write_json_atomic

    check_same_scorer(layout.root, manifest.get("reward_model"), loaded.manifest)
    manifest["reward_model"] = loaded.manifest
    write_json_atomic(layout.manifest, manifest)


def progress_line(dataset: str) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        sys.stderr.write(f"\rscoring {dataset}: {done}/{total} samples")
        if done == total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return report


def score_run(run_dir: Path, options: RewardOptions, *, scorer: LoadedScorer | None = None,
              progress: bool = True) -> dict[str, int]:
    """Score every unscored sample of a run; returns samples scored per dataset."""
    from qwen_math.runs.manifest import read_manifest
    from qwen_math.runs.store import load_samples, require_run, run_datasets, run_lock
    from qwen_math.scoring.store import rewards_path, score_records

    layout = require_run(run_dir)
    manifest = read_manifest(layout.root) or {}
    datasets = run_datasets(manifest)
    records = {name: load_samples(layout.samples(name)) for name in datasets}
    if not any(records.values()):
        raise UsageError(f"{run_dir}: the run has no samples to score (run `qwen-math eval` first)")
    owned = scorer is None
    loaded = scorer or load_scorer(options)
    scored: dict[str, int] = {}
    try:
        with run_lock(layout.root):
            manifest = read_manifest(layout.root) or manifest
            record_scorer(layout, manifest, loaded)
            for name in datasets:
                scored[name] = score_records(
                    rewards_path(layout.samples(name)), records[name].values(), loaded.scorer, loaded.revision,
                    progress=progress_line(name) if progress else None)
            refresh_views(layout, manifest, datasets)
    except KeyboardInterrupt:
        from qwen_math.errors import PartialRun

        raise PartialRun(f"interrupted: the rewards written so far are kept in {layout.root}; "
                         "rerun the same command to score the rest") from None
    finally:
        if owned:
            loaded.close()
    return scored


def refresh_views(layout: Any, manifest: dict[str, Any], datasets: list[str]) -> None:
    """Rewrite the finished datasets' views (metrics with rm@k / wmaj@k) and the run's metrics."""
    from qwen_math.runs.jsonl import read_json_object
    from qwen_math.runs.store import load_samples
    from qwen_math.runs.views import write_dataset_views, write_run_metrics

    finished = [name for name in datasets if layout.dataset_metrics(name).is_file()]
    metrics = []
    for name in finished:
        records = load_samples(layout.samples(name))
        info = manifest.get("datasets", {}).get(name, {})
        metrics.append(write_dataset_views(
            layout, name, [records[k] for k in sorted(records)], None,
            excluded_no_gold=info.get("excluded_no_gold", []),
            wall_duration_s=manifest.get("generation_duration_s", {}).get(name)))
    if finished and layout.metrics.is_file():
        old = read_json_object(layout.metrics).get("datasets", {})
        merged = {**old, **dict(zip(finished, metrics, strict=True))}
        write_run_metrics(layout, list(merged.values()), list(merged))
