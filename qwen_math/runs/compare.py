"""Compare two finished runs problem by problem.

For every dataset both runs evaluated, problems are paired by ``idx`` (a pair whose question
differs is an error: the runs did not see the same data). Each problem is *solved* in a run
when its majority answer is correct (``maj_score`` of ``problems.jsonl``; for n = 1 that is
the single sample's verdict). Reported:

- flips: problems solved by A only and by B only, with their idx;
- McNemar's exact test on those discordant pairs (two-sided binomial test, p = 0.5);
- each run's per-problem accuracy with its 95 % interval (``eval.metrics.interval``, the
  interval every command reports);
- a paired bootstrap of the difference in per-problem accuracy (mean of each problem's
  sample scores), B - A: 95 % percentile interval and a two-sided p-value, 10,000
  resamples from ``random.Random(seed)``;
- the configuration difference: every fingerprint field that differs, plus model and
  command-line settings that are not in the fingerprint.

What it deliberately does not do: regrade (it trusts each run's recorded verdicts) or compare
runs of different datasets (datasets in one run only are listed and skipped).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qwen_math.errors import UsageError
from qwen_math.runs.manifest import Fingerprint, flatten
from qwen_math.runs.report import (
    REWARD_CURVES,
    DatasetReport,
    at_max_k,
    has_rewards,
    load_run_report,
)
from qwen_math.runs.views import majority_correct

BOOTSTRAP_RESAMPLES = 10_000


@dataclass(frozen=True)
class PairedTest:
    """Paired significance of B against A on one dataset."""

    problems: int
    solved_a: int
    solved_b: int
    a_only: tuple[int, ...]  # idx solved by A, not by B
    b_only: tuple[int, ...]
    mcnemar_p: float
    acc_a: float
    acc_b: float
    bootstrap_diff: float  # B - A, mean per-problem accuracy
    bootstrap_low: float
    bootstrap_high: float
    bootstrap_p: float
    acc_a_ci95: tuple[float, float] = (0.0, 1.0)  # ``eval.metrics.interval`` of acc_a
    acc_b_ci95: tuple[float, float] = (0.0, 1.0)


@dataclass(frozen=True)
class Comparison:
    run_a: Path
    run_b: Path
    datasets: Mapping[str, PairedTest]
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]
    config_differences: tuple[str, ...]
    #: dataset -> {"rm@k" | "wmaj@k": [k, A's value or None, B's value or None]} where a run has rewards
    reward_metrics: Mapping[str, Mapping[str, list]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "reward_metrics": {name: dict(cells) for name, cells in self.reward_metrics.items()},
            "run_a": str(self.run_a),
            "run_b": str(self.run_b),
            "datasets": {name: asdict(test) for name, test in self.datasets.items()},
            "only_in_a": list(self.only_in_a),
            "only_in_b": list(self.only_in_b),
            "config_differences": list(self.config_differences),
        }


def compare_runs(run_a: Path, run_b: Path, *, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> Comparison:
    a, b = load_run_report(run_a), load_run_report(run_b)
    by_name_a = {d.name: d for d in a.datasets}
    by_name_b = {d.name: d for d in b.datasets}
    shared = [name for name in by_name_a if name in by_name_b]
    if not shared:
        raise UsageError(f"{run_a} and {run_b} share no dataset "
                         f"({', '.join(by_name_a)} vs {', '.join(by_name_b)})")
    tests = {name: paired_test(by_name_a[name], by_name_b[name], seed=seed, resamples=resamples)
             for name in shared}
    return Comparison(
        run_a=Path(run_a), run_b=Path(run_b), datasets=tests,
        only_in_a=tuple(n for n in by_name_a if n not in by_name_b),
        only_in_b=tuple(n for n in by_name_b if n not in by_name_a),
        config_differences=tuple(config_differences(a.manifest, b.manifest)),
        reward_metrics={name: reward_cells(by_name_a[name], by_name_b[name]) for name in shared
                        if has_rewards(by_name_a[name]) or has_rewards(by_name_b[name])},
    )


def reward_cells(a: DatasetReport, b: DatasetReport) -> dict[str, list]:
    """rm@k and wmaj@k of both runs at the largest k either has."""
    cells = {}
    for name in REWARD_CURVES:
        points = [at_max_k(d.metrics, name) for d in (a, b)]
        k = max((p[0] for p in points if p), default=None)
        cells[name] = [k, *[p[1] if p and p[0] == k else None for p in points]]
    return cells


def paired_rows(a: DatasetReport, b: DatasetReport) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    rows_b = {row["idx"]: row for row in b.problems}
    pairs = []
    for row in a.problems:
        other = rows_b.get(row["idx"])
        if other is None:
            continue
        if row.get("question") != other.get("question"):
            raise UsageError(f"{a.name} problem {row['idx']}: the two runs have different questions; "
                             "they did not evaluate the same data")
        pairs.append((row, other))
    if not pairs:
        raise UsageError(f"{a.name}: the two runs share no problem")
    return pairs


def paired_test(a: DatasetReport, b: DatasetReport, *, seed: int, resamples: int) -> PairedTest:
    pairs = paired_rows(a, b)
    solved = [(majority_correct(x), majority_correct(y)) for x, y in pairs]
    a_only = tuple(x["idx"] for (x, _), (sa, sb) in zip(pairs, solved, strict=True) if sa and not sb)
    b_only = tuple(x["idx"] for (x, _), (sa, sb) in zip(pairs, solved, strict=True) if sb and not sa)
    acc_a = [mean_score(x) for x, _ in pairs]
    acc_b = [mean_score(y) for _, y in pairs]
    diff, low, high, p = paired_bootstrap(acc_a, acc_b, seed=seed, resamples=resamples)
    from eval.metrics import interval

    return PairedTest(
        problems=len(pairs),
        solved_a=sum(sa for sa, _ in solved),
        solved_b=sum(sb for _, sb in solved),
        a_only=a_only,
        b_only=b_only,
        mcnemar_p=mcnemar_exact(len(a_only), len(b_only)),
        acc_a=sum(acc_a) / len(acc_a),
        acc_b=sum(acc_b) / len(acc_b),
        bootstrap_diff=diff,
        bootstrap_low=low,
        bootstrap_high=high,
        bootstrap_p=p,
        acc_a_ci95=interval(acc_a),
        acc_b_ci95=interval(acc_b),
    )


def mean_score(row: Mapping[str, Any]) -> float:
    scores = row.get("score") or []
    return sum(bool(s) for s in scores) / len(scores) if scores else 0.0


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for ``b`` and ``c`` discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, seed: int,
                     resamples: int) -> tuple[float, float, float, float]:
    """Mean of ``b - a``, its 95 % percentile interval and a two-sided p-value."""
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    observed = sum(diffs) / n
    rng = random.Random(seed)
    means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    low = means[int(0.025 * (resamples - 1))]
    high = means[int(0.975 * (resamples - 1))]
    at_or_below = sum(m <= 0 for m in means) / resamples
    at_or_above = sum(m >= 0 for m in means) / resamples
    p = min(1.0, 2 * min(at_or_below, at_or_above)) if observed != 0 else 1.0
    return observed, low, high, p


def config_differences(a: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    """Fingerprint differences first, then other configuration (paths, model names)."""
    fa = Fingerprint.from_json(a.get("fingerprint", {}))
    fb = Fingerprint.from_json(b.get("fingerprint", {}))
    found = fa.differences(fb)
    named = {line.split(":", 1)[0] for line in found}
    other = Fingerprint(flatten("config", a.get("config", {}))).differences(
        Fingerprint(flatten("config", b.get("config", {}))))
    found.sort(key=lambda line: line.split(":", 1)[0] not in HEADLINE_FIELDS)  # stable: the rest stays sorted
    rewards = Fingerprint(flatten("reward_model", a.get("reward_model") or {})).differences(
        Fingerprint(flatten("reward_model", b.get("reward_model") or {})))
    return found + [line for line in other if line.split(":", 1)[0].removeprefix("config.") not in named] + rewards


#: fingerprint fields listed first in a config difference (a protocol comparison's subject).
HEADLINE_FIELDS = frozenset({"mode", "tir.protocol"})


def format_comparison(comparison: Comparison) -> str:
    lines = [f"A = {comparison.run_a}", f"B = {comparison.run_b}", ""]
    for name, t in comparison.datasets.items():
        lines += [
            f"{name}: {t.problems} paired problems",
            f"  solved (majority correct): A {t.solved_a}, B {t.solved_b}; "
            f"flips A->B: {len(t.a_only)} lost, {len(t.b_only)} gained; McNemar exact p = {t.mcnemar_p:.4g}",
            f"  per-problem accuracy: A {t.acc_a:.3f} [{t.acc_a_ci95[0]:.3f}, {t.acc_a_ci95[1]:.3f}], "
            f"B {t.acc_b:.3f} [{t.acc_b_ci95[0]:.3f}, {t.acc_b_ci95[1]:.3f}]; B - A = {t.bootstrap_diff:+.3f} "
            f"[{t.bootstrap_low:+.3f}, {t.bootstrap_high:+.3f}] (paired bootstrap, p = {t.bootstrap_p:.4g})",
        ]
        for metric, (k, value_a, value_b) in comparison.reward_metrics.get(name, {}).items():
            lines.append(f"  {metric} (k={k}): A {_cell(value_a)}, B {_cell(value_b)}")
        if t.a_only:
            lines.append(f"  solved by A only: {', '.join(map(str, t.a_only))}")
        if t.b_only:
            lines.append(f"  solved by B only: {', '.join(map(str, t.b_only))}")
    for label, names in (("only in A", comparison.only_in_a), ("only in B", comparison.only_in_b)):
        if names:
            lines.append(f"datasets {label} (skipped): {', '.join(names)}")
    lines.append("")
    lines.append("configuration differences (A -> B):" if comparison.config_differences else
                 "configuration: identical fingerprints")
    lines += [f"  {line}" for line in comparison.config_differences]
    return "\n".join(lines)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
