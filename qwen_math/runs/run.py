"""A resumable benchmark run: problems in, one graded sample record per (problem, sample) out.

``evaluate(config)`` is the library behind ``qwen-math eval``:

1. load each benchmark; rows without gold are reported and excluded;
2. lock the run directory (one writer at a time) and open it: a new one, the same run
   resumed (its fingerprint must match, else ``ResumeRefused``), ``--extend-n`` (only ``n``
   may grow), or ``--overwrite``; a folder holding other files is never written into;
3. per dataset: cut a torn last line, read the samples already written, and generate only
   the missing ``(problem, sample)`` pairs; each sample is graded and appended to
   ``samples.jsonl`` the moment it completes (one ``os.write`` per line, fsync at most once a
   second), so an interruption at any moment loses nothing written and regenerates nothing;
4. when every sample is in: write the views ``problems.jsonl`` and ``metrics.json``.

A sample's seed depends only on (run seed, problem id, sample index), so a resumed run writes
the same records as an uninterrupted one (compared without time-dependent keys). A grader
failure on one sample is recorded on that sample (``grade_status = "error"``) and the run goes
on; sandbox failures are recorded in the turns by the strategy.

What it deliberately does not do: parse flags or print results (``qwen_math.commands``), or
implement decoding, execution or grading (``solve``, ``sandbox``, ``eval``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from qwen_math.backends.base import BackendOptions
from qwen_math.config import DEFAULT_MAX_TOOL_CALLS, SamplingConfig, at_least, positive_seconds
from qwen_math.errors import PartialRun, UsageError
from qwen_math.record import RESUMABLE_SCHEMA_VERSION, SampleRecord
from qwen_math.runs.jsonl import AppendOnlyJsonl, write_json_atomic
from qwen_math.runs.manifest import (
    Fingerprint,
    build_manifest,
    check_resumable,
    file_checksum,
    flatten,
    json_checksum,
    read_manifest,
    tree_checksum,
    with_old_defaults,
)
from qwen_math.runs.progress import RunProgress, live_token_counter, max_tokens_per_sample
from qwen_math.runs.store import RunLayout, load_samples, run_lock
from qwen_math.shard import parse_shard, select_shard, shard_fingerprint_fields
from qwen_math.strategies import MODES_WITH_CODE, make_strategy
from qwen_math.strategies.tir_protocols import (
    DEFAULT_PROTOCOL,
    LEGACY_PROTOCOL,
    PROTOCOLS,
    check_extract_from,
    get_protocol,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """Everything ``evaluate`` needs; the CLI builds it from flags."""

    datasets: tuple[str, ...]
    output_dir: Path
    mode: str = "cot"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    max_tool_calls: int | None = None  # None: the TIR protocol's own limit
    backend: str = "hf"
    backend_options: BackendOptions = field(default_factory=BackendOptions)
    prompt_style: str | None = None  # None: the strategy's default (instruct)
    data_dir: str | None = None
    split: str = "test"
    limit: int | None = None
    overwrite: bool = False
    extend_n: int | None = None
    grader_workers: int | None = None
    grader_timeout_s: float = 5.0
    progress: bool = True
    progress_interval_s: float = 10.0
    command: tuple[str, ...] = ()
    shard: str | None = None  # "i/N": run only that slice of each dataset (qwen_math.shard)
    tir_protocol: str | None = None  # None: a resumed run's own (notebook before protocols), else the default
    tool_timeout_s: float | None = None  # None: the TIR protocol's cell timeout
    extract_from: str = "full"
    suite: str | None = None  # a suite (qwen_math.suites): per-dataset few-shot settings, card report
    not_run: tuple[str, ...] = ()  # suite datasets skipped for lack of a data file
    few_shot: Any = None  # qwen_math.fewshot.FewShot for every dataset (None: zero-shot)
    few_shot_file: str | None = None  # the exemplar file (None: the lookup of qwen_math.fewshot)
    reward: Any = None  # qwen_math.scoring.runs.RewardOptions: score each problem as it finishes

    def __post_init__(self) -> None:
        if self.shard is not None:
            object.__setattr__(self, "shard", str(parse_shard(self.shard)))
        if not self.datasets:
            raise UsageError("--datasets needs at least one benchmark name or path")
        if self.limit is not None and self.limit < 1:
            raise UsageError(f"--limit must be >= 1, got {self.limit}")
        if self.extend_n is not None and self.extend_n < 1:
            raise UsageError(f"--extend-n must be >= 1, got {self.extend_n}")
        if self.extend_n is not None and self.overwrite:
            raise UsageError("--extend-n and --overwrite exclude each other")
        if self.max_tool_calls is not None:
            at_least("--max-tool-calls", self.max_tool_calls, 0)
        if self.tir_protocol is not None:
            get_protocol(self.tir_protocol)
        if self.tool_timeout_s is not None:
            positive_seconds("--tool-timeout", self.tool_timeout_s)
        check_extract_from(self.extract_from)
        if self.grader_workers is not None:
            at_least("--grader-workers", self.grader_workers, 1)
        positive_seconds("--grader-timeout", self.grader_timeout_s)
        positive_seconds("--progress-interval", self.progress_interval_s, allow_zero=True)


@dataclass(frozen=True)
class DatasetResult:
    dataset: str
    problems: int
    samples_written: int
    samples_resumed: int
    excluded_no_gold: tuple[int, ...]
    metrics: Mapping[str, Any]


@dataclass(frozen=True)
class RunResult:
    run_dir: Path
    datasets: tuple[DatasetResult, ...]


# --- 1) problems -------------------------------------------------------------------------

@dataclass(frozen=True)
class LoadedDataset:
    """One benchmark's problems with gold, and the idx of the rows excluded for lack of it."""

    name: str
    problems: tuple[Any, ...]  # eval.datasets.Problem
    excluded_no_gold: tuple[int, ...]
    user_texts: Mapping[str, str] = field(default_factory=dict)  # problem id -> few-shot user turn
    few_shot: Any = None  # qwen_math.fewshot.FewShot this dataset ran with
    few_shot_sha256: str | None = None  # of the exemplars its prompts carry


