"""Decode throughput: plain ``transformers.generate`` against the ``hf`` backend, same run.

Random weights at the real Qwen2 shapes (``qwen_math.tiny.SHAPES``, built in memory: no
download), the exact Qwen2.5 tokenizer (built offline), sampling at temperature 0.7 / top_p
0.8 (top-k off), EOS disabled. Tokens counted are the tokens each request asked for (its own
max_tokens), for both sides; plain ``generate`` batches every request of a case at once and
pads to the longest.

Two baselines, measured in the same run on the same requests: ``generate`` (every request of
a case in one batch, padded to the longest max_tokens) and ``generate (grouped)`` (requests
sorted by max_tokens and run in 4 length groups, so a ratio over a case with mixed lengths is
not only padding; for cases whose requests all ask the same length it is the plain run). The
``ratio`` is baseline seconds / ours for the same tokens (ours faster when > 1).

Fair to both sides: every repeat uses fresh prompts-cache state (``Engine.clear_prefix_cache``
and new cache keys: a repeat never reuses an earlier repeat's prefill, which plain ``generate``
never could), and a warm-up outside the measured cases (first-call overheads of both sides, the
engine's CUDA graphs for the case's batch buckets) on a prompt the cases do not use.

Cases ``<prompts>x<samples>``:
- ``1x1``: 1 prompt, 1 sample, 64 tokens;
- ``16x4``: 16 prompts x 4 samples, the 64 requests' max_tokens spread evenly over 16..128;
- ``64x1``: 64 prompts, 64 tokens each;
- GPU only (``--device cuda``): ``16x16`` (64 tokens), ``256x1`` (64 tokens), and ``tir``:
  16 trajectories that generate 32 tokens, pause 50 ms (a tool call), append a tool output and
  resume, four times (plain ``generate`` re-encodes the whole transcript every turn).
``--quick`` divides every token count by 4 (a CPU smoke run; not the reported figures).

Run: ``python bench/decode.py --shapes tiny,0.5b`` (CPU) or
``python bench/decode.py --device cuda --shapes 1.5b,7b --cases 1x1,16x4,64x1,16x16,256x1,tir``.
``--repeat N`` runs each side N times, interleaved, and reports the best of each (the machine
may be shared); every run's own seconds, decode steps and roofline fraction are listed too.
Ends with one JSON line per case: {"bench", "case", "baseline", "ours", "unit", "ratio",
"baseline_grouped", "ratio_grouped", "steps", "roofline", "runs", ...}.

Roofline (CUDA): the bytes a decode step must read at least (every weight once, plus the KV
cache positions each row attends to, counted by the engine) over the device's memory bandwidth
from ``HBM_BANDWIDTH`` (a table of known GPUs, matched on the device name; an unknown device
gets no roofline), divided by the measured seconds of the run: the fraction of the
memory-bandwidth bound the whole run (prefill and sampling included) reaches.

What it deliberately does not do: download weights, or check generated text (the weights are
random; the tests check correctness).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from qwen_math.backends.base import GenerationRequest
from qwen_math.backends.hf import HFBackend
from qwen_math.config import SamplingConfig
from qwen_math.engine.engine import EngineConfig, EngineStats
from qwen_math.tiny import SHAPES, model_config
from qwen_math.tokenizer import load_offline_tokenizer

TEMPERATURE, TOP_P = 0.7, 0.8
TIR_TURNS, TIR_TOKENS, TIR_PAUSE_S = 4, 32, 0.05
TOOL_OUTPUT = "```output\n42\n```\n"
#: datasheet memory bandwidth (bytes/s) by device-name fragment, most specific first.
HBM_BANDWIDTH: dict[str, float] = {
    "H200": 4.8e12, "H100 PCIe": 2.0e12, "H100 NVL": 3.9e12, "H100": 3.35e12, "H20": 4.0e12,
    "GH200": 4.0e12, "B200": 8.0e12, "A100-SXM4-80GB": 2.039e12, "A100 80GB PCIe": 1.935e12,
    "A100": 1.555e12, "L40S": 0.864e12, "L40": 0.864e12, "L4": 0.3e12, "A10G": 0.6e12, "A10": 0.6e12,
    "RTX 4090": 1.008e12, "RTX 3090": 0.936e12, "V100": 0.9e12, "T4": 0.32e12,
}
GROUPS = 4  # length groups of the grouped baseline


@dataclass(frozen=True)
class Case:
    prompts: int
    samples: int
    max_tokens: Callable[[int, int], int]  # (request index, request count) -> tokens asked
    gpu_only: bool = False
    tir: bool = False


def fixed(tokens: int) -> Callable[[int, int], int]:
    return lambda index, count: tokens


def spread(low: int, high: int) -> Callable[[int, int], int]:
    return lambda index, count: low + round(index * (high - low) / max(count - 1, 1))


CASES: dict[str, Case] = {
    "1x1": Case(1, 1, fixed(64)),
    "16x4": Case(16, 4, spread(16, 128)),
    "64x1": Case(64, 1, fixed(64)),
    "16x16": Case(16, 16, fixed(64), gpu_only=True),
    "256x1": Case(256, 1, fixed(64), gpu_only=True),
    "tir": Case(16, 1, fixed(TIR_TOKENS), gpu_only=True, tir=True),
}


def build_model(shape: str, *, device: torch.device, dtype: torch.dtype, seed: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    config = Qwen2Config(**model_config(SHAPES[shape]))
    with torch.device(device):  # initialised directly on the device, in the target dtype
        try:
            model = Qwen2ForCausalLM._from_config(config, dtype=dtype)
        except TypeError:  # transformers < 4.56 names it torch_dtype
            model = Qwen2ForCausalLM._from_config(config, torch_dtype=dtype)
    return model.eval()


def prompts_for(count: int) -> list[str]:
    return [
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        f"<|im_start|>user\nWhat is {17 * i + 3} times {i + 11}, minus {i * i}?<|im_end|>\n<|im_start|>assistant\n"
        for i in range(count)
    ]


def requests_for(case: Case, *, scale: int, run: str) -> list[GenerationRequest]:
    """The case's requests for one run: ``run`` makes the prompts and cache keys its own."""
    texts = [text.replace("What is", f"({run}) What is") for text in prompts_for(case.prompts)]
    count = case.prompts * case.samples
    requests = []
    for index in range(count):
        tokens = max(1, case.max_tokens(index, count) // scale)
        sampling = SamplingConfig(temperature=TEMPERATURE, top_p=TOP_P, max_tokens=tokens)
        prompt = texts[index // case.samples]
        requests.append(GenerationRequest(f"r{index}", prompt, sampling, seed=index, cache_key=f"{run}-t{index}"))
    return requests


# -- baseline: plain generate -------------------------------------------------------------


def run_generate(model, tokenizer, prompts: list[str], max_new_tokens: int) -> None:
    from transformers import GenerationConfig

    batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left").to(model.device)
    config = GenerationConfig(
        do_sample=True, temperature=TEMPERATURE, top_p=TOP_P, top_k=0, max_new_tokens=max_new_tokens,
        min_new_tokens=max_new_tokens, eos_token_id=None, pad_token_id=tokenizer.pad_token_id,
    )
    with torch.inference_mode():
        model.generate(**batch, generation_config=config)


def baseline_seconds(model, tokenizer, case: Case, requests: list[GenerationRequest], *, groups: int = 1) -> float:
    """Plain ``generate``: all requests in one padded batch, or in ``groups`` batches of
    similar max_tokens (sorted by it)."""
    start = time.perf_counter()
    if case.tir:
        transcripts = [r.prompt for r in requests]
        for _turn in range(TIR_TURNS):
            run_generate(model, tokenizer, transcripts, requests[0].sampling.max_tokens)
            time.sleep(TIR_PAUSE_S)
            transcripts = [t + "x" * 8 + TOOL_OUTPUT for t in transcripts]
    else:
        ordered = sorted(requests, key=lambda r: r.sampling.max_tokens)
        size = -(-len(ordered) // groups)
        for first in range(0, len(ordered), size):
            group = ordered[first:first + size]
            run_generate(model, tokenizer, [r.prompt for r in group], max(r.sampling.max_tokens for r in group))
    return time.perf_counter() - start


def lengths_differ(requests: list[GenerationRequest]) -> bool:
    return len({r.sampling.max_tokens for r in requests}) > 1


# -- ours: the hf backend -----------------------------------------------------------------


def ours_seconds(backend: HFBackend, case: Case, requests: list[GenerationRequest]) -> float:
    start = time.perf_counter()
    if case.tir:
        for _turn in range(TIR_TURNS):
            completions = backend.generate(requests)
            time.sleep(TIR_PAUSE_S)
            requests = [
                GenerationRequest(r.request_id, r.prompt + c.text + TOOL_OUTPUT, r.sampling, r.seed, r.cache_key)
                for r, c in zip(requests, completions, strict=True)
            ]
    else:
        backend.generate(requests)
    return time.perf_counter() - start


def tokens_asked(case: Case, requests: list[GenerationRequest]) -> int:
    turns = TIR_TURNS if case.tir else 1
    return turns * sum(r.sampling.max_tokens for r in requests)


def hbm_bandwidth(device: torch.device) -> float | None:
    """The device's datasheet memory bandwidth in bytes/s, or None for a device not in the table."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((value for fragment, value in HBM_BANDWIDTH.items() if fragment in name), None)


def roofline_fraction(weight_bytes: int, stats: EngineStats, bytes_per_token: int, seconds: float,
                      bandwidth: float | None) -> float | None:
    """(weights read once per decode step + KV positions attended) / bandwidth, over the run's
    measured seconds."""
    if bandwidth is None:
        return None
    needed = stats.decode_steps * weight_bytes + stats.kv_read_tokens * bytes_per_token
    return round(needed / bandwidth / seconds, 4)


def measure_case(model, shape: str, case_name: str, *, device: torch.device, dtype: torch.dtype, tokenizer,
                 scale: int, repeat: int) -> dict:
    case = CASES[case_name]
    count = case.prompts * case.samples
    backend = HFBackend.from_model(model, tokenizer, engine_config=EngineConfig(
        ignore_eos=True, context_window=model.config.max_position_embeddings,
        max_batch_size=max(64, count + 1),  # + the scratch slot of CUDA graphs
    ))
    engine = backend.engine
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    bytes_per_token = engine.cache.shape.bytes_per_token  # keys and values of one position, all layers
    bandwidth = hbm_bandwidth(device)
    # warm-up outside the measured runs: both sides' first calls, the case's batch buckets
    warm = [GenerationRequest(r.request_id, r.prompt, SamplingConfig(temperature=TEMPERATURE, top_p=TOP_P,
                                                                     max_tokens=1 + i % 8), r.seed, r.cache_key)
            for i, r in enumerate(requests_for(case, scale=scale, run="warm-up"))]
    run_generate(model, tokenizer, [warm[0].prompt], 2)
    backend.generate(warm)
    grouped = lengths_differ(requests_for(case, scale=scale, run="check"))
    base, base_grouped, ours, runs = float("inf"), float("inf"), float("inf"), []
    for index in range(repeat):  # interleaved, best of each: a shared machine's bursts hit all sides
        requests = requests_for(case, scale=scale, run=f"run{index}")
        base = min(base, baseline_seconds(model, tokenizer, case, requests))
        if grouped:
            base_grouped = min(base_grouped, baseline_seconds(model, tokenizer, case, requests, groups=GROUPS))
        engine.clear_prefix_cache()
        engine.stats = EngineStats()
        seconds = ours_seconds(backend, case, requests)
        stats = engine.stats
        runs.append({"seconds": round(seconds, 4), "steps": stats.decode_steps,
                     "roofline": roofline_fraction(weight_bytes, stats, bytes_per_token, seconds, bandwidth)})
        ours = min(ours, seconds)
    if not grouped:
        base_grouped = base
    tokens = tokens_asked(case, requests)
    best = min(runs, key=lambda run: run["seconds"])
    row = {
        "bench": "decode", "case": f"{shape} {case_name}",
        "baseline": round(tokens / base, 2), "ours": round(tokens / ours, 2), "unit": "tok/s",
        "ratio": round(base / ours, 2),
        "baseline_grouped": round(tokens / base_grouped, 2), "ratio_grouped": round(base_grouped / ours, 2),
        "steps": best["steps"], "roofline": best["roofline"], "runs": runs,
        "device": device_name(device), "dtype": str(dtype).removeprefix("torch."), "tokens": tokens,
        "attention": engine.forward.static_attention_name if engine._graphs is not None else "sdpa (eager)",
        "bandwidth_tb_s": bandwidth / 1e12 if bandwidth else None,
        "peak_kv_mib": round(engine.stats.peak_kv_bytes / 2**20, 1),
        "peak_memory_mib": round(engine.stats.peak_memory_bytes / 2**20, 1),
    }
    backend.close()
    return row


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu x{torch.get_num_threads()} threads"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--shapes", default="tiny,0.5b", help=f"comma list of {', '.join(SHAPES)}")
    parser.add_argument("--cases", default=None, help=f"comma list of {', '.join(CASES)} (default: by device)")
    parser.add_argument("--dtype", default="auto", help="auto (bf16 on cuda, fp32 on cpu), float32, bfloat16")
    parser.add_argument("--quick", action="store_true", help="token counts / 4 (smoke run)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="interleaved runs per side; the best counts")
    parser.add_argument("--jsonl", default=None, help="also append each case's JSON line to this file as it ends")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = device.type == "cuda"
    default = [name for name, case in CASES.items() if gpu or not case.gpu_only]
    args.case_names = args.cases.split(",") if args.cases else default
    args.shape_names = args.shapes.split(",")
    for name in args.case_names:
        if name not in CASES:
            parser.error(f"unknown case {name!r}; choose from {', '.join(CASES)}")
    for name in args.shape_names:
        if name not in SHAPES:
            parser.error(f"unknown shape {name!r}; choose from {', '.join(SHAPES)}")
    if gpu and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    args.torch_device = device
    args.torch_dtype = {"auto": torch.bfloat16 if gpu else torch.float32}.get(args.dtype) or getattr(torch, args.dtype)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    tokenizer = load_offline_tokenizer()
    rows = []
    for shape in args.shape_names:
        model = build_model(shape, device=args.torch_device, dtype=args.torch_dtype, seed=args.seed)
        for case in args.case_names:
            row = measure_case(model, shape, case, device=args.torch_device, dtype=args.torch_dtype,
                               tokenizer=tokenizer, scale=4 if args.quick else 1, repeat=args.repeat)
            rows.append(row)
            roofline = "" if row["roofline"] is None else f"   roofline {row['roofline']:.1%}"
            print(f"{row['case']:>12}: generate {row['baseline']:9.1f} tok/s (grouped {row['baseline_grouped']:9.1f})"
                  f"   hf {row['ours']:9.1f} tok/s   x{row['ratio']:.2f} (grouped x{row['ratio_grouped']:.2f})"
                  f"   {row['steps']} steps{roofline}   peak KV {row['peak_kv_mib']} MiB",
                  file=sys.stderr, flush=True)
            if args.jsonl:
                with open(args.jsonl, "a", encoding="utf-8") as out:
                    out.write(json.dumps(row) + "\n")
        del model
        if args.torch_device.type == "cuda":
            torch.cuda.empty_cache()
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
