"""Static-shape decode steps, replayed as CUDA graphs on a GPU.

A decode step for a batch of B rows is padded to the next bucket in ``BUCKETS``; the padding
rows write into a reserved scratch slot at its position 0 (and so attend to one position). The
inputs (slots, tokens, positions) go to the device as one packed [3, bucket] copy into a static
buffer, so each bucket has fixed shapes and fixed addresses. On CUDA the cache is preallocated
at its full context (``KVCache(preallocate=True)``): its tensors never move, so each bucket is
captured once with ``torch.cuda.CUDAGraph`` (eager kernels, no compiler: capture takes
milliseconds) in one shared memory pool and replayed for the engine's life; a growing sequence
only changes the lengths the varlen attention reads (``qwen_math.engine.attention``), never the
graph. This removes the per-kernel launch overhead that dominates a 1.5B decode step. If the
cache does move (a growing CPU cache), the graphs are dropped and rebuilt. On CPU the same
padding and buffers run eagerly, which is how the tests check that this layout gives the same
tokens.

What it deliberately does not do: capture prefill (prompts vary in length; they run eagerly
in chunks), or capture sampling (its stages depend on the batch's sampling settings).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qwen_math.engine.kv_cache import KVCache
from qwen_math.engine.qwen2 import Qwen2Forward
from qwen_math.engine.sampling import host_to_device

#: batch sizes a step is padded to.
BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
WARMUP_STEPS = 2


@dataclass
class Captured:
    inputs: torch.Tensor  # static input buffer, [3, bucket] int64: slots, tokens, positions
    logits: torch.Tensor | None = None  # static output, [bucket, vocab]
    graph: object | None = None  # torch.cuda.CUDAGraph on CUDA


class GraphDecoder:
    """``decode_static`` per batch bucket, captured as a CUDA graph on CUDA."""

    def __init__(self, forward: Qwen2Forward, cache: KVCache, *, scratch_slot: int) -> None:
        self.forward = forward
        self.cache = cache
        self.scratch_slot = scratch_slot
        self.capture = cache.device.type == "cuda"
        self.graphs: dict[int, Captured] = {}
        self._cache_tensors: tuple[int, int] | None = None
        self.captures = 0  # graphs captured so far (a test checks growth does not re-capture)
        self.pool = torch.cuda.graph_pool_handle() if self.capture else None

    def __call__(self, slots: list[int], tokens: list[int], positions: list[int]) -> torch.Tensor:
        """Logits [B, vocab] for the B real rows (a view of the static output buffer)."""
        identity = (self.cache.keys.data_ptr(), self.cache.values.data_ptr())
        if identity != self._cache_tensors:  # the cache moved (CPU growth): old graphs are stale
            self.graphs.clear()
            self._cache_tensors = identity
        bucket = next((b for b in BUCKETS if b >= len(slots)), len(slots))
        entry = self.graphs.get(bucket) or self._prepare(bucket)
        padding = bucket - len(slots)
        packed = torch.tensor([slots + [self.scratch_slot] * padding, tokens + [0] * padding,
                               positions + [0] * padding], dtype=torch.int64)
        entry.inputs.copy_(host_to_device(packed, self.cache.device), non_blocking=True)
        if entry.graph is not None:  # pragma: no cover - CUDA only
            entry.graph.replay()
        else:
            entry.logits = self._step(entry)
        return entry.logits[: len(slots)]

    def _prepare(self, bucket: int) -> Captured:
        inputs = torch.zeros((3, bucket), dtype=torch.int64, device=self.cache.device)
        inputs[0] = self.scratch_slot
        entry = Captured(inputs=inputs)
        if self.capture:  # pragma: no cover - CUDA only
            self._capture(entry)
        self.graphs[bucket] = entry
        return entry

    def _capture(self, entry: Captured) -> None:  # pragma: no cover - CUDA only
        """Warm up on a side stream (the inputs point at the scratch slot), then capture."""
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_STEPS):
                self._step(entry)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            entry.logits = self._step(entry)
        entry.graph = graph
        self.captures += 1

    def _step(self, entry: Captured) -> torch.Tensor:
        slots, tokens, positions = entry.inputs
        return self.forward.decode_static(self.cache.keys, self.cache.values, slots, tokens, positions)