def load_datasets(config: EvalConfig) -> list[LoadedDataset]:
    from eval.datasets import load_benchmark

    if config.data_dir is not None and not Path(config.data_dir).is_dir():
        raise UsageError(f"--data-dir {config.data_dir}: no such folder")
    loaded = []
    for name in config.datasets:
        problems = load_benchmark(name, split=config.split, limit=config.limit, data_dir=config.data_dir)
        with_gold = tuple(p for p in problems if has_gold(p))
        missing = tuple(p.idx for p in problems if not has_gold(p))
        dataset = problems[0].dataset if problems else name
        if missing:
            log.warning("%s: %d row(s) have no gold answer and are excluded (idx %s)",
                        dataset, len(missing), ", ".join(map(str, missing[:20])) + (" ..." if len(missing) > 20 else ""))
        if not with_gold:
            raise UsageError(f"{name}: no problem with a gold answer to evaluate")
        check_unique_ids(name, with_gold)
        loaded.append(LoadedDataset(dataset, with_gold, missing))
    names = [d.name for d in loaded]
    if len(set(names)) != len(names):
        raise UsageError(f"--datasets names a benchmark twice: {', '.join(names)}")
    return with_few_shot_prompts(config, loaded)


def with_few_shot_prompts(config: EvalConfig, loaded: Sequence[LoadedDataset]) -> list[LoadedDataset]:
    """Each dataset with the few-shot user turns its problems get (suite or flags)."""
    from qwen_math.fewshot import FewShot
    from qwen_math.runs.prompts import check_few_shot_style
    from qwen_math.suites import few_shot_plan, load_plan_exemplars, prepare_prompts

    plan = few_shot_plan([d.name for d in loaded], suite=config.suite, mode=config.mode,
                         setting=config.few_shot or FewShot())
    check_few_shot_style(plan, config.prompt_style or "instruct")
    exemplars, source = load_plan_exemplars(plan, config.few_shot_file, config.data_dir)
    prepared = [prepare_prompts(d.name, d.problems, plan[d.name], exemplars, source=source or "")
                for d in loaded]
    return [replace(d, user_texts=p.user_texts, few_shot=plan[d.name], few_shot_sha256=p.digest)
            for d, p in zip(loaded, prepared, strict=True)]


