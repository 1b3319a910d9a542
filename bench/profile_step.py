"""Where a decode step's time goes on a GPU (a diagnostic, not a benchmark with a baseline).

Builds the 1.5B shape with random weights, runs one request (``--rows`` of them) and prints,
per phase of ``Engine.step`` (admission+prefill, forward graph, sampler graph, the host copy,
bookkeeping), the median wall time with the device synchronised between phases, plus the top
host-side ops from ``torch.profiler`` over 20 steps, and the GPU kernels a step launches (the
count that bounds a small model's step: each kernel costs a few microseconds even inside a
CUDA graph). Run: ``python bench/profile_step.py``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", default="1.5b")
    parser.add_argument("--rows", type=int, default=1)
    args = parser.parse_args(argv)
    sys.path.insert(0, "bench")
    from decode import build_model

    from qwen_math.engine.engine import Engine, EngineConfig, EngineRequest

    device = torch.device("cuda")
    model = build_model(args.shape, device=device, dtype=torch.bfloat16, seed=0)
    engine = Engine(model, decode_text=lambda ids: "", eos_ids=frozenset(),
                    config=EngineConfig(max_batch_size=max(64, args.rows + 1)))
    start = time.perf_counter()
    for i in range(args.rows):
        engine.add(EngineRequest(f"r{i}", tuple(range(1000 + 7 * i, 1050 + 7 * i)), max_tokens=400, seed=i,
                                 temperature=0.7, top_p=0.8))
    engine.step()
    torch.cuda.synchronize()
    print(f"admission + prefill of {args.rows} x 50 tokens + first step: {time.perf_counter() - start:.4f} s")
    for _ in range(5):
        engine.step()
    phases: dict[str, list[float]] = {"step": [], "forward": [], "sample": [], "tolist": []}
    for _ in range(30):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        engine.step()
        torch.cuda.synchronize()
        phases["step"].append(time.perf_counter() - t0)
    print(f"    step: median {statistics.median(phases['step']) * 1e3:.3f} ms", flush=True)
    mode = torch.inference_mode()
    mode.__enter__()  # the engine's tensors are inference tensors; stays on to the end of main
    ready = list(engine.running)
    slots = [r.slot.index for r in ready]
    positions = [len(r.slot.tokens) for r in ready]
    rows = [(0.7, 0.8, -1, r.request.seed, p + 1) for r, p in zip(ready, positions, strict=True)]
    for _ in range(30):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        engine._graphs(slots, [r.pending[0] for r in ready], positions)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        tokens = engine._graphs.sample(rows)
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        tokens.tolist()
        t3 = time.perf_counter()
        phases["forward"].append(t1 - t0)
        phases["sample"].append(t2 - t1)
        phases["tolist"].append(t3 - t2)
    for name, values in phases.items():
        if not values:
            continue
        print(f"{name:>8}: median {statistics.median(values) * 1e3:.3f} ms")
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(20):
            engine.step()
        torch.cuda.synchronize()
    kernels = sum(event.count for event in prof.key_averages() if event.device_type == torch.autograd.DeviceType.CUDA)
    print(f"GPU kernels per step (graph replays included): {kernels / 20:.0f}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=10))
    return 0


if __name__ == "__main__":
    sys.exit(main())
