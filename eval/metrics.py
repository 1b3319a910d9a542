"""Voting and accuracy metrics over graded samples.

- ``vote_table`` groups answers by equivalence (normalised spelling first, then
  ``is_equivalent`` between group representatives) and counts each group; ties are broken
  by the group that appeared first, so the result is deterministic.
- ``pass_at_k`` is the unbiased estimator 1 - C(n-c, k) / C(n, k).
- ``maj_at_k`` averages the correctness of the majority answer over the size-k subsets of the
  n samples: exactly when there are at most ``EXACT_SUBSETS`` subsets, else by seeded Monte
  Carlo.
- ``summarize`` is the one function that turns graded samples grouped by problem into the
  metrics dict that ``eval`` runs write to ``metrics.json`` and that ``rescore`` prints:
  acc, pass@k and maj@k for k = 1, 2, 4, ... <= n, each with its 95 % interval, and
  accuracy by level and by subject.
- ``interval`` is the one interval function (Wilson over problems for accuracy; a bootstrap
  over problems, never narrower than that Wilson interval, for maj@k and pass@k).

What it deliberately does not do: grade (``eval.grade``) or read files.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from eval.normalize import canonical_text, normalize_answer

EXACT_SUBSETS = 2000
MONTE_CARLO_DRAWS = 1000
BOOTSTRAP_DRAWS = 1000

Equivalence = Callable[[str, str], bool]


@dataclass(frozen=True)
class ProblemSamples:
    """The graded samples of one problem: ``answers[i]`` was graded ``correct[i]``."""

    problem_id: str
    answers: tuple[str | None, ...]
    correct: tuple[bool, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.answers) != len(self.correct):
            raise ValueError(f"{self.problem_id}: {len(self.answers)} answers but {len(self.correct)} verdicts")


def default_equivalence(a: str, b: str) -> bool:
    from eval.equivalence import is_equivalent

    return is_equivalent(a, b, timeout=2.0)


def group_answers(answers: Sequence[str | None], *,
                  equivalent: Equivalence | None = None) -> list[int | None]:
    """A group id per answer (``None`` for no answer); ids count up in first-seen order."""
    equivalent = equivalent or default_equivalence
    groups: list[int | None] = []
    keys: dict[str, int] = {}
    representatives: list[str] = []
    for answer in answers:
        if answer is None or not str(answer).strip():
            groups.append(None)
            continue
        key = canonical_text(normalize_answer(answer).text)
        if key not in keys:
            match = next((g for g, rep in enumerate(representatives) if equivalent(answer, rep)), None)
            if match is None:
                match = len(representatives)
                representatives.append(answer)
            keys[key] = match
        groups.append(keys[key])
    return groups


def vote_table(answers: Sequence[str | None], *,
               equivalent: Equivalence | None = None) -> list[tuple[str, int]]:
    """(representative answer, votes) per equivalence group, most votes first, ties by first
    appearance."""
    groups = group_answers(answers, equivalent=equivalent)
    counts: dict[int, int] = {}
    first: dict[int, str] = {}
    for answer, group in zip(answers, groups, strict=True):
        if group is None:
            continue
        counts[group] = counts.get(group, 0) + 1
        first.setdefault(group, answer)
    order = sorted(counts, key=lambda g: (-counts[g], g))
    return [(first[g], counts[g]) for g in order]


def majority_vote(answers: Sequence[str | None], *,
                  equivalent: Equivalence | None = None) -> str | None:
    """The answer of the largest equivalence group (first-seen wins a tie); ``None`` if none."""
    table = vote_table(answers, equivalent=equivalent)
    return table[0][0] if table else None


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k: the chance that a random size-k subset of n samples (c correct) has a
    correct one."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def subset_majority_correct(groups: Sequence[int | None], correct: Sequence[bool],
                            subset: Sequence[int]) -> bool:
    counts: dict[int, int] = {}
    first: dict[int, int] = {}
    for i in subset:
        group = groups[i]
        if group is None:
            continue
        counts[group] = counts.get(group, 0) + 1
        first.setdefault(group, i)
    if not counts:
        return False
    winner = min(counts, key=lambda g: (-counts[g], first[g]))
    return bool(correct[first[winner]])


def maj_at_k(groups: Sequence[int | None], correct: Sequence[bool], k: int, *,
             seed: int = 0, draws: int = MONTE_CARLO_DRAWS) -> float:
    """Mean correctness of the majority answer over size-k subsets of the samples.

    ``groups`` are equivalence-group ids (``group_answers``); exact over all subsets when
    there are at most ``EXACT_SUBSETS`` of them, else ``draws`` seeded random subsets.
    """
    n = len(groups)
    if not 1 <= k <= n:
        raise ValueError(f"maj@k needs 1 <= k <= n, got k={k}, n={n}")
    if math.comb(n, k) <= EXACT_SUBSETS:
        subsets: Any = itertools.combinations(range(n), k)
        total = math.comb(n, k)
    else:
        rng = random.Random(seed)
        subsets = (sorted(rng.sample(range(n), k)) for _ in range(draws))
        total = draws
    wins = sum(subset_majority_correct(groups, correct, s) for s in subsets)
    return wins / total


def accuracy(correct: Sequence[bool]) -> float:
    return sum(map(bool, correct)) / len(correct) if correct else 0.0


def powers_of_two_up_to(n: int) -> list[int]:
    ks, k = [], 1
    while k <= n:
        ks.append(k)
        k *= 2
    return ks


#: Two-sided 95 % normal quantile.
Z95 = 1.959963984540054


def wilson_interval(successes: float, size: int, *, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``successes / size`` (``successes`` may be a
    fractional count: a mean of per-problem scores times the number of problems). It stays
    inside [0, 1], never collapses at 0 or 1, and always contains the point estimate."""
    if size <= 0:
        return (0.0, 1.0)
    p = min(max(successes / size, 0.0), 1.0)
    z2 = z * z
    centre = (p + z2 / (2 * size)) / (1 + z2 / size)
    half = z * math.sqrt(p * (1 - p) / size + z2 / (4 * size * size)) / (1 + z2 / size)
    return (max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half)))


