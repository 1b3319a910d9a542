"""Static-shape decode steps, replayed as CUDA graphs on a GPU.

A decode step for a batch of B rows is padded to the next bucket in ``BUCKETS``; the padding
rows write into a reserved scratch slot. Inputs (slots, tokens, positions) are copied into
static buffers and the step attends over the whole cache capacity, so each (bucket, capacity)
pair has fixed shapes and fixed addresses. On CUDA each pair is captured once with
``torch.cuda.CUDAGraph`` (eager kernels, no compiler: capture takes milliseconds) in one shared
memory pool and then replayed, which removes the per-kernel launch overhead that dominates a
1.5B decode step. When the cache grows, every graph is dropped (they point at the old
tensors) and recaptured on demand. On CPU the same padding and buffers run eagerly, which is
how the tests check that this layout gives the same tokens.

What it deliberately does not do: capture prefill (prompts vary in length; they run eagerly
in chunks), or capture sampling (it has data-dependent rejection rounds).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from qwen_math.engine.kv_cache import KVCache
from qwen_math.engine.qwen2 import Qwen2Forward

#: batch sizes a step is padded to.
BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
WARMUP_STEPS = 2


@dataclass
class Captured:
    slots: torch.Tensor  # static inputs, [bucket] int64
    tokens: torch.Tensor
    positions: torch.Tensor
    logits: torch.Tensor | None = None  # static output, [bucket, vocab]
    graph: object | None = None  # torch.cuda.CUDAGraph on CUDA


class GraphDecoder:
    """``decode_static`` per (bucket, capacity), captured as a CUDA graph on CUDA."""

    def __init__(self, forward: Qwen2Forward, cache: KVCache, *, scratch_slot: int) -> None:
        self.forward = forward
        self.cache = cache
        self.scratch_slot = scratch_slot
        self.capture = cache.device.type == "cuda"
        self.graphs: dict[tuple[int, int], Captured] = {}
        self.capacity = -1
        self.pool = torch.cuda.graph_pool_handle() if self.capture else None

    def __call__(self, slots: list[int], tokens: list[int], positions: list[int]) -> torch.Tensor:
        """Logits [B, vocab] for the B real rows (a view of the static output buffer)."""
        if self.capacity != self.cache.capacity:  # the cache moved: old graphs are stale
            self.graphs.clear()
            self.capacity = self.cache.capacity
        bucket = next((b for b in BUCKETS if b >= len(slots)), len(slots))
        entry = self.graphs.get((bucket, self.capacity)) or self._prepare(bucket)
        padding = bucket - len(slots)
        scratch = self.capacity - 1  # the scratch slot's last position: never read by a real row
        entry.slots.copy_(torch.tensor(slots + [self.scratch_slot] * padding), non_blocking=True)
        entry.tokens.copy_(torch.tensor(tokens + [0] * padding), non_blocking=True)
        entry.positions.copy_(torch.tensor(positions + [scratch] * padding), non_blocking=True)
        if entry.graph is not None:  # pragma: no cover - CUDA only
            entry.graph.replay()
        else:
            entry.logits = self._step(entry)
        return entry.logits[: len(slots)]

    def _prepare(self, bucket: int) -> Captured:
        device = self.cache.device
        scratch = torch.full((bucket,), self.scratch_slot, dtype=torch.int64, device=device)
        entry = Captured(
            slots=scratch,
            tokens=torch.zeros(bucket, dtype=torch.int64, device=device),
            positions=torch.full((bucket,), max(self.cache.capacity - 1, 0), dtype=torch.int64, device=device),
        )
        if self.capture:  # pragma: no cover - CUDA only
            self._capture(entry)
        self.graphs[(bucket, self.capacity)] = entry
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

    def _step(self, entry: Captured) -> torch.Tensor:
        return self.forward.decode_static(
            self.cache.keys, self.cache.values, entry.slots, entry.tokens, entry.positions
        )
