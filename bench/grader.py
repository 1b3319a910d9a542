"""Grader benchmark on 800 real Qwen2.5-Math samples (not a timed test).

Prints, for ``eval.grade.grade_batch`` (a fresh ``GraderPool``, start-up included, imports
excluded) and, when installed, Math-Verify's ``verify(parse(gold), parse(response))`` in the
same run: agreement with the file's own verdicts (every disagreement listed), the number
correct, and samples/s (median of 3 runs). Ends with one JSON line per case.

    python bench/grader.py [--file PATH] [--workers 2] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
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


def math_verify_verdicts(samples: Sequence[dict]) -> list[bool]:
    from math_verify import parse, verify

    verdicts = []
    for s in samples:
        try:
            verdicts.append(bool(verify(parse("$" + s["gold"] + "$"), parse(s["response"]))))
        except Exception:  # noqa: BLE001 - a crash of the baseline counts as a wrong verdict
            verdicts.append(False)
    return verdicts


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
    graders: dict[str, Callable[[], list[bool]]] = {"ours": lambda: ours(samples, args.workers)}
    try:
        import math_verify  # noqa: F401
    except ImportError:
        print("math-verify not installed: no baseline")
    else:
        graders["math-verify"] = lambda: math_verify_verdicts(samples)
    timings = timed_interleaved(graders, args.runs)
    rates = {name: report(name, samples, *timings[name]) for name in graders}
    correct = {name: sum(timings[name][0]) for name in graders}
    baseline_rate = rates.get("math-verify")
    baseline_correct = correct.get("math-verify")
    cases = [
        {"bench": "grader", "case": "samples_per_s", "baseline": round(baseline_rate, 1) if baseline_rate else None,
         "ours": round(rates["ours"], 1), "unit": "samples/s",
         "ratio": round(rates["ours"] / baseline_rate, 2) if baseline_rate else None},
        {"bench": "grader", "case": "correct_of_800", "baseline": baseline_correct, "ours": correct["ours"],
         "unit": "samples", "ratio": round(correct["ours"] / baseline_correct, 3) if baseline_correct else None},
    ]
    print(f"ratio ours/math-verify: {cases[0]['ratio']}")
    for case in cases:
        print(json.dumps(case))
    return 0


if __name__ == "__main__":
    sys.exit(main())
