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

Sampling is captured too, as a second graph per (bucket, the batch's sampling flags) that reads
the forward graph's logits and static parameter buffers (``SamplingBatch.from_buffers``): a
decode step is then two graph replays, two small host-to-device copies and the one copy of the
sampled ids back, instead of ~60 kernel launches from Python. Padding rows sample with
temperature 1 and are dropped. If a sampler cannot be captured (a torch build whose sort syncs),
it runs eagerly with a warning.

What it deliberately does not do: capture prefill (prompts vary in length; they run eagerly
in chunks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from qwen_math.engine.kv_cache import KVCache
from qwen_math.engine.qwen2 import Qwen2Forward
from qwen_math.engine.sampling import (
    SamplingBatch,
    batch_flags,
    host_to_device,
    pack_rows,
    sample_tokens,
)

log = logging.getLogger(__name__)

#: batch sizes a step is padded to.
BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
WARMUP_STEPS = 2
PADDING_ROW = (1.0, 1.0, -1, 0, 0)  # temperature, top_p, top_k, seed, position


@dataclass
class Captured:
    inputs: torch.Tensor  # static input buffer, [3, bucket] int64: slots, tokens, positions
    logits: torch.Tensor | None = None  # static output, [bucket, vocab]
    graph: object | None = None  # torch.cuda.CUDAGraph on CUDA


@dataclass
class CapturedSampler:
    floats: torch.Tensor  # static [4, bucket] float64 (pack_rows layout)
    flags: tuple[bool, bool, int, bool]
    tokens: torch.Tensor | None = None  # static output, [bucket] int64
    graph: object | None = None


class GraphDecoder:
    """``decode_static`` per batch bucket, captured as a CUDA graph on CUDA."""

    def __init__(self, forward: Qwen2Forward, cache: KVCache, *, scratch_slot: int,
                 row_chunk: int | None = None) -> None:
        self.forward = forward
        self.cache = cache
        self.scratch_slot = scratch_slot
        self.capture = cache.device.type == "cuda"
        self.capture_sampling = self.capture
        self.row_chunk = row_chunk
        self.graphs: dict[int, Captured] = {}
        self.samplers: dict[tuple, CapturedSampler] = {}
        self._cache_tensors: tuple[int, int] | None = None
        self.captures = 0  # graphs captured so far (a test checks growth does not re-capture)
        self.pool = torch.cuda.graph_pool_handle() if self.capture else None

    def __call__(self, slots: list[int], tokens: list[int], positions: list[int]) -> torch.Tensor:
        """Logits [B, vocab] for the B real rows (a view of the static output buffer)."""
        identity = (self.cache.keys.data_ptr(), self.cache.values.data_ptr())
        if identity != self._cache_tensors:  # the cache moved (CPU growth): old graphs are stale
            self.graphs.clear()
            self.samplers.clear()
            self._cache_tensors = identity
        bucket = bucket_for(len(slots))
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

    def sample(self, rows: list[tuple[float, float, int, int, int]]) -> torch.Tensor:
        """Sampled ids [B] for the rows of the forward step just run (same count and order);
        ``rows`` are ``(temperature, top_p, top_k, seed, position)``."""
        bucket = bucket_for(len(rows))
        flags = batch_flags(rows)
        entry = self.samplers.get((bucket, flags)) or self._prepare_sampler(bucket, flags)
        floats = pack_rows(rows + [PADDING_ROW] * (bucket - len(rows)))
        entry.floats.copy_(host_to_device(floats, self.cache.device), non_blocking=True)
        if entry.graph is not None:  # pragma: no cover - CUDA only
            entry.graph.replay()
        else:
            entry.tokens = self._sample_step(bucket, entry)
        return entry.tokens[: len(rows)]

    def _prepare_sampler(self, bucket: int, flags: tuple[bool, bool, int, bool]) -> CapturedSampler:
        device = self.cache.device
        entry = CapturedSampler(pack_rows([PADDING_ROW] * bucket).to(device), flags)
        if self.capture_sampling:  # pragma: no cover - CUDA only
            try:
                self._capture_graph(entry, lambda: self._sample_step(bucket, entry), output="tokens")
            except RuntimeError as exc:
                log.warning("sampling could not be captured in a CUDA graph (%s); it runs eagerly", exc)
                self.capture_sampling = False
                entry.graph = None
        self.samplers[(bucket, flags)] = entry
        return entry

    def _sample_step(self, bucket: int, entry: CapturedSampler) -> torch.Tensor:
        params = SamplingBatch.from_buffers(entry.floats, entry.flags)
        return sample_tokens(self.graphs[bucket].logits, params, row_chunk=self.row_chunk)

    def _prepare(self, bucket: int) -> Captured:
        inputs = torch.zeros((3, bucket), dtype=torch.int64, device=self.cache.device)
        inputs[0] = self.scratch_slot
        entry = Captured(inputs=inputs)
        if self.capture:  # pragma: no cover - CUDA only
            self._capture_graph(entry, lambda: self._step(entry), output="logits")
        self.graphs[bucket] = entry
        return entry

    def _capture_graph(self, entry, run, *, output: str) -> None:  # pragma: no cover - CUDA only
        """Capture ``run`` into ``entry.graph`` (warmed up with the inputs at the scratch slot),
        with its result as ``entry.<output>``."""
        entry.graph, result = capture_cuda_graph(run, pool=self.pool)
        setattr(entry, output, result)
        self.captures += 1

    def _step(self, entry: Captured) -> torch.Tensor:  # the forward of one bucket
        slots, tokens, positions = entry.inputs
        return self.forward.decode_static(self.cache.keys, self.cache.values, slots, tokens, positions)


def bucket_for(rows: int) -> int:
    return next((b for b in BUCKETS if b >= rows), rows)


def capture_cuda_graph(run, *, pool=None):  # pragma: no cover - CUDA only
    """``run`` warmed up ``WARMUP_STEPS`` times on a side stream, then captured: returns the
    ``torch.cuda.CUDAGraph`` and the captured call's result (its static output)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(WARMUP_STEPS):
            run()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, pool=pool):
        result = run()
    return graph, result