def percentile_bootstrap(values: Sequence[float], *, seed: int = 0,
                         draws: int = BOOTSTRAP_DRAWS) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean of ``values`` (resampling the values)."""
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(draws))
    return (means[int(0.025 * draws)], means[min(draws - 1, int(0.975 * draws))])


def interval(per_problem: Sequence[float], *, method: str = "wilson", seed: int = 0,
             draws: int = BOOTSTRAP_DRAWS) -> tuple[float, float]:
    """The 95 % interval of a metric from its per-problem values (each in [0, 1]).

    The single source of intervals (eval, report, rescore, compare). The unit is the
    problem, because the samples of one problem are not independent; the point estimate is
    the mean of ``per_problem`` and always lies inside the interval.

    - ``method="wilson"`` (accuracy): the Wilson score interval of that mean with the number
      of problems as the effective size; with one sample per problem it is the plain Wilson
      interval of c correct out of N.
    - ``method="bootstrap"`` (maj@k, pass@k, any other per-problem mean): a seeded percentile
      bootstrap over problems, widened to at least the Wilson interval, so it never collapses
      to a point at 0 or 1 (where every resample gives the same mean).
    """
    if method not in INTERVAL_METHODS:
        raise ValueError(f"interval method {method!r}: choose one of {', '.join(INTERVAL_METHODS)}")
    values = [float(v) for v in per_problem]
    if not values:
        return (0.0, 1.0)
    wilson = wilson_interval(sum(values), len(values))
    if method == "wilson":
        return wilson
    low, high = percentile_bootstrap(values, seed=seed, draws=draws)
    return (min(low, wilson[0]), max(high, wilson[1]))


#: ``interval`` methods: which metrics use which is said in ``interval``'s docstring.
INTERVAL_METHODS = ("wilson", "bootstrap")


def rounded_interval(bounds: tuple[float, float]) -> list[float]:
    """``[low, high]`` at 6 decimals, rounded outwards (so it still holds the estimate)."""
    return [math.floor(bounds[0] * 1e6) / 1e6, math.ceil(bounds[1] * 1e6) / 1e6]


def breakdown(problems: Sequence[ProblemSamples], key: str) -> dict[str, dict[str, float]]:
    """Sample accuracy per value of ``metadata[key]`` (problems without it are left out)."""
    buckets: dict[str, list[bool]] = {}
    for problem in problems:
        if key in problem.metadata and problem.metadata[key] is not None:
            buckets.setdefault(str(problem.metadata[key]), []).extend(problem.correct)
    return {value: {"acc": accuracy(c), "samples": len(c)} for value, c in sorted(buckets.items())}


BREAKDOWN_KEYS = {"by_level": ("level",), "by_subject": ("subject", "type", "subfield")}


def summarize(problems: Sequence[ProblemSamples], *, seed: int = 0,
              equivalent: Equivalence | None = None) -> dict[str, Any]:
    """The metrics dict of a run: fractions in [0, 1], k = 1, 2, 4, ... <= n.

    Every estimator uses all samples of each problem, and each problem weighs the same: acc
    is the mean over problems of each problem's sample accuracy (the mean over all samples
    when every problem has n of them); pass@k and maj@k are per-problem estimates averaged.
    Problems may have different sample counts (pooled files): k then goes up to the smallest,
    ``n`` is that smallest count and ``n_max`` the largest. ``acc_ci95``, ``pass@k_ci95`` and
    ``maj@k_ci95`` come from ``interval``.
    """
    if not problems:
        return {"n": 0, "problems": 0, "samples": 0, "acc": 0.0, "pass@k": {}, "maj@k": {}}
    sizes = [len(p.answers) for p in problems]
    n = min(sizes)
    per_problem = [accuracy(p.correct) for p in problems]
    ks = powers_of_two_up_to(n)
    groups = [group_answers(p.answers, equivalent=equivalent) for p in problems]
    pass_values = {k: [pass_at_k(len(p.correct), sum(p.correct), k) for p in problems] for k in ks}
    maj_values = {k: [maj_at_k(g, p.correct, k, seed=seed) for g, p in zip(groups, problems, strict=True)]
                  for k in ks}
    summary: dict[str, Any] = {
        "n": n,
        "problems": len(problems),
        "samples": sum(sizes),
        "acc": mean(per_problem),
        "acc_ci95": rounded_interval(interval(per_problem)),
        "pass@k": {str(k): mean(v) for k, v in pass_values.items()},
        "maj@k": {str(k): mean(v) for k, v in maj_values.items()},
        "pass@k_ci95": {str(k): rounded_interval(interval(v, method="bootstrap", seed=seed))
                        for k, v in pass_values.items()},
        "maj@k_ci95": {str(k): rounded_interval(interval(v, method="bootstrap", seed=seed))
                       for k, v in maj_values.items()},
        "no_answer": sum(a is None for p in problems for a in p.answers) / sum(sizes),
    }
    if max(sizes) != n:
        summary["n_max"] = max(sizes)
    for name, keys in BREAKDOWN_KEYS.items():
        key = next((k for k in keys if any(k in p.metadata for p in problems)), None)
        if key:
            summary[name] = breakdown(problems, key)
    return summary


def mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values) if values else 0.0


def problems_from_records(rows: Sequence[Mapping[str, Any]]) -> list[ProblemSamples]:
    """Group sample-record dicts (``dataset, idx, sample, answer, correct, metadata``) by
    problem, samples in order; a ``correct`` of ``None`` (ungraded) counts as wrong."""
    problems = []
    for (dataset, idx), samples in records_by_problem(rows):
        problems.append(ProblemSamples(
            str(samples[0].get("question_id") or f"{dataset}/{idx}"),
            tuple(r.get("answer") for r in samples),
            tuple(bool(r.get("correct")) for r in samples),
            dict(samples[0].get("metadata") or {}),
        ))
    return problems


def records_by_problem(rows: Sequence[Mapping[str, Any]]) -> list[tuple[tuple[str, int], list[Mapping[str, Any]]]]:
    """Sample-record dicts grouped by ``(dataset, idx)``, problems sorted, samples in order."""
    grouped: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault((str(row["dataset"]), int(row["idx"])), []).append(row)
    return [(key, sorted(samples, key=lambda r: int(r.get("sample", 0))))
            for key, samples in sorted(grouped.items())]


def summarize_samples(rows: Sequence[Mapping[str, Any]], *, seed: int = 0, weighting: str = "raw") -> dict[str, Any]:
    """``summarize`` of sample-record dicts (the rows of a run's ``samples.jsonl``), plus
    ``rm@k`` / ``wmaj@k`` (``summarize_rewards``) when the records carry a ``reward``."""
    summary = summarize(problems_from_records(rows), seed=seed)
    if any(row.get("reward") is not None for row in rows):
        summary.update(summarize_rewards(rewarded_problems_from_records(rows), seed=seed, weighting=weighting))
    return summary


# --- reward models: rm@k, weighted maj@k, PRM step aggregation ------------------------------
#
# Rewards are one float per sample (an ORM's score, or a PRM's step scores aggregated by
# ``aggregate_steps``). Like ``maj_at_k``, every function here scores ONE problem; callers
# average over problems.


def reward_order(rewards: Sequence[float]) -> list[int]:
    """Sample indices best first: highest reward, ties to the lower sample index."""
    return sorted(range(len(rewards)), key=lambda i: (-float(rewards[i]), i))


def rm_at_k(rewards: Sequence[float], correct: Sequence[bool], k: int) -> float:
    """Mean correctness of the highest-reward sample over ALL size-k subsets of the n samples.

    Exact, in closed form: rank the samples best first (highest reward; a tie goes to the
    lower sample index). The sample at rank j (0-based) is the one picked exactly in the
    subsets that contain it and none of the j samples ranked above it: C(n-1-j, k-1) of the
    C(n, k) subsets. So rm@k = sum_j correct[rank j] * C(n-1-j, k-1) / C(n, k). At k = n this is
    the correctness of the single best sample; at k = 1 it is the plain accuracy.
    (The official ``rm_maj_eval.py`` instead takes the first k samples of each problem.)
    """
    n = len(rewards)
    if len(correct) != n:
        raise ValueError(f"rm@k: {n} rewards but {len(correct)} verdicts")
    if not 1 <= k <= n:
        raise ValueError(f"rm@k needs 1 <= k <= n, got k={k}, n={n}")
    total = math.comb(n, k)
    picked = sum(math.comb(n - 1 - j, k - 1) for j, i in enumerate(reward_order(rewards)) if correct[i])
    return picked / total


def rm_first_k(rewards: Sequence[float], correct: Sequence[bool], k: int) -> bool:
    """The official harness's rm@k for one problem: the best of the FIRST k samples (first
    maximum wins a tie)."""
    head = [float(r) for r in rewards[:k]]
    return bool(correct[head.index(max(head))])


def vote_weights(rewards: Sequence[float], scheme: str = "raw", *, temperature: float = 1.0) -> list[float]:
    """Per-sample vote weights from rewards, by ``WEIGHT_SCHEMES[scheme]``."""
    if scheme not in WEIGHT_SCHEMES:
        raise ValueError(f"unknown vote weighting {scheme!r}; choose one of {', '.join(WEIGHT_SCHEMES)}")
    return WEIGHT_SCHEMES[scheme]([float(r) for r in rewards], temperature)


def raw_weights(rewards: list[float], temperature: float) -> list[float]:
    return rewards


def softmax_weights(rewards: list[float], temperature: float) -> list[float]:
    """exp(r / T) normalised over the problem's n samples (the normalisation does not change
    which group wins inside a subset; it keeps the weights in (0, 1])."""
    if not rewards:
        return []
    top = max(rewards)
    exps = [math.exp((r - top) / temperature) for r in rewards]
    total = sum(exps)
    return [e / total for e in exps]


def minmax_weights(rewards: list[float], temperature: float) -> list[float]:
    """Rewards rescaled to [0, 1] over the problem's n samples (all equal -> all 1)."""
    if not rewards:
        return []
    low, high = min(rewards), max(rewards)
    return [1.0 if high == low else (r - low) / (high - low) for r in rewards]


