"""A compact Qwen2 forward pass over a transformers ``Qwen2ForCausalLM``'s own weights.

Why it exists: at small shapes (and for the 1.5B model on a GPU) a decode step of
``transformers`` costs far more in Python and module overhead than in arithmetic (3.6 ms per
greedy step for the 2-layer ``tiny`` shape, whose LM head takes 0.8 ms). This module runs the
same arithmetic as ``modeling_qwen2`` (RMSNorm in fp32, rotate-half RoPE from the model's own
``inv_freq``, GQA attention with q/k/v bias, SwiGLU MLP) as a handful of tensor ops per layer,
reading and writing a ``KVCache`` in place. Tests check that its logits equal transformers'
forward within 1e-4 for prefill and every decode step.

Few kernels per layer (a 1.5B decode step on a GPU is bound by kernel count, not bytes): one
matmul for q, k and v together and one for gate and up (``fuse_rows``: the model's own
parameters become row views of one tensor each, so there is no copy and the model itself
computes exactly as before), RoPE applied to q and k in one pass (``x * cos + roll(x) *
sin_signed``, bitwise rotate-half), each residual added by the projection's own matmul (its
bias argument), RMSNorm as one ``F.rms_norm``, and per-step work
(cache write positions, attention metadata) done once per step, not once per layer.

Two entry points:
- ``prefill(cache, slot, tokens, start)``: one sequence, a chunk of prompt tokens at positions
  ``start..``; writes their keys/values, returns nothing (no LM head over prompt positions);
  ``prefill_many`` does several sequences' chunks in one pass (matmuls over all their tokens);
- ``decode(cache, slots, tokens, positions)``: one token for each of B sequences -> [B, vocab]
  logits (float32); ``decode_static`` is the same step with tensor-only arguments for CUDA
  graphs, its attention chosen by ``qwen_math.engine.attention`` (the varlen kernel on CUDA).

What it deliberately does not do: sliding-window attention, rope scaling that depends on the
sequence length (dynamic/longrope), or training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from qwen_math.engine.attention import (
    DecodeAttention,
    StepRows,
    decode_attention,
    rowwise_attention,
    sdpa_attention,
)
from qwen_math.engine.kv_cache import CacheShape, KVCache
from qwen_math.errors import UsageError


@dataclass(frozen=True)
class LayerWeights:
    input_norm: torch.Tensor
    qkv: torch.Tensor  # [(H + 2 Hkv) * D, hidden]: q_proj, k_proj, v_proj rows, in that order
    qkv_bias: torch.Tensor
    o: torch.Tensor
    post_norm: torch.Tensor
    gate_up: torch.Tensor  # [2 * intermediate, hidden]: gate_proj rows, then up_proj rows
    down: torch.Tensor


@dataclass(frozen=True)
class PrefillPiece:
    """A chunk of one sequence's prompt: ``tokens`` ([C] int64, on the device) at positions
    ``start..start + C - 1`` of cache slot ``slot``."""

    slot: int
    tokens: torch.Tensor
    start: int

    @property
    def count(self) -> int:
        return self.tokens.shape[0]

    @property
    def end(self) -> int:
        return self.start + self.count

    def causal_mask(self, device: torch.device) -> torch.Tensor | None:
        """[C, end] bool: token i sees every earlier position and itself; None from position 0
        (then SDPA's own causal flag does it)."""
        if not self.start:
            return None
        keys = torch.arange(self.end, device=device)
        return keys[None, :] <= torch.arange(self.start, self.end, device=device)[:, None]


class Qwen2Forward:
    """The decoder of a ``Qwen2ForCausalLM`` as plain tensor ops over a slot KV cache."""

    def __init__(self, model: torch.nn.Module, *, context_window: int) -> None:
        config = model.config
        check_supported(config)
        inner = model.model
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = config.rms_norm_eps
        self.embed = inner.embed_tokens.weight
        self.layers = [layer_weights(layer) for layer in inner.layers]
        self.final_norm = inner.norm.weight
        self.lm_head = model.lm_head.weight
        self.dtype = self.embed.dtype
        self.device = self.embed.device
        self._logits: torch.Tensor | None = None  # reused LM-head output buffer
        self.cos, self.sin_signed = rope_tables(inner.rotary_emb, context_window, self.dtype)
        self.static_attention_name, self.static_attention = decode_attention(
            self.device, dtype=self.dtype, heads=self.heads, kv_heads=self.kv_heads, head_dim=self.head_dim
        )

    @property
    def cache_shape(self) -> CacheShape:
        return CacheShape(len(self.layers), self.kv_heads, self.head_dim, self.dtype)

    def prefill(self, cache: KVCache, *, slot: int, tokens: torch.Tensor, start: int) -> None:
        """Write keys/values of ``tokens`` ([C] int64) at positions ``start..start+C-1`` of a slot."""
        self.prefill_many(cache, [PrefillPiece(slot, tokens, start)])

    def prefill_many(self, cache: KVCache, pieces: list[PrefillPiece]) -> None:
        """Prefill several chunks (of different sequences) in one pass: the matmuls, norms and
        RoPE run once over all their tokens packed together; attention runs per chunk (each
        over its own slot, causally). Writes keys/values, computes no logits."""
        tokens = torch.cat([piece.tokens for piece in pieces]) if len(pieces) > 1 else pieces[0].tokens
        total = tokens.shape[0]
        positions = torch.cat([torch.arange(p.start, p.end, device=self.device) for p in pieces])  # [T]
        slots = torch.cat([torch.full((p.count,), p.slot, device=self.device) for p in pieces])
        where = slots * cache.capacity + positions  # see store_kv
        cos, sin = self.cos[positions, None], self.sin_signed[positions, None]  # [T, 1, D]
        masks = [piece.causal_mask(self.device) for piece in pieces]
        x = F.embedding(tokens, self.embed)  # [T, hidden]
        attn = x.new_empty(total, self.heads * self.head_dim)
        for index, w in enumerate(self.layers):
            q, k, v = self._qkv(w, x, cos, sin)  # [T, H, D], [T, Hkv, D]
            keys, values = cache.keys[index], cache.values[index]  # [slots, capacity, Hkv, D]
            store_kv(keys, values, where, k, v)
            offset = 0
            for piece, mask in zip(pieces, masks, strict=True):
                chunk = slice(offset, offset + piece.count)
                out = F.scaled_dot_product_attention(
                    q[chunk].transpose(0, 1)[None],  # [1, H, C, D]
                    keys[piece.slot, :piece.end].transpose(0, 1)[None],  # [1, Hkv, end, D]
                    values[piece.slot, :piece.end].transpose(0, 1)[None],
                    attn_mask=mask,
                    is_causal=mask is None,
                    enable_gqa=True,
                )
                attn[chunk] = out[0].transpose(0, 1).reshape(piece.count, -1)
                offset += piece.count
            x = self._after_attention(w, x, attn)

    def decode(self, cache: KVCache, *, slots: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor,
               span: int, contiguous: bool, host_rows: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """One token per sequence: [B] slots/tokens/positions -> [B, vocab] float32 logits.

        ``host_rows``: the same rows as (slot, position + 1) on the host, when the caller has them
        (the engine does: then the CPU path reads no tensor back).

        On CPU each row attends to exactly its own positions (``rowwise_attention``) and every
        matmul is per row (``rowwise_linear``), so a row's logits are bitwise independent of the
        other rows. Elsewhere attention reads positions ``< span`` (``span`` > every position)
        in one padded call; ``contiguous`` means ``slots`` is exactly ``0..B-1``: the cache is
        then read by slicing, without a copy.
        """
        if self.device.type == "cpu":  # every op row-invariant: attention and matmuls per row
            rows = host_rows if host_rows is not None else list(zip(slots.tolist(), (positions + 1).tolist(), strict=True))
            plan = rowwise_attention.plan(self._step_rows(cache.keys, slots, positions, host_rows=rows))
            hidden = self._decode_layers(cache.keys, cache.values, slots, tokens, positions, rowwise_attention, plan,
                                         linear=rowwise_linear)
            return rowwise_linear(hidden, self.lm_head).float()
        plan = sdpa_attention.plan(self._step_rows(cache.keys, slots, positions, span=span, contiguous=contiguous))
        hidden = self._decode_layers(cache.keys, cache.values, slots, tokens, positions, sdpa_attention, plan)
        return self._lm_head(hidden)

    def decode_static(self, keys: torch.Tensor, values: torch.Tensor, slots: torch.Tensor, tokens: torch.Tensor,
                      positions: torch.Tensor) -> torch.Tensor:
        """``decode`` with only tensor arguments and fixed shapes per batch size: no host sync,
        for CUDA-graph capture. Attention is ``self.static_attention`` (the varlen kernel on
        CUDA: each row reads only its own length; SDPA over the whole capacity elsewhere)."""
        attention = self.static_attention
        plan = attention.plan(self._step_rows(keys, slots, positions))
        hidden = self._decode_layers(keys, values, slots, tokens, positions, attention, plan)
        return F.linear(hidden, self.lm_head).float()

    def _step_rows(self, keys: torch.Tensor, slots: torch.Tensor, positions: torch.Tensor, **options) -> StepRows:
        return StepRows(slots, positions + 1, keys.shape[1], keys.shape[2], self.heads // self.kv_heads, **options)

    def _decode_layers(self, keys, values, slots, tokens, positions, attention: DecodeAttention, plan,
                       linear=F.linear) -> torch.Tensor:
        """The layers for one token per row; everything that does not depend on the layer
        (RoPE rows, cache write positions, the attention's plan) is computed once, here."""
        batch = tokens.shape[0]
        cos, sin = self.cos[positions][:, None], self.sin_signed[positions][:, None]  # [B, 1, D]
        where = slots * keys.shape[2] + positions  # see store_kv
        x = F.embedding(tokens, self.embed)  # [B, hidden]
        for index, w in enumerate(self.layers):
            q, k, v = self._qkv(w, x, cos, sin, linear)  # [B, H, D], [B, Hkv, D]
            layer_keys, layer_values = keys[index], values[index]
            store_kv(layer_keys, layer_values, where, k, v)
            attn = attention.attend(q, layer_keys, layer_values, plan)
            x = self._after_attention(w, x, attn.reshape(batch, -1), linear)
        return rms_norm(x, self.final_norm, self.eps)

    def _lm_head(self, h: torch.Tensor) -> torch.Tensor:
        """[B, hidden] -> [B, vocab] float32, written into a reused buffer (no page faults)."""
        batch = h.shape[0]
        if self._logits is None or self._logits.shape[0] < batch:
            self._logits = torch.empty((batch, self.lm_head.shape[0]), dtype=self.dtype, device=self.device)
        out = self._logits[:batch]
        torch.mm(h, self.lm_head.t(), out=out)
        return out.float()

    def _qkv(self, w: LayerWeights, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, linear=F.linear):
        """Normalised input -> q [N, H, D] and k [N, Hkv, D] with RoPE, v [N, Hkv, D]: one
        matmul for the three projections, one RoPE pass over q and k together."""
        n = x.shape[0]
        qkv = linear(rms_norm(x, w.input_norm, self.eps), w.qkv, w.qkv_bias)  # [N, (H + 2 Hkv) * D]
        rotated = self.heads + self.kv_heads
        qk = apply_rope(qkv[:, : rotated * self.head_dim].view(n, rotated, self.head_dim), cos, sin)
        v = qkv[:, rotated * self.head_dim:].view(n, self.kv_heads, self.head_dim)
        return qk[:, : self.heads], qk[:, self.heads:], v

    def _after_attention(self, w: LayerWeights, x: torch.Tensor, attn: torch.Tensor, linear=F.linear) -> torch.Tensor:
        """Output projection and MLP, each residual added through the matmul's bias argument."""
        x = linear(attn, w.o, x)
        gate, up = linear(rms_norm(x, w.post_norm, self.eps), w.gate_up).chunk(2, dim=-1)
        return linear(F.silu(gate) * up, w.down, x)


# Output columns per ``rowwise_linear`` block: about this many bytes of weights, so that the
# B single-row products of a block read its weights from cache, not memory, after the first.
ROWWISE_BLOCK_BYTES = 2 << 20


def store_kv(keys: torch.Tensor, values: torch.Tensor, where: torch.Tensor, k: torch.Tensor,
             v: torch.Tensor) -> None:
    """Write ``k``/``v`` ([N, Hkv, D]) into one layer's cache ([slots, capacity, Hkv, D]) at rows
    ``where`` = ``slot * capacity + position`` of its flat [slots * capacity] view: one copy
    each, with the rows computed once per step for every layer."""
    keys.view(-1, *keys.shape[2:]).index_copy_(0, where, k)
    values.view(-1, *values.shape[2:]).index_copy_(0, where, v)


def rowwise_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` whose row ``b`` is bitwise independent of the other rows (CPU decode).

    A CPU GEMM's blocking, hence its reduction order, changes with the row count M (M = 1 takes
    a GEMV path, M >= 4 other kernels), so a row of ``F.linear`` differs by an ulp between a
    batch and the same row alone. A batched matmul of B [1, K] x [K, n] problems computes every
    row as the same single-row product, whatever B is. The output columns go in blocks of
    about ``ROWWISE_BLOCK_BYTES`` of weights (the same blocks for every B), so the B products of
    a block share its weights in cache: one read of the weights from memory per step, not B.
    ``bias``: [n] or [B, n] (a residual), added after the product, as ``F.linear`` does.

    A single row (B = 1) runs every block in one batched matmul instead (``one_row_linear``):
    the same products, bitwise, but spread over the cores (a batch of one uses one core)."""
    batch, k = x.shape
    block = max(1, ROWWISE_BLOCK_BYTES // (k * weight.element_size()))
    if batch == 1:
        out = one_row_linear(x, weight, block)
    else:
        rows = x[:, None, :]
        outs = [torch.bmm(rows, part.t().expand(batch, k, part.shape[0]))[:, 0] for part in weight.split(block)]
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
    return out if bias is None else out + bias


def one_row_linear(x: torch.Tensor, weight: torch.Tensor, block: int) -> torch.Tensor:
    """[1, k] x ``weight`` [n, k]^T as ``rowwise_linear``'s [1, k] x [k, block] products, all the
    whole blocks in one ``bmm`` whose batch is the blocks (no copy: a view of ``weight``), the
    remainder in a second."""
    k = x.shape[1]
    whole = weight.shape[0] // block
    outs = []
    if whole:
        blocks = weight[: whole * block].view(whole, block, k).transpose(1, 2)  # [whole, k, block]
        outs.append(torch.bmm(x.expand(whole, 1, k), blocks).reshape(1, whole * block))
    if weight.shape[0] % block:
        outs.append(torch.bmm(x[:, None, :], weight[whole * block:].t()[None])[:, 0])
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)


def check_supported(config) -> None:
    """Refuse configurations this forward does not implement (rather than compute them wrongly)."""
    layer_types = getattr(config, "layer_types", None) or []
    if getattr(config, "use_sliding_window", False) and any(t == "sliding_attention" for t in layer_types):
        raise UsageError("sliding-window attention layers are not supported by the hf engine")
    if getattr(config, "hidden_act", "silu") != "silu":
        raise UsageError(f"hidden_act {config.hidden_act!r} is not supported (Qwen2 uses silu)")


def layer_weights(layer: torch.nn.Module) -> LayerWeights:
    attn, mlp = layer.self_attn, layer.mlp
    return LayerWeights(
        input_norm=layer.input_layernorm.weight,
        qkv=fuse_rows([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]),
        qkv_bias=fuse_rows([attn.q_proj.bias, attn.k_proj.bias, attn.v_proj.bias]),
        o=attn.o_proj.weight,
        post_norm=layer.post_attention_layernorm.weight,
        gate_up=fuse_rows([mlp.gate_proj.weight, mlp.up_proj.weight]),
        down=mlp.down_proj.weight,
    )


def fuse_rows(parameters: list[torch.nn.Parameter]) -> torch.Tensor:
    """One tensor holding ``parameters`` stacked along dim 0, with no copy left behind: each
    parameter's ``.data`` becomes a view of its rows (same values, so the model computes exactly
    as before). Idempotent: parameters that already are consecutive rows of one contiguous
    block (an earlier call) give a view of that block."""
    first = parameters[0]
    rows = sum(p.shape[0] for p in parameters)
    shape = (rows, *first.shape[1:])
    if adjacent_rows(parameters):
        base = first.detach()
        return base.as_strided(shape, base.stride(), base.storage_offset())
    with torch.no_grad():
        fused = torch.cat([p.detach() for p in parameters])
        start = 0
        for p in parameters:
            p.data = fused[start:start + p.shape[0]]
            start += p.shape[0]
    return fused


def adjacent_rows(parameters: list[torch.Tensor]) -> bool:
    """Whether the tensors are contiguous and follow each other in one storage, in order."""
    first = parameters[0]
    storage = first.untyped_storage().data_ptr()
    offset = first.storage_offset()
    for p in parameters:
        if not p.is_contiguous() or p.untyped_storage().data_ptr() != storage or p.storage_offset() != offset:
            return False
        if p.shape[1:] != first.shape[1:] or p.dtype != first.dtype:
            return False
        offset += p.numel()
    return True


def rope_tables(rotary: torch.nn.Module, positions: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and signed sin [positions, head_dim], computed exactly as ``Qwen2RotaryEmbedding.forward``;
    the sin table's first half is negated, so that ``apply_rope`` needs no negation."""
    inv_freq = rotary.inv_freq.float()
    freqs = torch.arange(positions, device=inv_freq.device).float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    scaling = getattr(rotary, "attention_scaling", 1.0)
    cos, sin = (emb.cos() * scaling).to(dtype), (emb.sin() * scaling).to(dtype)
    half = sin.shape[-1] // 2
    return cos, torch.cat((-sin[:, :half], sin[:, half:]), dim=-1)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen2RMSNorm as one op (``F.rms_norm``; one fused kernel on recent CUDA builds): normalise
    in float32, scale.
    Bitwise Qwen2RMSNorm in float32; in bf16 the scaling happens before the one rounding
    instead of after a first one (at most an ulp apart)."""
    return F.rms_norm(x, (x.shape[-1],), weight, eps)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """Rotate-half RoPE: ``x * cos + rotate_half(x) * sin`` with ``rotate_half(x) = (-x2, x1)``,
    computed as ``roll(x) = (x2, x1)`` times the signed sin (bitwise the same values)."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin_signed