def check_unique_ids(name: str, problems: Sequence[Any]) -> None:
    """Samples are keyed by problem id: a repeated id would mix two problems' samples."""
    seen: dict[str, int] = {}
    for problem in problems:
        if problem.problem_id in seen:
            raise UsageError(f"{name}: rows {seen[problem.problem_id]} and {problem.idx} share the "
                             f"problem id {problem.problem_id!r}; ids must be unique")
        seen[problem.problem_id] = problem.idx


def has_gold(problem: Any) -> bool:
    gold = getattr(problem, "gold", None)
    return gold is not None and str(gold).strip() != ""


def problems_checksum(problems: Sequence[Any]) -> str:
    """What the run sees of a dataset: ids, questions and golds, in order."""
    return json_checksum([[p.problem_id, p.idx, p.question, str(p.gold)] for p in problems])


# --- 2) fingerprint and run directory ----------------------------------------------------

def fingerprint_fields(config: EvalConfig, datasets: Sequence[LoadedDataset], prompt_sha256: str) -> dict[str, Any]:
    """Every setting that changes a sample or its grade, flattened."""
    s = config.sampling
    fields: dict[str, Any] = {
        "mode": config.mode,
        "prompt.style": config.prompt_style or "instruct",
        "prompt.sha256": prompt_sha256,
        "sampling.n": s.n,
        "sampling.temperature": s.temperature,
        "sampling.top_p": s.top_p,
        "sampling.top_k": s.top_k,
        "sampling.max_tokens": s.max_tokens,
        "sampling.seed": s.seed,
        "max_tool_calls": effective_max_tool_calls(config),
        "backend": config.backend,
        "model.checksum": model_checksum(config),
        "model.dtype": config.backend_options.dtype,
        "model.device": config.backend_options.device,
        "split": config.split,
        "limit": config.limit,
        "record_schema_version": RESUMABLE_SCHEMA_VERSION,
    }
    for dataset in datasets:
        fields[f"datasets.{dataset.name}.checksum"] = problems_checksum(dataset.problems)
    fields.update(flatten("tir", tir_settings(config)))
    fields.update(few_shot_fingerprint_fields(config, datasets))
    return shard_fingerprint_fields(fields, config.shard)


def strategy_options(config: EvalConfig) -> dict[str, Any]:
    """What ``make_strategy`` / ``generate_samples`` take from the config (TIR's options)."""
    return {"max_tool_calls": config.max_tool_calls, "tir_protocol": config.tir_protocol or DEFAULT_PROTOCOL,
            "tool_timeout": config.tool_timeout_s, "extract_from": config.extract_from}


def tir_settings(config: EvalConfig) -> dict[str, Any]:
    """A TIR run's protocol and every value it sets (empty for other modes)."""
    if config.mode != "tir":
        return {}
    return make_strategy("tir", **strategy_options(config)).settings()


def effective_max_tool_calls(config: EvalConfig) -> int:
    """The tool budget: given, else the TIR protocol's own (other modes: the old default)."""
    if config.max_tool_calls is not None:
        return config.max_tool_calls
    return tir_settings(config).get("max_tool_calls", DEFAULT_MAX_TOOL_CALLS)


def legacy_tir_fields(old: Fingerprint) -> dict[str, Any]:
    """What a TIR run made before protocols existed ran with: ``notebook`` at its recorded
    tool budget, 5 s cells, answers from the full transcript."""
    if old.fields.get("mode") != "tir" or "tir.protocol" in old.fields:
        return {}
    budget = old.fields.get("max_tool_calls", DEFAULT_MAX_TOOL_CALLS)
    legacy = make_strategy("tir", max_tool_calls=budget, tir_protocol=LEGACY_PROTOCOL)
    return flatten("tir", legacy.settings())


def resolve_tir_protocol(config: EvalConfig) -> EvalConfig:
    """No ``--tir-protocol``: a resumed TIR run keeps the protocol it recorded (``notebook``
    when it recorded none); a new run takes the default."""
    if config.tir_protocol is not None or config.mode != "tir":
        return config
    previous = read_manifest(Path(config.output_dir)) if not config.overwrite else None
    protocol = DEFAULT_PROTOCOL
    if previous is not None:
        recorded = Fingerprint.from_json(previous.get("fingerprint", {})).fields
        protocol = recorded.get("tir.protocol", LEGACY_PROTOCOL if recorded.get("mode") == "tir" else DEFAULT_PROTOCOL)
    return replace(config, tir_protocol=protocol if protocol in PROTOCOLS else DEFAULT_PROTOCOL)


