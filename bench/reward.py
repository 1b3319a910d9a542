"""Reward scoring throughput: shared-prefix batched prefill (``qwen_math.scoring.hf``) against a
plain transformers forward per sample, same run, same texts, same model.

Work: the first ``--problems`` problems x ``--samples`` real responses of
``../shared/data/model_outputs/qwen25_math_instruct_math_cot_100x8.jsonl``, scored by a random
ORM at a real Qwen2 shape (``qwen-math dev tiny-model --kind rm --shape 0.5b``, written once into
a temporary folder unless ``--model DIR``), float32 on CPU. Each side runs in its own fresh
subprocess (fresh caches, its own peak RSS), loads the model, scores one problem as warm-up
outside the measured case, then scores the whole set. The ideal ratio is the token count of
the plain side (every sample's full text) over ours (each problem's shared prefix once plus
every sample's own tokens). Prints one JSON line per side and one summary line:
{"bench": "reward", "baseline_samples_per_s", "ours_samples_per_s", "ratio", "ideal_ratio",
"of_ideal", "max_abs_diff", ...}.

Run: ``PYTHONPATH=. python bench/reward.py [--problems 16 --samples 8 --threads 2]``.

What it deliberately does not do: download weights, or judge the rewards (they are random).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "model_outputs" / "qwen25_math_instruct_math_cot_100x8.jsonl"


def items(problems: int, samples: int) -> list:
    from qwen_math.scoring.hf import ScoreItem

    rows = [json.loads(line) for line in DATA.open()][:problems]
    return [ScoreItem(row["idx"], row["question"], response) for row in rows for response in row["code"][:samples]]


def token_counts(scorer, work) -> tuple[int, int]:
    from qwen_math.scoring.inputs import common_prefix_length

    groups: dict = {}
    for item in work:
        groups.setdefault(item.group, []).append(scorer.encode(item))
    plain = sum(len(ids) for group in groups.values() for ids in group)
    ours = sum(sum(len(ids) for ids in group) - (len(group) - 1) * common_prefix_length(group)
               for group in groups.values())
    return plain, ours


def side(args: argparse.Namespace) -> None:
    import torch

    from qwen_math.scoring.hf import HFRewardScorer

    torch.set_num_threads(args.threads)
    scorer = HFRewardScorer.create("bench-rm", Path(args.model), dtype="float32")
    work = items(args.problems, args.samples)
    warm = work[:2]
    if args.side == "ours":
        scorer.score(warm)
        start = time.perf_counter()
        values = [r.value for r in scorer.score(work)]
    else:
        for item in warm:
            scorer.plain_reward(item)
        start = time.perf_counter()
        values = [scorer.plain_reward(item).value for item in work]
    elapsed = time.perf_counter() - start
    plain_tokens, ours_tokens = token_counts(scorer, work)
    print(json.dumps({"side": args.side, "samples": len(work), "seconds": round(elapsed, 3),
                      "samples_per_s": round(len(work) / elapsed, 4),
                      "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                      "tokens_plain": plain_tokens, "tokens_ours": ours_tokens, "values": values}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--shape", default="0.5b")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default=None, help="an existing reward checkpoint folder")
    parser.add_argument("--side", choices=("ours", "plain"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-rm-") as tmp:
        model = args.model
        if model is None:
            from qwen_math.tiny import write_tiny_model

            model = str(write_tiny_model(Path(tmp) / "rm", shape=args.shape, kind="rm", seed=0))
        results = {}
        for name in ("plain", "ours"):
            command = [sys.executable, __file__, "--side", name, "--model", model, "--problems", str(args.problems),
                       "--samples", str(args.samples), "--threads", str(args.threads)]
            out = subprocess.run(command, check=True, capture_output=True, text=True,
                                 env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}).stdout
            results[name] = json.loads(out.strip().splitlines()[-1])
            print(json.dumps({k: v for k, v in results[name].items() if k != "values"}), flush=True)
    plain, ours = results["plain"], results["ours"]
    ratio = ours["samples_per_s"] / plain["samples_per_s"]
    ideal = plain["tokens_plain"] / plain["tokens_ours"]
    print(json.dumps({
        "bench": "reward", "shape": args.shape, "problems": args.problems, "samples": args.samples,
        "threads": args.threads, "baseline_samples_per_s": plain["samples_per_s"],
        "ours_samples_per_s": ours["samples_per_s"], "ratio": round(ratio, 3), "ideal_ratio": round(ideal, 3),
        "of_ideal": round(ratio / ideal, 3), "baseline_peak_rss_mib": plain["peak_rss_mib"],
        "ours_peak_rss_mib": ours["peak_rss_mib"],
        "max_abs_diff": max(abs(a - b) for a, b in zip(plain["values"], ours["values"], strict=True)),
    }))


if __name__ == "__main__":
    main()
