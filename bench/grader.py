"""Grader benchmark on 800 real Qwen2.5-Math samples (not a timed test).

Like for like, in the same run: our grader (``eval.grade.GraderPool``: a fresh pool per run,
start-up included, imports excluded) against Math-Verify's ``verify(parse(gold),
parse(response))`` (the baseline; ``pip install 'qwen-math[bench]'`` or ``pip install
math-verify``), at the same parallelism:

- ``x1``: our pool with 1 worker process against Math-Verify in this one process (one core
  each);
- ``xN`` (``--workers N``, default 2): our pool with N workers against Math-Verify mapped over a
  fresh N-process ``multiprocessing`` pool (fork; imports done in the parent before, as ours).

For each grader: agreement with the file's own verdicts (every disagreement listed), the number
correct, and samples/s (median of ``--runs`` interleaved runs). A ``ratio`` is our samples/s over
Math-Verify's at the same worker count (ours faster when > 1). Ends with one JSON line per case.

    python bench/grader.py [--file PATH] [--workers 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_FILE = REPO.parent / "shared" / "data" / "model_outputs" / "qwen25_math_instruct_math_cot_100x8.jsonl"


def load_samples(path: Path) -> list[dict]:
    samples = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            for i, response in enumerate(row["code"]):
                samples.append({"idx": row["idx"], "sample": i, "response": response,
                                "gold": row["answer"], "file_score": bool(row["score"][i]),
                                "file_pred": row["pred"][i]})
    return samples


def ours(samples: Sequence[dict], workers: int) -> list[bool]:
    from eval.grade import GraderPool

    with GraderPool(workers) as pool:
        return [bool(g) for g in pool.grade_batch([(s["response"], s["gold"]) for s in samples])]


def math_verify_one(pair: tuple[str, str]) -> bool:
    from math_verify import parse, verify

    gold, response = pair
    try:
        return bool(verify(parse("$" + gold + "$"), parse(response)))
    except Exception:  # noqa: BLE001 - a crash of the baseline counts as a wrong verdict
        return False


def math_verify_verdicts(samples: Sequence[dict], workers: int = 1) -> list[bool]:
    """Math-Verify in this process (``workers == 1``) or over a fresh N-process pool."""
    pairs = [(s["gold"], s["response"]) for s in samples]
    if workers == 1:
        return [math_verify_one(pair) for pair in pairs]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return pool.map(math_verify_one, pairs, chunksize=8)


def timed_interleaved(graders: dict[str, Callable[[], list[bool]]],
                      runs: int) -> dict[str, tuple[list[bool], float]]:
    """Run each grader ``runs`` times, alternating between them so that load from other
    processes hits all of them alike; (verdicts, median seconds) per grader."""
    durations: dict[str, list[float]] = {name: [] for name in graders}
    verdicts: dict[str, list[bool]] = {}
    for _ in range(runs):
        for name, grader in graders.items():
            start = time.perf_counter()
            verdicts[name] = grader()
            durations[name].append(time.perf_counter() - start)
    return {name: (verdicts[name], statistics.median(durations[name])) for name in graders}


def report(name: str, samples: Sequence[dict], verdicts: Sequence[bool], seconds: float) -> float:
    disagreements = [(s, v) for s, v in zip(samples, verdicts, strict=True) if v != s["file_score"]]
    rate = len(samples) / seconds
    print(f"{name}: {sum(verdicts)} correct of {len(samples)}; agrees with the file on "
          f"{len(samples) - len(disagreements)}; {rate:.1f} samples/s (median {seconds:.2f} s)")
    for s, v in disagreements:
        print(f"  idx {s['idx']} sample {s['sample']}: {name} says {'correct' if v else 'wrong'}, "
              f"file {'correct' if s['file_score'] else 'wrong'} (file pred {s['file_pred']!r}, gold {s['gold']!r})")
    return rate


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.file.is_file():
        print(f"{args.file}: not found (needs ../shared/data)", file=sys.stderr)
        return 2
    samples = load_samples(args.file)
    from eval.grade import warm_imports

    warm_imports()
    counts = sorted({1, args.workers})
    graders: dict[str, Callable[[], list[bool]]] = {}
    try:
        import math_verify  # noqa: F401  (imported here, before any fork: excluded from the timings)
    except ImportError:
        print("math-verify not installed (pip install math-verify): no baseline")
        math_verify_ok = False
    else:
        math_verify_ok = True
    for n in counts:
        graders[f"ours x{n}"] = lambda n=n: ours(samples, n)
        if math_verify_ok:
            graders[f"math-verify x{n}"] = lambda n=n: math_verify_verdicts(samples, n)
    timings = timed_interleaved(graders, args.runs)
    rates = {name: report(name, samples, *timings[name]) for name in graders}
    cases = []
    for n in counts:
        base = rates.get(f"math-verify x{n}")
        cases.append({"bench": "grader", "case": f"samples_per_s x{n}", "baseline": round(base, 1) if base else None,
                      "ours": round(rates[f"ours x{n}"], 1), "unit": "samples/s",
                      "ratio": round(rates[f"ours x{n}"] / base, 2) if base else None, "workers": n})
        print(f"x{n} workers: ratio ours/math-verify {cases[-1]['ratio']}")
    baseline_correct = sum(timings["math-verify x1"][0]) if math_verify_ok else None
    ours_correct = sum(timings["ours x1"][0])
    cases.append({"bench": "grader", "case": "correct_of_800", "baseline": baseline_correct, "ours": ours_correct,
                  "unit": "samples", "ratio": round(ours_correct / baseline_correct, 3) if baseline_correct else None})
    for case in cases:
        print(json.dumps(case))
    return 0


if __name__ == "__main__":
    sys.exit(main())