def few_shot_fingerprint_fields(config: EvalConfig, datasets: Sequence[LoadedDataset]) -> dict[str, Any]:
    """Suite and few-shot settings; ``few_shot.sha256`` covers every exemplar every prompt carries."""
    digests = {d.name: d.few_shot_sha256 for d in datasets if d.few_shot_sha256}
    return {
        "suite": config.suite,
        "few_shot.num_shots": config.few_shot.num_shots if config.few_shot else 0,
        "few_shot.adapt": bool(config.few_shot and config.few_shot.adapt),
        "few_shot.sha256": json_checksum(digests) if digests else None,
    }


def model_checksum(config: EvalConfig) -> str:
    """The weights (or script) the backend will read; a hub id stands for itself."""
    options = config.backend_options
    if options.script:
        return file_checksum(Path(options.script)) if Path(options.script).is_file() else options.script
    path = Path(options.model).expanduser()
    return tree_checksum(path) if path.exists() else options.model


def open_run(config: EvalConfig, fingerprint: Fingerprint, datasets: Sequence[LoadedDataset]) -> tuple[RunLayout, dict | None]:
    """Check the run directory against ``fingerprint``; returns the layout and old manifest."""
    layout = RunLayout(Path(config.output_dir))
    previous = read_manifest(layout.root) if layout.root.exists() else None
    if previous is not None and config.overwrite:
        layout.discard(list(previous.get("config", {}).get("datasets", [])) + [d.name for d in datasets])
        log.info("%s: discarded the previous run (--overwrite)", layout.root)
        previous = None
    if previous is None:
        if config.extend_n is not None:
            raise UsageError(f"--extend-n needs an existing run in {layout.root}; found none")
        layout.root.mkdir(parents=True, exist_ok=True)
        return layout, None
    old = Fingerprint.from_json(previous["fingerprint"])
    check_resumable(with_old_defaults(old, legacy_tir_fields(old)), fingerprint,
                    run_dir=layout.root, extending=config.extend_n is not None)
    return layout, previous


def refuse_foreign_folder(config: EvalConfig) -> None:
    """A folder with files but no manifest is someone else's: not even a lock file goes in."""
    layout = RunLayout(Path(config.output_dir))
    if layout.holds_foreign_files() and not config.overwrite:
        raise UsageError(
            f"{layout.root} exists and is not a run directory (no manifest.json); choose an "
            "empty or new --output-dir, or pass --overwrite"
        )


def resolve_extend_n(config: EvalConfig) -> EvalConfig:
    """With ``--extend-n N``: sampling settings not given come from the run; n becomes N."""
    if config.extend_n is None:
        return config
    previous = read_manifest(Path(config.output_dir))
    if previous is None:
        raise UsageError(f"--extend-n needs an existing run in {config.output_dir}; found none")
    old = previous.get("config", {}).get("sampling", {})
    sampling = replace(
        config.sampling,
        n=config.extend_n,
        temperature=old.get("temperature", config.sampling.temperature),
        top_p=old.get("top_p", config.sampling.top_p),
    )
    return replace(config, sampling=sampling)


def config_json(config: EvalConfig, datasets: Sequence[LoadedDataset]) -> dict[str, Any]:
    s = config.sampling
    return {
        "datasets": [d.name for d in datasets],
        "dataset_args": list(config.datasets),
        "data_dir": config.data_dir,
        "split": config.split,
        "limit": config.limit,
        "mode": config.mode,
        "prompt_style": config.prompt_style or "instruct",
        "sampling": {"n": s.n, "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k,
                     "max_tokens": s.max_tokens, "seed": s.seed, "stop": list(s.stop)},
        "max_tool_calls": effective_max_tool_calls(config),
        "backend": config.backend,
        "model": config.backend_options.model,
        "script": config.backend_options.script,
        "device": config.backend_options.device,
        "dtype": config.backend_options.dtype,
        "grader_timeout": config.grader_timeout_s,
        "shard": config.shard,
        **({"tir": tir_settings(config)} if config.mode == "tir" else {}),
        "suite": config.suite,
        "not_run": list(config.not_run),
        "few_shot_file": config.few_shot_file,
        "few_shot": {d.name: {"num_shots": d.few_shot.num_shots, "adapt": d.few_shot.adapt}
                     for d in datasets if d.few_shot is not None and d.few_shot.active},
    }


