"""Where a decode step's time goes on a GPU (a diagnostic, not a benchmark with a baseline).

Builds the 1.5B shape with random weights, runs ``--rows`` requests (a comma list of batch
sizes, each profiled in turn) and prints,
per phase of ``Engine.step`` (admission+prefill, forward graph, sampler graph, the host copy,
bookkeeping), the median wall time with the device synchronised between phases; the sampler's
median time with each nucleus method (``select``, ``sort``: same tokens, so the faster one per
batch size can be chosen), graph-captured on CUDA; the top host-side ops from
``torch.profiler`` over 20 steps, and the GPU kernels a step launches (the count that bounds a
small model's step: each kernel costs a few microseconds even inside a CUDA graph). Run:
``python bench/profile_step.py``.
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
    parser.add_argument("--rows", default="1", help="comma list of batch sizes to profile, e.g. 1,256")
    parser.add_argument("--device", default="cuda", help="cuda, or cpu for a dry run of this script")
    args = parser.parse_args(argv)
    sys.path.insert(0, "bench")
    from decode import build_model

    device = torch.device(args.device)
    model = build_model(args.shape, device=device, dtype=torch.bfloat16, seed=0)
    for rows in (int(value) for value in args.rows.split(",")):
        print(f"== {args.shape}, {rows} rows", flush=True)
        profile_rows(model, rows, device)
    return 0


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_rows(model, rows: int, device: torch.device) -> None:
    from qwen_math.engine.engine import Engine, EngineConfig, EngineRequest

    engine = Engine(model, decode_text=lambda ids: "", eos_ids=frozenset(),
                    config=EngineConfig(max_batch_size=max(64, rows + 1), static_decode=True))
    start = time.perf_counter()
    for i in range(rows):
        engine.add(EngineRequest(f"r{i}", tuple(range(1000 + 7 * i, 1050 + 7 * i)), max_tokens=400, seed=i,
                                 temperature=0.7, top_p=0.8))
    while any(len(row.pending) > 1 for row in engine.running) or engine.waiting or not engine.stats.decode_steps:
        engine.step()
    synchronize(device)
    print(f"admission + prefill of {rows} x 50 tokens: {time.perf_counter() - start:.4f} s")
    for _ in range(5):
        engine.step()
    phases: dict[str, list[float]] = {"step": [], "forward": [], "sample": [], "tolist": []}
    for _ in range(30):
        synchronize(device)
        t0 = time.perf_counter()
        engine.step()
        synchronize(device)
        phases["step"].append(time.perf_counter() - t0)
    with torch.inference_mode():  # the engine's tensors are inference tensors
        ready = list(engine.running)
        slots = [r.slot.index for r in ready]
        positions = [len(r.slot.tokens) for r in ready]
        sampling = [(0.7, 0.8, -1, r.request.seed, p + 1) for r, p in zip(ready, positions, strict=True)]
        for _ in range(30):
            synchronize(device)
            t0 = time.perf_counter()
            logits = engine._graphs(slots, [r.pending[0] for r in ready], positions)
            synchronize(device)
            t1 = time.perf_counter()
            tokens = engine._graphs.sample(sampling)
            synchronize(device)
            t2 = time.perf_counter()
            tokens.tolist()
            t3 = time.perf_counter()
            phases["forward"].append(t1 - t0)
            phases["sample"].append(t2 - t1)
            phases["tolist"].append(t3 - t2)
    for name, values in phases.items():
        print(f"{name:>8}: median {statistics.median(values) * 1e3:.3f} ms")
    with torch.inference_mode():
        time_nucleus_methods(logits, sampling, device)
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(20):
            engine.step()
        synchronize(device)
    kernels = sum(event.count for event in prof.key_averages() if event.device_type == torch.autograd.DeviceType.CUDA)
    print(f"GPU kernels per step (graph replays included): {kernels / 20:.0f}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    if device.type == "cuda":
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=10))
    del engine
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def time_nucleus_methods(logits: torch.Tensor, sampling: list[tuple], device: torch.device) -> None:
    """The sampler's median time on one step's logits with each nucleus method (a CUDA graph
    replay on CUDA, as the engine runs it; eager elsewhere)."""
    from qwen_math.engine.sampling import NUCLEUS_METHODS, SamplingBatch, sample_tokens

    logits = logits.clone()
    params = SamplingBatch.build(sampling, device)
    for method in NUCLEUS_METHODS:
        run = replayable(lambda method=method: sample_tokens(logits, params, method=method), device)
        times = []
        for _ in range(30):
            synchronize(device)
            t0 = time.perf_counter()
            run()
            synchronize(device)
            times.append(time.perf_counter() - t0)
        print(f"sampler, {method:>6}: median {statistics.median(times) * 1e3:.3f} ms")


def replayable(run, device: torch.device):
    """``run`` captured in a CUDA graph as the engine captures its sampler, on CUDA; else itself."""
    if device.type != "cuda":
        return run
    from qwen_math.engine.graphs import capture_cuda_graph

    graph, _ = capture_cuda_graph(run)
    return graph.replay


if __name__ == "__main__":
    sys.exit(main())
