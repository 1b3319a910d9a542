"""Decode attention: one new query token per row against that row's own slot of the KV cache.

Each implementation is a ``DecodeAttention``: ``plan(rows)`` once per step (what every layer
shares: offsets, lengths, masks, from a ``StepRows``), then ``attend(q, keys, values, plan)`` ->
[B, H * D] once per layer (``q`` [B, H, D]; ``keys``/``values`` one layer's cache, [slots,
capacity, Hkv, D]; row ``b`` attends to positions ``< lengths[b]`` of slot ``slots[b]``):

- ``varlen`` (CUDA): PyTorch's memory-efficient (CUTLASS) attention kernel in its variable-length
  form. The layer's cache is one packed key sequence ``[1, slots * capacity, Hkv, D]``; row
  ``b``'s keys start at ``slots[b] * capacity`` (``cu_seqlens_k``) and are ``lengths[b]`` long
  (``seqlen_k``), so each row reads only its own positions: no gather, no padding to the
  longest row, no mask tensor. GQA without repeating K/V: the G = H / Hkv query heads that share
  a KV head become G query *tokens* of that KV head (``[1, B * G, Hkv, D]``), which is exact
  for decode because they share one mask. Every argument is a device tensor of fixed shape, so
  it is captured in CUDA graphs.
- ``sdpa`` (the CUDA fallback): ``scaled_dot_product_attention`` over the rows' slots with the
  same GQA reshaping and a boolean length mask, padded to the longest row.
- ``rowwise_attend`` (CPU eager decode): one SDPA call per row over exactly its own ``length``
  positions, no mask, no padding. A padded batched call is not bitwise batch-invariant on CPU
  (the span and the batch shape change the kernels' blocking and reduction order by an ulp, and
  top-p on a near-flat distribution turns that ulp into a different token), so this is what
  keeps "a request's tokens never depend on the rest of the batch" exact in fp32 on CPU.

``decode_attention(device)`` picks ``varlen`` on CUDA after a start-up self-check against
``sdpa`` on random data (a torch build whose kernel refuses the call or disagrees falls back,
with a warning, instead of failing later inside a graph).

What it deliberately does not do: prefill attention (a chunk of one sequence; ``qwen2`` calls
SDPA for it), paged sub-slot blocks, or split-K decoding for very long single rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepRows:
    """The rows of one decode step, as every layer's attention sees them."""

    slots: torch.Tensor  # [B] cache slot of each row
    lengths: torch.Tensor  # [B] positions each row attends to (its new token's position + 1)
    n_slots: int
    capacity: int
    group: int  # query heads per KV head
    span: int | None = None  # sdpa: read positions < span (default: the whole capacity)
    contiguous: bool = False  # sdpa: ``slots`` is 0..B-1 (the rows are a slice of the cache)
    host_rows: list[tuple[int, int]] | None = None  # rowwise: (slot, length) of each row, on the host


@dataclass(frozen=True)
class DecodeAttention:
    plan: Callable[[StepRows], Any]  # once per step
    attend: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Any], torch.Tensor]  # once per layer


def group_queries(q: torch.Tensor, kv_heads: int) -> torch.Tensor:
    """[B, H, D] -> [B, Hkv, G, D]: query head h uses KV head h // G (transformers' repeat_kv)."""
    batch, heads, dim = q.shape
    return q.view(batch, kv_heads, heads // kv_heads, dim)


def sdpa_attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, slots: torch.Tensor,
                lengths: torch.Tensor, *, span: int | None = None, contiguous: bool = False) -> torch.Tensor:
    """Reference decode attention: SDPA over each row's slot, positions ``< lengths``.

    ``span`` (default: the whole capacity) bounds the positions read; ``contiguous`` means
    ``slots`` is ``0..B-1``, so the rows are a slice of the cache (no gather)."""
    span = keys.shape[1] if span is None else span
    return sdpa_attention.attend(q, keys, values, sdpa_plan(StepRows(slots, lengths, keys.shape[0], keys.shape[1],
                                                                     1, span, contiguous)))


def sdpa_plan(rows: StepRows) -> tuple[torch.Tensor, int, bool, torch.Tensor]:
    span = rows.capacity if rows.span is None else rows.span
    mask = (torch.arange(span, device=rows.slots.device)[None, :] < rows.lengths[:, None])[:, None, None, :]
    return rows.slots, span, rows.contiguous, mask


def sdpa_attend_planned(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, plan) -> torch.Tensor:
    slots, span, contiguous, mask = plan
    batch, heads, dim = q.shape
    if contiguous:
        k, v = keys[:batch, :span], values[:batch, :span]
    else:
        k, v = keys[slots, :span], values[slots, :span]
    out = F.scaled_dot_product_attention(
        group_queries(q, keys.shape[2]), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask
    )  # [B, Hkv, G, D]
    return out.reshape(batch, heads * dim)