#: vote weighting name -> weights(rewards, temperature). ``raw`` is the reward itself (PRM
#: probabilities, or ORM logits: a negative logit then votes AGAINST its answer's group).
WEIGHT_SCHEMES: dict[str, Callable[[list[float], float], list[float]]] = {
    "raw": raw_weights, "softmax": softmax_weights, "minmax": minmax_weights,
}


def subset_weighted_winner_correct(groups: Sequence[int | None], weights: Sequence[float],
                                   correct: Sequence[bool], subset: Sequence[int]) -> bool:
    """Whether the group with the largest summed weight in ``subset`` is correct (ties: the
    group seen first in the subset); no answer at all counts as wrong."""
    totals: dict[int, float] = {}
    first: dict[int, int] = {}
    for i in subset:
        group = groups[i]
        if group is None:
            continue
        totals[group] = totals.get(group, 0.0) + weights[i]
        first.setdefault(group, i)
    if not totals:
        return False
    winner = min(totals, key=lambda g: (-totals[g], first[g]))
    return bool(correct[first[winner]])


def weighted_maj_at_k(groups: Sequence[int | None], rewards: Sequence[float], correct: Sequence[bool],
                      k: int, *, weighting: str = "raw", temperature: float = 1.0, seed: int = 0,
                      draws: int = MONTE_CARLO_DRAWS) -> float:
    """Mean correctness of the reward-weighted majority answer over size-k subsets.

    Answers are grouped by equivalence (``groups``, from ``group_answers``); each sample votes
    for its group with its weight (``vote_weights(rewards, weighting)``, computed once over the
    problem's n samples); the group with the largest sum wins, ties to the group seen first.
    Exact over all subsets when there are at most ``EXACT_SUBSETS`` of them, else ``draws``
    seeded random subsets (as ``maj_at_k``).
    """
    n = len(groups)
    if not len(rewards) == len(correct) == n:
        raise ValueError(f"weighted maj@k: {n} groups, {len(rewards)} rewards, {len(correct)} verdicts")
    if not 1 <= k <= n:
        raise ValueError(f"weighted maj@k needs 1 <= k <= n, got k={k}, n={n}")
    weights = vote_weights(rewards, weighting, temperature=temperature)
    subsets, total = size_k_subsets(n, k, seed=seed, draws=draws)
    wins = sum(subset_weighted_winner_correct(groups, weights, correct, s) for s in subsets)
    return wins / total


