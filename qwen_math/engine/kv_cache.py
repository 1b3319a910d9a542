"""A preallocated KV cache: one row ("slot") per sequence, sized from free memory.

Layout: ``keys`` and ``values`` are ``[layers, slots, capacity, kv_heads, head_dim]`` (the
"BMHK" layout the varlen attention kernels read: one layer's cache viewed as
``[1, slots * capacity, kv_heads, head_dim]`` is a packed key sequence in which slot ``s``
starts at ``s * capacity``, so a slot is a fixed block of the table and a decode row reads only
its own slot's first ``length`` positions, never the longest row's). The slot count is fixed
when the cache is made (the most sequences decoded at once).

Capacity (token positions per slot): with ``preallocate`` (the default on CUDA) every slot holds
the whole context window from the start, so the tensors never move and CUDA graphs captured
over them stay valid for the engine's life (no re-capture on growth). Without it (CPU) the
capacity starts small and doubles on demand up to the context window, so a short run never
holds a 4096-token cache per slot. The slot count is chosen so that every slot can reach the
full context window within the memory budget: once created, the cache never runs out of memory;
a budget too small for even one full-context sequence is a clear ``EnvironmentUnavailable`` at
creation, not an out-of-memory traceback later.

What it deliberately does not do: sub-slot paging (a slot owns one contiguous block), or decide
which sequence lives in which slot (that is the scheduler's job).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch

from qwen_math.errors import EnvironmentUnavailable

log = logging.getLogger(__name__)

#: capacity grows in multiples of this many positions (also the CUDA-graph length bucket).
CAPACITY_QUANTUM = 256


@dataclass(frozen=True)
class CacheShape:
    layers: int
    kv_heads: int
    head_dim: int
    dtype: torch.dtype

    @property
    def bytes_per_token(self) -> int:
        """Keys and values of one position in every layer."""
        element = torch.empty((), dtype=self.dtype).element_size()
        return 2 * self.layers * self.kv_heads * self.head_dim * element


def free_memory_bytes(device: torch.device) -> int:
    """Memory the cache may draw from: free accelerator memory, or available host memory."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def slots_that_fit(shape: CacheShape, *, context_window: int, budget_bytes: int, wanted: int,
                   grows: bool = True) -> int:
    """How many full-context slots fit in the budget (at most ``wanted``); raise if not one.

    ``grows``: the cache doubles on demand, so old and new tensors coexist while it grows."""
    per_slot = shape.bytes_per_token * context_window
    if grows:
        per_slot = per_slot * 3 // 2
    fitting = budget_bytes // per_slot
    if fitting < 1:
        raise EnvironmentUnavailable(
            f"not enough memory for the KV cache: one {context_window}-token sequence needs "
            f"{per_slot / 2**20:.0f} MiB but the budget is {budget_bytes / 2**20:.0f} MiB; "
            "use a smaller model, a lower --max-batch-size, or free memory"
        )
    return int(min(wanted, fitting))


class KVCache:
    """Keys and values for ``slots`` sequences of up to ``context_window`` positions."""

    def __init__(self, shape: CacheShape, *, slots: int, context_window: int, device: torch.device,
                 preallocate: bool = False) -> None:
        self.shape = shape
        self.slots = slots
        self.context_window = context_window
        self.device = device
        self.capacity = round_up(context_window, CAPACITY_QUANTUM) if preallocate else 0
        self.keys = self._allocate(self.capacity)
        self.values = self._allocate(self.capacity)
        self.peak_bytes = self.bytes

    @property
    def bytes(self) -> int:
        return 2 * self.keys.numel() * self.keys.element_size()

    def ensure_capacity(self, positions: int) -> None:
        """Grow (by doubling, in whole quanta) so every slot holds ``positions`` positions."""
        if positions <= self.capacity:
            return
        new_capacity = max(CAPACITY_QUANTUM, self.capacity)
        while new_capacity < positions:
            new_capacity *= 2
        new_capacity = min(round_up(new_capacity, CAPACITY_QUANTUM), round_up(self.context_window, CAPACITY_QUANTUM))
        self.keys = self._grown(self.keys, new_capacity)
        self.values = self._grown(self.values, new_capacity)
        self.capacity = new_capacity
        self.peak_bytes = max(self.peak_bytes, self.bytes)
        log.debug("KV cache capacity -> %d positions (%.1f MiB)", new_capacity, self.bytes / 2**20)

    def copy_prefix(self, *, source: int, target: int, length: int) -> None:
        """Copy the first ``length`` positions of slot ``source`` into slot ``target``."""
        self.keys[:, target, :length] = self.keys[:, source, :length]
        self.values[:, target, :length] = self.values[:, source, :length]

    def _allocate(self, capacity: int) -> torch.Tensor:
        s = self.shape
        return torch.zeros(
            (s.layers, self.slots, capacity, s.kv_heads, s.head_dim), dtype=s.dtype, device=self.device
        )

    def _grown(self, old: torch.Tensor, capacity: int) -> torch.Tensor:
        new = self._allocate(capacity)
        new[:, :, : old.shape[2]] = old
        return new


def round_up(value: int, quantum: int) -> int:
    return -(-value // quantum) * quantum