def rowwise_attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                   rows: list[tuple[int, int]]) -> torch.Tensor:
    """Decode attention one row at a time: row ``b`` = ``rows[b]`` = (slot, length) attends to
    positions ``< length`` of its slot, computed with shapes that depend on that row alone, so
    its output is bitwise the same whatever else is in the batch (CPU; host-side lengths)."""
    batch, heads, dim = q.shape
    kv_heads = keys.shape[2]
    grouped = group_queries(q, kv_heads)  # [B, Hkv, G, D]
    out = q.new_empty(batch, heads * dim)
    for row, (slot, length) in enumerate(rows):
        k, v = keys[slot, :length].transpose(0, 1), values[slot, :length].transpose(0, 1)  # [Hkv, L, D]
        out[row] = F.scaled_dot_product_attention(grouped[row], k, v).reshape(heads * dim)
    return out


def varlen_plan(rows: StepRows) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The varlen kernel's offsets: query rows ``b * G .. (b + 1) * G`` (the G query heads of
    a KV head as tokens), keys of row ``b`` from ``slots[b] * capacity``, ``lengths[b]`` long."""
    batch, device = rows.slots.shape[0], rows.slots.device
    cu_q = torch.arange(0, (batch + 1) * rows.group, rows.group, dtype=torch.int32, device=device)
    starts = (rows.slots * rows.capacity).to(torch.int32)
    cu_k = torch.cat([starts, starts.new_full((1,), rows.n_slots * rows.capacity)])
    return cu_q, cu_k, rows.lengths.to(torch.int32)


def varlen_attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, plan) -> torch.Tensor:
    """Decode attention through the memory-efficient varlen kernel (CUDA): each row reads only
    ``lengths[b]`` positions of its own slot."""
    cu_q, cu_k, seqlen_k = plan
    batch, heads, dim = q.shape
    n_slots, capacity, kv_heads, _ = keys.shape
    group = heads // kv_heads
    query = group_queries(q, kv_heads).transpose(1, 2).reshape(1, batch * group, kv_heads, dim)
    out = torch.ops.aten._efficient_attention_forward(
        query, keys.view(1, n_slots * capacity, kv_heads, dim), values.view(1, n_slots * capacity, kv_heads, dim),
        None, cu_q, cu_k, group, capacity, 0.0, 0, False, scale=dim**-0.5, seqlen_k=seqlen_k,
    )[0]  # [1, B * G, Hkv, D]
    return out.view(batch, group, kv_heads, dim).transpose(1, 2).reshape(batch, heads * dim)


sdpa_attention = DecodeAttention(plan=sdpa_plan, attend=sdpa_attend_planned)
rowwise_attention = DecodeAttention(plan=lambda rows: rows.host_rows, attend=rowwise_attend)
ATTENTION: dict[str, DecodeAttention] = {
    "varlen": DecodeAttention(plan=varlen_plan, attend=varlen_attend),
    "sdpa": sdpa_attention,
}


def self_check(attention: DecodeAttention, *, device: torch.device, dtype: torch.dtype, heads: int, kv_heads: int,
               head_dim: int, seed: int = 0) -> float:
    """Relative error of ``attention`` against ``sdpa_attend`` in float32 on random rows (shuffled
    slots, lengths from 1 to the capacity)."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    slots_total, capacity, batch = 5, 64, 4

    def rand(*shape):
        return torch.randn(*shape, generator=generator).to(device=device, dtype=dtype)

    keys, values = rand(slots_total, capacity, kv_heads, head_dim), rand(slots_total, capacity, kv_heads, head_dim)
    q = rand(batch, heads, head_dim)
    slots = torch.tensor([3, 0, 4, 1], device=device)
    lengths = torch.tensor([1, 64, 17, 40], device=device)
    rows = StepRows(slots, lengths, slots_total, capacity, heads // kv_heads)
    got = attention.attend(q, keys, values, attention.plan(rows)).float()
    want = sdpa_attend(q.float(), keys.float(), values.float(), slots, lengths)
    return float((got - want).norm() / want.norm())


def decode_attention(device: torch.device, *, dtype: torch.dtype, heads: int, kv_heads: int,
                     head_dim: int) -> tuple[str, DecodeAttention]:
    """The decode attention for ``device``: ``varlen`` on CUDA when it passes its self-check."""
    if device.type != "cuda":
        return "sdpa", sdpa_attention
    try:
        error = self_check(ATTENTION["varlen"], device=device, dtype=dtype, heads=heads, kv_heads=kv_heads,
                           head_dim=head_dim)
    except (RuntimeError, TypeError, NotImplementedError) as exc:  # no such kernel/signature in this torch
        log.warning("varlen decode attention unavailable (%s); using SDPA over the whole slot", exc)
        return "sdpa", sdpa_attention
    if not error < 2e-2:
        log.warning("varlen decode attention disagrees with SDPA (relative error %.3g); using SDPA", error)
        return "sdpa", sdpa_attention
    return "varlen", ATTENTION["varlen"]