def size_k_subsets(n: int, k: int, *, seed: int, draws: int) -> tuple[Any, int]:
    """All size-k subsets of range(n) when there are at most ``EXACT_SUBSETS``, else ``draws``
    seeded random ones; with their count."""
    if math.comb(n, k) <= EXACT_SUBSETS:
        return itertools.combinations(range(n), k), math.comb(n, k)
    rng = random.Random(seed)
    return (sorted(rng.sample(range(n), k)) for _ in range(draws)), draws


def aggregate_min(steps: Sequence[float]) -> float:
    return min(steps)


def aggregate_last(steps: Sequence[float]) -> float:
    return steps[-1]


def aggregate_prod(steps: Sequence[float]) -> float:
    return math.prod(steps)


#: PRM step aggregation name -> per-sample score from the per-step probabilities.
STEP_AGGREGATIONS: dict[str, Callable[[Sequence[float]], float]] = {
    "min": aggregate_min, "last": aggregate_last, "prod": aggregate_prod,
}


def aggregate_steps(steps: Sequence[float], how: str = "min") -> float:
    """One score per sample from a PRM's per-step scores: ``min``, ``last`` or ``prod``."""
    if how not in STEP_AGGREGATIONS:
        raise ValueError(f"unknown step aggregation {how!r}; choose one of {', '.join(STEP_AGGREGATIONS)}")
    if not steps:
        raise ValueError("a PRM score needs at least one step")
    return STEP_AGGREGATIONS[how]([float(s) for s in steps])