def datasets_json(datasets: Sequence[LoadedDataset], config: EvalConfig) -> dict[str, Any]:
    return {
        d.name: {
            "problems": len(d.problems),
            "checksum": problems_checksum(d.problems),
            "source_checksum": source_checksum(d.name, config),
            "excluded_no_gold": list(d.excluded_no_gold),
        }
        for d in datasets
    }


def source_checksum(name: str, config: EvalConfig) -> str | None:
    """SHA-256 of the local file a dataset came from, when there is one."""
    candidates = [Path(name)]
    if config.data_dir:
        base = Path(config.data_dir)
        candidates += [base / f"{name}.jsonl", base / name / f"{config.split}.jsonl"]
    for path in candidates:
        if path.is_file():
            return file_checksum(path)
    return None


# --- 3) generation, grading, writing ------------------------------------------------------

def evaluate(
    config: EvalConfig,
    *,
    backend: Any = None,
    sandbox_pool: Any = None,
    grader: Any = None,
    prompt_sha256: str | None = None,
) -> RunResult:
    """Run (or resume) the evaluation ``config`` describes; see the module docstring.

    ``backend``, ``sandbox_pool`` and ``grader`` are created here when not given (the caller
    owns the ones it passes). Raises ``PartialRun`` when interrupted (resumable).
    """
    from qwen_math.runs.prompts import prompt_hash

    config = resolve_tir_protocol(resolve_extend_n(config))
    datasets = load_datasets(config)
    prompt_sha256 = prompt_sha256 or prompt_hash(config.mode, config.prompt_style, **strategy_options(config))
    fingerprint = Fingerprint(fingerprint_fields(config, datasets, prompt_sha256))
    refuse_foreign_folder(config)
    with run_lock(Path(config.output_dir)):
        return run_locked(config, datasets, fingerprint, prompt_sha256,
                          backend=backend, sandbox_pool=sandbox_pool, grader=grader)


def run_locked(config: EvalConfig, datasets: Sequence[LoadedDataset], fingerprint: Fingerprint,
               prompt_sha256: str, *, backend: Any, sandbox_pool: Any, grader: Any) -> RunResult:
    """``evaluate`` once this process holds the run directory's lock."""
    layout, previous = open_run(config, fingerprint, datasets)
    with _resources(config, backend, sandbox_pool, grader) as (backend, sandbox_pool, grader):
        manifest = build_manifest(
            config=config_json(config, datasets), fingerprint=fingerprint,
            datasets=datasets_json(datasets, config),
            prompt={"sha256": prompt_sha256, "mode": config.mode}, previous=previous,
            command=config.command,
        )
        if sandbox_pool is not None:
            manifest["sandbox"] = sandbox_layers(sandbox_pool)
        scorer = reward_scorer(config, layout, manifest, previous)
        write_json_atomic(layout.manifest, manifest)
        results = []
        try:
            for dataset in datasets:
                results.append(run_dataset(config, layout, dataset, manifest, backend=backend,
                                           sandbox_pool=sandbox_pool, grader=grader, scorer=scorer))
        finally:
            if scorer is not None:
                scorer.close()
    from qwen_math.runs.views import write_run_metrics

    write_run_metrics(layout, [r.metrics for r in results], [r.dataset for r in results])
    return RunResult(layout.root, tuple(results))


class _resources:
    """Create the backend, sandbox pool and grader the caller did not pass; close only those."""

    def __init__(self, config: EvalConfig, backend: Any, sandbox_pool: Any, grader: Any) -> None:
        self.config, self.given = config, (backend, sandbox_pool, grader)
        self.owned: list[Any] = []

    def __enter__(self) -> tuple[Any, Any, Any]:
        backend, sandbox_pool, grader = self.given
        try:
            if grader is None:
                grader = self._own(make_grader(self.config))
            if sandbox_pool is None and self.config.mode in MODES_WITH_CODE:
                sandbox_pool = self._own(make_sandbox_pool(self.config))
            if backend is None:
                backend = self._own(make_backend(self.config))
        except BaseException:
            self.__exit__()
            raise
        return backend, sandbox_pool, grader

    def _own(self, resource: Any) -> Any:
        self.owned.append(resource)
        return resource

    def __exit__(self, *exc_info: object) -> None:
        for resource in reversed(self.owned):
            try:
                resource.close()
            except Exception as exc:  # noqa: BLE001 - closing must not mask the run's outcome
                log.warning("closing %s failed: %s", type(resource).__name__, exc)
        self.owned.clear()


