"""`qwen-math rescore`: re-extract and re-grade existing output files; print acc, maj@k, pass@k.

Reads two formats, detected per row:

- the official Qwen2.5-Math / ToRA JSONL: responses in ``code[]``; the gold is the dataset's
  own ``answer`` field when present (its ``#### `` tail or last ``\\boxed{}`` when it is a whole
  solution), else ``gt`` (which the official script stores normalised, sometimes mangled);
  the file's own ``pred``/``score`` are compared with ours;
- this project's sample records (the rows of a run's ``samples.jsonl``); PoT records keep
  their computed answer and are only re-graded.

Reward-model scores are read from the official ``pred_score`` (one list per sample; several
values = a PRM's steps, aggregated by ``--step-aggregation``) and from records' ``reward`` (or
the ``rewards.jsonl`` that ``qwen-math score`` appends next to a run's ``samples.jsonl``); with
them the summary gains ``rm@k`` and ``wmaj@k`` (this project's verdicts) and, for official files,
``file_verdicts_crosscheck``: rm@k on the file's own verdicts, by this estimator and by the
official first-k definition.

Prints, per file and pooled, acc, pass@k and maj@k for k = 1, 2, 4, ... <= n, each with its
95 % interval (the figures of ``eval.metrics.summarize``, the same function runs use for
``metrics.json``), and once per file the samples whose verdict disagrees with the file's own.
Pooling concatenates the files' problems: each problem keeps all of its own samples (files
with different n pool into ``n=1..8``, k up to the smallest n; the n of each file is listed). ``--json`` prints one object instead;
``--out FILE`` writes one verdict per sample (JSONL).

What it deliberately does not do: generate, or modify the input files.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

HELP = "Re-extract and re-grade existing output files; print acc, maj@k, pass@k."

OFFICIAL_FIELDS = ("code",)
RECORD_FIELDS = ("turns", "dataset", "idx", "sample")


@dataclass(frozen=True)
class Sample:
    """One response to re-grade, with what the file itself said about it."""

    file: str
    dataset: str
    idx: Any
    sample: int
    response: str | None
    answer: str | None  # a fixed answer (PoT records), else None: extract from the response
    gold: str | None
    file_pred: str | None
    file_score: bool | None
    metadata: Mapping[str, Any]
    choices: Any = ()  # a multiple-choice row's options, when the row carries them
    reward: float | None = None  # the reward model's score (``pred_score``, or a record's ``reward``)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="JSONL output files")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", default=None, help="write per-sample verdicts (JSONL) here")
    parser.add_argument("--dataset", default=None,
                        help="dataset name for the extraction policy of official files "
                             "(default: guessed from the file name, e.g. gsm8k)")
    parser.add_argument("--workers", type=int, default=None, help="grader worker processes")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per comparison (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of maj@k sampling and bootstrap")
    parser.add_argument("--vote-weights", default="raw", choices=("raw", "softmax", "minmax"),
                        help="weights of wmaj@k: the reward itself (default), softmax over a "
                             "problem's samples, or min-max scaled to [0, 1]")
    parser.add_argument("--step-aggregation", default="min", choices=("min", "last", "prod"),
                        help="PRM scores (several values per sample in pred_score): one score "
                             "per sample by min (default), last or prod")


# --- reading -------------------------------------------------------------------------------


def guess_dataset(path: Path) -> str:
    from eval.datasets import DATASETS

    stem = path.stem.lower()
    for name in sorted(DATASETS, key=len, reverse=True):
        if name in stem.split("_") or name in stem:
            return name
    return "default"


def check_dataset_name(name: str | None) -> None:
    """``--dataset`` must name a benchmark (or an extraction policy) the extractor knows."""
    from eval.datasets import DATASETS, find_spec
    from eval.extract import POLICIES
    from qwen_math.errors import UsageError

    if name is not None and find_spec(name) is None and name not in POLICIES:
        raise UsageError(f"--dataset {name!r}: unknown; choose one of {', '.join(DATASETS)} "
                         f"or an extraction policy ({', '.join(POLICIES)})")


def gold_of_official(row: Mapping[str, Any]) -> str | None:
    from eval.datasets import gold_after_hashes, gold_last_boxed

    answer = row.get("answer")
    if answer is not None and str(answer).strip():
        text = str(answer)
        if "####" in text:
            return gold_after_hashes(text)
        if "\\boxed" in text and len(text) > 80:
            return gold_last_boxed(text)
        return text.strip()
    gt = row.get("gt")
    return str(gt).strip() if gt is not None and str(gt).strip() else None


def official_samples(row: Mapping[str, Any], where: str, file: str, dataset: str,
                     aggregation: str = "min") -> list[Sample]:
    from eval.errors import DataError

    code = row["code"]
    if not isinstance(code, list):
        raise DataError(f"{where}: field 'code' must be a list of responses")
    preds, scores = row.get("pred") or [], row.get("score") or []
    metadata = {k: row[k] for k in ("level", "type", "subject") if k in row}
    gold = gold_of_official(row)
    rewards = official_rewards(row, len(code), where, aggregation)
    return [
        Sample(file, dataset, row.get("idx", where), i, response if isinstance(response, str) else None,
               None, gold, str(preds[i]) if i < len(preds) and preds[i] is not None else None,
               scores[i] if i < len(scores) and isinstance(scores[i], bool) else None, metadata,
               row_options(row), rewards[i])
        for i, response in enumerate(code)
    ]


def row_options(row: Mapping[str, Any]) -> Any:
    """The options an official row carries (``options``/``choices``, else its question's)."""
    from eval.choices import options_in_text, options_map

    for key in ("options", "choices"):
        if row.get(key):
            return options_map(row[key])
    question = row.get("question")
    return options_in_text(question) if isinstance(question, str) else {}


def official_rewards(row: Mapping[str, Any], n: int, where: str, aggregation: str) -> list[float | None]:
    """``pred_score``: one list per sample (one value for an ORM; per-step values for a PRM,
    aggregated by ``aggregation``); absent -> no rewards."""
    from eval.errors import DataError
    from eval.metrics import aggregate_steps

    scores = row.get("pred_score")
    if scores is None:
        return [None] * n
    if not isinstance(scores, list) or len(scores) != n:
        raise DataError(f"{where}: field 'pred_score' must be a list of {n} lists (one per response)")
    rewards: list[float | None] = []
    for i, value in enumerate(scores):
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise DataError(f"{where}: pred_score[{i}] must be a non-empty list of numbers, got {json.dumps(value)[:40]}")
        rewards.append(aggregate_steps(values, aggregation))
    return rewards


def record_sample(row: Mapping[str, Any], where: str, file: str) -> Sample:
    from eval.errors import DataError
    from qwen_math.errors import UsageError
    from qwen_math.record import SampleRecord

    try:
        record = SampleRecord.from_json(row)
    except (UsageError, TypeError) as exc:
        raise DataError(f"{where}: {exc}") from None
    return Sample(file, record.dataset, record.idx, record.sample, record.response,
                  record.answer if record.mode == "pot" else None, record.gold, record.answer,
                  record.correct, dict(record.metadata), reward=record.reward)


def read_samples(path: Path, dataset: str | None, aggregation: str = "min") -> list[Sample]:
    from eval.datasets import read_jsonl
    from eval.errors import DataError

    if path.is_dir():
        raise DataError(f"{path}: is a folder; pass JSONL files (a run's <dataset>/samples.jsonl)")
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    guessed = dataset or guess_dataset(path)
    samples: list[Sample] = []
    for number, row in read_jsonl(path):
        where = f"{path}:{number}"
        if not isinstance(row, Mapping):
            raise DataError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
        if all(name in row for name in RECORD_FIELDS):
            samples.append(record_sample(row, where, str(path)))
        elif all(name in row for name in OFFICIAL_FIELDS):
            samples.extend(official_samples(row, where, str(path), guessed, aggregation))
        else:
            raise DataError(
                f"{where}: neither an official output row (needs 'code') nor a sample record "
                f"(needs {', '.join(RECORD_FIELDS)}); fields present: {', '.join(sorted(row)) or 'none'}"
            )
    if not samples:
        raise DataError(f"{path}: no samples")
    return with_run_rewards(path, samples)


def with_run_rewards(path: Path, samples: list[Sample]) -> list[Sample]:
    """A run's ``samples.jsonl`` gets the rewards ``qwen-math score`` appended next to it."""
    from dataclasses import replace

    from qwen_math.scoring.store import load_rewards, rewards_path

    rewards = load_rewards(rewards_path(path)) if path.name == "samples.jsonl" else {}
    if not rewards:
        return samples
    return [replace(s, reward=rewards[(s.idx, s.sample)]["reward"])
            if s.reward is None and (s.idx, s.sample) in rewards else s for s in samples]


def with_gold(samples: list[Sample]) -> list[Sample]:
    """The samples that have a gold answer; the others are reported and excluded (as in runs)."""
    from eval.errors import DataError

    kept = [s for s in samples if s.gold is not None and s.gold.strip()]
    dropped = sorted({str(s.idx) for s in samples if s.gold is None or not s.gold.strip()})
    if not kept:
        raise DataError(f"{samples[0].file}: no row has a gold answer ('answer' or 'gt'; 'gold' in sample records)")
    if dropped:
        log.warning("%s: %d problem(s) have no gold answer and are excluded (idx %s)", samples[0].file,
                    len(dropped), ", ".join(dropped[:20]) + (" ..." if len(dropped) > 20 else ""))
    return kept


# --- grading and summarising ----------------------------------------------------------------


def grade_samples(samples: Sequence[Sample], *, workers: int | None, timeout: float) -> list[Any]:
    from eval.grade import GraderPool

    items = [(s.response, s.gold, s.dataset, s.choices) if s.answer is None else (s.answer, s.gold, "fixed")
             for s in samples]
    with GraderPool(workers, timeout=timeout, grade_fn=grade_rescore_item) as pool:
        return pool.grade_batch(items)


def grade_rescore_item(item: Sequence[Any], timeout: float) -> Any:
    """``eval.grade.grade_item``, except that a ``"fixed"`` item's answer is not re-extracted."""
    from eval.equivalence import judge
    from eval.grade import Grade, grade_item

    if len(item) == 3 and item[2] == "fixed":
        return Grade(judge(item[0], item[1], timeout=timeout), item[0])
    return grade_item(item, timeout)


def verdict_row(sample: Sample, grade: Any) -> dict[str, Any]:
    return {
        "file": sample.file, "dataset": sample.dataset, "idx": sample.idx, "sample": sample.sample,
        "answer": grade.answer, "gold": sample.gold, "status": grade.status, "correct": bool(grade),
        "file_pred": sample.file_pred, "file_score": sample.file_score, "reward": sample.reward,
    }


def summarize_file(rows: Sequence[Mapping[str, Any]], seed: int, weighting: str = "raw") -> dict[str, Any]:
    from eval.metrics import summarize_samples

    summary = summarize_samples(
        [{**row, "idx": index_of(row), "metadata": row.get("metadata", {})} for row in rows], seed=seed,
        weighting=weighting,
    )
    if summary.get("rm@k") and all(row["file_score"] is not None for row in rows):
        summary["file_verdicts_crosscheck"] = file_verdict_crosscheck(rows)
    summary["disagreements"] = [
        {k: row[k] for k in ("idx", "sample", "answer", "gold", "status", "file_pred", "file_score")}
        for row in rows if row["file_score"] is not None and row["file_score"] != row["correct"]
    ]
    return summary


def file_verdict_crosscheck(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """rm@k on the FILE's own verdicts: this project's estimator (all size-k subsets) and the
    official ``rm_maj_eval.py`` definition (best of the first k samples, first max wins)."""
    from eval.metrics import mean, powers_of_two_up_to, rm_at_k, rm_first_k

    grouped: dict[int, list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(index_of(row), []).append(row)
    problems = [sorted(g, key=lambda r: r["sample"]) for g in grouped.values()]
    problems = [p for p in problems if all(r["reward"] is not None for r in p)]
    n = min(len(p) for p in problems)
    columns = [([r["reward"] for r in p[:n]], [bool(r["file_score"]) for r in p[:n]]) for p in problems]
    ks = powers_of_two_up_to(n)
    return {
        "rm@k": {str(k): mean(rm_at_k(r, c, k) for r, c in columns) for k in ks},
        "rm@k_first_k": {str(k): mean(rm_first_k(r, c, k) for r, c in columns) for k in ks},
    }


def index_of(row: Mapping[str, Any]) -> int:
    """Problem index for grouping (files without an integer ``idx`` use their row order)."""
    value = row["idx"]
    return value if isinstance(value, int) else zlib.crc32(str(value).encode("utf-8"))


# --- printing -------------------------------------------------------------------------------


def format_summary(title: str, summary: Mapping[str, Any]) -> str:
    """A file's (or the pool's) figures, each with its 95 % interval, then its disagreements."""
    lines = [f"{title}: {summary['problems']} problems x n={format_n(summary)} ({summary['samples']} samples)"]
    per_file = summary.get("n_per_file")
    if per_file:
        lines.append("  n per file: " + ", ".join(f"{Path(f).name} n={n}" for f, n in per_file.items()))
    lines.append(f"  acc    {100 * summary['acc']:6.2f} %  {format_ci(summary.get('acc_ci95'))}")
    for name in ("pass@k", "maj@k", "rm@k", "wmaj@k"):
        if not summary.get(name):
            continue
        intervals = summary.get(f"{name}_ci95", {})
        cells = "  ".join(f"k={k}: {100 * v:6.2f} {format_ci(intervals.get(k))}" for k, v in summary[name].items())
        lines.append(f"  {name:6} {cells}{reward_coverage(summary) if name in ('rm@k', 'wmaj@k') else ''}")
    crosscheck = summary.get("file_verdicts_crosscheck")
    if crosscheck:
        for name, label in (("rm@k", "rm@k on the file's verdicts"),
                            ("rm@k_first_k", "rm@k on the file's verdicts, official first-k")):
            cells = "  ".join(f"k={k}: {100 * v:6.2f}" for k, v in crosscheck[name].items())
            lines.append(f"  ({label}: {cells})")
    disagreements = summary.get("disagreements", [])
    if disagreements:
        lines.append(f"  {len(disagreements)} verdict(s) differ from the file's own:")
        lines.extend(
            f"    idx {d['idx']} sample {d['sample']}: ours {d['status']} ({d['answer']!r}), "
            f"file {'correct' if d['file_score'] else 'wrong'} ({d['file_pred']!r}), gold {d['gold']!r}"
            for d in disagreements
        )
    return "\n".join(lines)


def reward_coverage(summary: Mapping[str, Any]) -> str:
    """`` (over N of M problems: those with rewards)`` when not every problem has rewards."""
    scored = summary.get("reward_problems")
    if scored is None or scored == summary["problems"]:
        return ""
    return f"  (over the {scored} of {summary['problems']} problems with rewards)"


def format_n(summary: Mapping[str, Any]) -> str:
    """``8``, or ``1..8`` when the problems have different sample counts (pooled files)."""
    return f"{summary['n']}..{summary['n_max']}" if "n_max" in summary else str(summary["n"])


def format_ci(bounds: Sequence[float] | None) -> str:
    return f"[{100 * bounds[0]:.2f}, {100 * bounds[1]:.2f}]" if bounds else ""


def pooled_summary(rows: Sequence[Mapping[str, Any]], summaries: Mapping[str, Mapping[str, Any]],
                   seed: int, weighting: str = "raw") -> dict[str, Any]:
    """All files' problems concatenated (a problem is unique per file), each keeping its own
    samples; the disagreements stay with their files (listed once)."""
    result = summarize_file([{**r, "dataset": f"{r['file']}|{r['dataset']}"} for r in rows], seed, weighting)
    result.pop("disagreements", None)
    result["n_per_file"] = {file: format_n(summary) for file, summary in summaries.items()}
    result["files"] = dict(summaries)
    return result


def run(args: argparse.Namespace) -> int:
    from qwen_math.config import at_least, positive_seconds
    from qwen_math.paths import check_output_file

    if args.workers is not None:
        at_least("--workers", args.workers, 1)
    positive_seconds("--timeout", args.timeout)
    check_dataset_name(args.dataset)
    if args.out:
        check_output_file(args.out, what="--out", inputs=args.files)
    per_file = {str(path): with_gold(read_samples(Path(path), args.dataset, args.step_aggregation))
                for path in args.files}
    samples = [s for file_samples in per_file.values() for s in file_samples]
    grades = grade_samples(samples, workers=args.workers, timeout=args.timeout)
    rows = [verdict_row(s, g) for s, g in zip(samples, grades, strict=True)]
    summaries = {file: summarize_file([r for r in rows if r["file"] == file], args.seed, args.vote_weights)
                 for file in per_file}
    if args.out:
        write_verdicts(Path(args.out), rows)
    if len(summaries) == 1:
        result = next(iter(summaries.values()))
    else:
        result = pooled_summary(rows, summaries, args.seed, args.vote_weights)
    if args.json:
        json.dump(result, sys.stdout)
        sys.stdout.write("\n")
        return 0
    for file, summary in summaries.items():
        print(format_summary(file, summary))
    if len(summaries) > 1:
        print(format_summary("pooled", result))
    return 0


def write_verdicts(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    from qwen_math.errors import UsageError

    try:
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    except OSError as exc:
        raise UsageError(f"cannot write --out {path}: {exc.strerror}") from None