@dataclass(frozen=True)
class RewardedProblem:
    """One problem's samples with their rewards (``None`` where a sample has none)."""

    samples: ProblemSamples
    rewards: tuple[float | None, ...]


def summarize_rewards(problems: Sequence[RewardedProblem], *, seed: int = 0, weighting: str = "raw",
                      equivalent: Equivalence | None = None) -> dict[str, Any]:
    """``rm@k`` and ``wmaj@k`` (k = 1, 2, 4, ... <= n) averaged over the problems whose n
    samples all carry a reward; empty dicts when none does. Only the first n samples of each
    problem are used (n = the smallest sample count), like ``summarize``."""
    scored = [p for p in problems if p.rewards and all(r is not None for r in p.rewards)]
    if not scored:
        return {"rm@k": {}, "wmaj@k": {}}
    n = min(len(p.samples.answers) for p in scored)
    ks = powers_of_two_up_to(n)
    groups = [group_answers(p.samples.answers[:n], equivalent=equivalent) for p in scored]
    rm = {str(k): mean(rm_at_k(p.rewards[:n], p.samples.correct[:n], k) for p in scored) for k in ks}
    wmaj = {str(k): mean(weighted_maj_at_k(g, p.rewards[:n], p.samples.correct[:n], k,
                                           weighting=weighting, seed=seed)
                         for g, p in zip(groups, scored, strict=True)) for k in ks}
    return {"rm@k": rm, "wmaj@k": wmaj, "reward_problems": len(scored), "weighting": weighting}


def rewarded_problems_from_records(rows: Sequence[Mapping[str, Any]]) -> list[RewardedProblem]:
    """``problems_from_records`` with each sample's ``reward`` (``None`` where absent)."""
    problems = problems_from_records(rows)
    rewards = [tuple(None if r.get("reward") is None else float(r["reward"]) for r in samples)
               for _key, samples in records_by_problem(rows)]
    return [RewardedProblem(p, r) for p, r in zip(problems, rewards, strict=True)]