def make_backend(config: EvalConfig) -> Any:
    from qwen_math.backends import get_backend_class

    return get_backend_class(config.backend).create(config.backend_options)


def make_sandbox_pool(config: EvalConfig) -> Any:
    import sandbox

    return sandbox.SandboxPool()


def sandbox_layers(pool: Any) -> dict[str, Any]:
    """Which isolation layers the run's sandbox sessions get (active flags only: the layer
    details name pids and temporary folders, and their costs are timings)."""
    from sandbox.diagnose import doctor

    try:
        report = doctor(pool).as_dict()
    except Exception as exc:  # noqa: BLE001 - the manifest says so; the run itself checks strictness
        log.warning("could not list the sandbox layers: %s", exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    layers = report.get("layers", {})
    return {"minimum_met": report.get("minimum_met"),
            "active": sorted(name for name, layer in layers.items() if layer.get("active")),
            "inactive": sorted(name for name, layer in layers.items() if not layer.get("active"))}


def make_grader(config: EvalConfig) -> Any:
    from qwen_math.runs.grading import SampleGrader

    grader = SampleGrader(workers=config.grader_workers, timeout_s=config.grader_timeout_s)
    grader.start()
    return grader


def reward_scorer(config: EvalConfig, layout: RunLayout, manifest: dict, previous: dict | None) -> Any:
    """With ``--reward-model``: the loaded scorer, recorded in the manifest (a run scored by
    another reward model is refused)."""
    if config.reward is None:
        return None
    from qwen_math.scoring.runs import check_same_scorer, load_scorer

    scorer = load_scorer(config.reward)
    try:
        check_same_scorer(layout.root, (previous or {}).get("reward_model"), scorer.manifest)
    except BaseException:
        scorer.close()
        raise
    manifest["reward_model"] = scorer.manifest
    return scorer


def run_dataset(config: EvalConfig, layout: RunLayout, dataset: LoadedDataset, manifest: dict, *,
                backend: Any, sandbox_pool: Any, grader: Any, scorer: Any = None) -> DatasetResult:
    """Generate the missing samples of one dataset, appending each as it completes."""
    from qwen_math.runs.views import write_dataset_views

    # 1) this shard's problems, and what is already on disk (a torn last line is cut off first)
    dataset = replace(dataset, problems=tuple(select_shard(dataset.problems, config.shard)))
    path = layout.samples(dataset.name)
    wanted = {(p.idx, s) for p in dataset.problems for s in range(config.sampling.n)}
    done = {key: r for key, r in load_samples(path, repair=True).items() if key in wanted}
    resumed = len(done)
    if len(done) < len(wanted):
        log.info("%s: %d of %d samples already written; generating %d",
                 dataset.name, len(done), len(wanted), len(wanted) - len(done))
    rewards = reward_writer(scorer, path, config.sampling.n, done)
    with RunProgress(dataset.name, total_samples=len(wanted), n=config.sampling.n,
                     enabled=config.progress, interval_s=config.progress_interval_s,
                     tokens=live_token_counter(backend),
                     max_tokens_per_sample=max_tokens_per_sample(
                         config.mode, config.sampling.max_tokens, effective_max_tool_calls(config))) as progress:
        for record in done.values():
            progress.add(record, resumed=True)
        # 2) generate the rest, each sample graded and appended the moment it completes
        if len(done) < len(wanted):
            start = time.monotonic()
            try:
                for record in generate_and_append(config, dataset, path, done, backend=backend,
                                                  sandbox_pool=sandbox_pool, grader=grader):
                    done[(record.idx, record.sample)] = record
                    progress.add(record)
                    if rewards is not None:
                        rewards.add(record)
            except KeyboardInterrupt:
                raise PartialRun(
                    f"interrupted: {len(done)} of {len(wanted)} samples of {dataset.name} are "
                    f"written in {path}; rerun the same command to resume"
                ) from None
            finally:
                add_duration(layout, manifest, dataset.name, time.monotonic() - start)
    missing = wanted - set(done)
    if missing:
        raise PartialRun(f"{dataset.name}: generation ended with {len(missing)} samples missing; "
                         "rerun the same command to resume")
    if rewards is not None:
        rewards.finish(done.values())
        done = {key: r for key, r in load_samples(path).items() if key in wanted}
    # 3) the views
    records = [done[key] for key in sorted(done)]
    metrics = write_dataset_views(layout, dataset.name, records, dataset.problems,
                                  excluded_no_gold=dataset.excluded_no_gold,
                                  wall_duration_s=manifest["generation_duration_s"].get(dataset.name))
    return DatasetResult(dataset.name, len(dataset.problems), len(done) - resumed, resumed,
                         dataset.excluded_no_gold, metrics)


def reward_writer(scorer: Any, path: Path, n: int, done: Mapping[tuple[int, int], SampleRecord]) -> Any:
    if scorer is None:
        return None
    from qwen_math.scoring.store import ProblemScorer, rewards_path

    return ProblemScorer(rewards_path(path), scorer.scorer, scorer.revision, n, done)


def generate_and_append(config: EvalConfig, dataset: LoadedDataset, path: Path,
                        done: Mapping[tuple[int, int], SampleRecord], *, backend: Any,
                        sandbox_pool: Any, grader: Any) -> Iterator[SampleRecord]:
    """Yield each newly generated record after it is graded and appended to ``path``."""
    by_id = {p.problem_id: p for p in dataset.problems}
    id_of = {p.idx: p.problem_id for p in dataset.problems}
    skip = {(id_of[idx], sample) for idx, sample in done}
    with AppendOnlyJsonl(path) as writer:
        for result in generate_missing(config, dataset, backend, sandbox_pool, skip):
            record = build_record(config, dataset.name, by_id[result.problem_id], result, grader)
            writer.append(record.to_json())
            yield record


def generate_missing(config: EvalConfig, dataset: LoadedDataset, backend: Any, sandbox_pool: Any,
                     skip: set[tuple[str, int]]) -> Iterator[Any]:
    from qwen_math.solve import ProblemInput, generate_samples

    inputs = [ProblemInput(p.problem_id, p.question, dataset=dataset.name,
                           prompt_text=dataset.user_texts.get(p.problem_id)) for p in dataset.problems]
    yield from generate_samples(
        inputs, mode=config.mode, sampling=config.sampling, backend=backend,
        sandbox_pool=sandbox_pool, skip=frozenset(skip),
        samples=range(config.sampling.n), prompt_style=config.prompt_style or "instruct",
        **strategy_options(config),
    )


def build_record(config: EvalConfig, dataset: str, problem: Any, result: Any, grader: Any) -> SampleRecord:
    """The graded record of one finished sample."""
    turns = tuple(result.turns)
    verdict = grader.grade(response=result.response, answer=result.answer, gold=problem.gold, dataset=dataset,
                           mode=config.mode, choices=getattr(problem, "choices", ()))
    return SampleRecord(
        dataset=dataset,
        idx=problem.idx,
        sample=result.sample,
        question_id=problem.problem_id,
        question=problem.question,
        turns=turns,
        answer=verdict.answer,
        gold=str(problem.gold),
        correct=verdict.correct,
        finish_reason=result.finish_reason,
        grade_status=verdict.status,
        mode=config.mode,
        seed=result.seed,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        metadata=dict(getattr(problem, "metadata", {}) or {}),
        generation_time_s=result.generation_time_s,
    )


def add_duration(layout: RunLayout, manifest: dict, dataset: str, seconds: float) -> None:
    """Accumulate this session's wall time per dataset in the manifest (for throughput)."""
    durations = manifest.setdefault("generation_duration_s", {})
    durations[dataset] = round(durations.get(dataset, 0.0) + seconds, 3)
    try:
        write_json_atomic(layout.manifest, manifest)
    except OSError as exc:
        log.warning("could not update %s: %s", layout.manifest, exc)
