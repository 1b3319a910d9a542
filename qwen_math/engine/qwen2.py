"""A compact Qwen2 forward pass over a transformers ``Qwen2ForCausalLM``'s own weights.

Why it exists: at small shapes (and for the 1.5B model on a GPU) a decode step of
``transformers`` costs far more in Python and module overhead than in arithmetic (3.6 ms per
greedy step for the 2-layer ``tiny`` shape, whose LM head takes 0.8 ms). This module runs the
same arithmetic as ``modeling_qwen2`` (RMSNorm in fp32, rotate-half RoPE from the model's own
``inv_freq``, GQA attention with q/k/v bias, SwiGLU MLP) as a handful of tensor ops per layer,
reading and writing a ``KVCache`` in place. The weights are the model's parameters themselves
(no copy). Tests check that its logits equal transformers' forward within 1e-4 for prefill and
every decode step.

Two entry points:
- ``prefill(cache, slot, tokens, start)``: one sequence, a chunk of prompt tokens at positions
  ``start..``; writes their keys/values, returns nothing (no LM head over prompt positions);
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

from qwen_math.engine.attention import decode_attention, rowwise_attend, sdpa_attend
from qwen_math.engine.kv_cache import CacheShape, KVCache
from qwen_math.errors import UsageError


@dataclass(frozen=True)
class LayerWeights:
    input_norm: torch.Tensor
    q: torch.Tensor
    q_bias: torch.Tensor
    k: torch.Tensor
    k_bias: torch.Tensor
    v: torch.Tensor
    v_bias: torch.Tensor
    o: torch.Tensor
    post_norm: torch.Tensor
    gate: torch.Tensor
    up: torch.Tensor
    down: torch.Tensor


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
        self.cos, self.sin = rope_tables(inner.rotary_emb, context_window, self.dtype)
        self.static_attention_name, self.static_attention = decode_attention(
            self.device, dtype=self.dtype, heads=self.heads, kv_heads=self.kv_heads, head_dim=self.head_dim
        )

    @property
    def cache_shape(self) -> CacheShape:
        return CacheShape(len(self.layers), self.kv_heads, self.head_dim, self.dtype)

    def prefill(self, cache: KVCache, *, slot: int, tokens: torch.Tensor, start: int) -> None:
        """Write keys/values of ``tokens`` ([C] int64) at positions ``start..start+C-1`` of a slot."""
        count = tokens.shape[0]
        end = start + count
        cos, sin = self.cos[start:end], self.sin[start:end]  # [C, D]
        x = F.embedding(tokens, self.embed)  # [C, hidden]
        mask = None
        if start:  # chunk i attends to every earlier position and to itself causally
            keys = torch.arange(end, device=self.device)
            mask = keys[None, :] <= torch.arange(start, end, device=self.device)[:, None]  # [C, end]
        for index, w in enumerate(self.layers):
            q, k, v = self._qkv(w, x, cos, sin)  # [C, H, D], [C, Hkv, D]
            keys, values = cache.keys[index, slot], cache.values[index, slot]  # [capacity, Hkv, D]
            keys[start:end] = k
            values[start:end] = v
            attn = F.scaled_dot_product_attention(
                q.transpose(0, 1)[None],  # [1, H, C, D]
                keys[:end].transpose(0, 1)[None],  # [1, Hkv, end, D]
                values[:end].transpose(0, 1)[None],
                attn_mask=mask,
                is_causal=mask is None,
                enable_gqa=True,
            )
            x = self._after_attention(w, x, attn[0].transpose(0, 1).reshape(count, -1))

    def decode(self, cache: KVCache, *, slots: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor,
               span: int, contiguous: bool, host_rows: list[tuple[int, int]] | None = None) -> torch.Tensor:
        """One token per sequence: [B] slots/tokens/positions -> [B, vocab] float32 logits.

        ``host_rows``: the same rows as (slot, position + 1) on the host, when the caller has them
        (the engine does: then the CPU path reads no tensor back).

        On CPU each row attends to exactly its own positions (``rowwise_attend``) and every matmul
        is per row (``rowwise_linear``), so a row's logits are bitwise independent of the other
        rows. Elsewhere attention reads positions
        ``< span`` (``span`` > every position) in one padded call; ``contiguous`` means ``slots``
        is exactly ``0..B-1``: the cache is then read by slicing, without a copy.
        """
        if self.device.type == "cpu":  # every op row-invariant: attention and matmuls per row
            rows = host_rows if host_rows is not None else list(zip(slots.tolist(), (positions + 1).tolist(), strict=True))

            def attend_rows(q, keys, values, lengths):
                return rowwise_attend(q, keys, values, rows)

            hidden = self._decode_layers(cache.keys, cache.values, slots, tokens, positions, attend_rows,
                                         linear=rowwise_linear)
            return rowwise_linear(hidden, self.lm_head).float()

        def attend(q, keys, values, lengths):
            return sdpa_attend(q, keys, values, slots, lengths, span=span, contiguous=contiguous)

        hidden = self._decode_layers(cache.keys, cache.values, slots, tokens, positions, attend)
        return self._lm_head(hidden)

    def decode_static(self, keys: torch.Tensor, values: torch.Tensor, slots: torch.Tensor, tokens: torch.Tensor,
                      positions: torch.Tensor) -> torch.Tensor:
        """``decode`` with only tensor arguments and fixed shapes per batch size: no host sync,
        for CUDA-graph capture. Attention is ``self.static_attention`` (the varlen kernel on
        CUDA: each row reads only its own length; SDPA over the whole capacity elsewhere)."""

        def attend(q, layer_keys, layer_values, lengths):
            return self.static_attention(q, layer_keys, layer_values, slots, lengths)

        hidden = self._decode_layers(keys, values, slots, tokens, positions, attend)
        return F.linear(hidden, self.lm_head).float()

    def _decode_layers(self, keys, values, slots, tokens, positions, attend, linear=F.linear) -> torch.Tensor:
        batch = tokens.shape[0]
        cos, sin = self.cos[positions], self.sin[positions]  # [B, D]
        x = F.embedding(tokens, self.embed)  # [B, hidden]
        lengths = positions + 1
        for index, w in enumerate(self.layers):
            q, k, v = self._qkv(w, x, cos, sin, linear)  # [B, H, D], [B, Hkv, D]
            keys[index][slots, positions] = k
            values[index][slots, positions] = v
            attn = attend(q, keys[index], values[index], lengths)
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
        h = rms_norm(x, w.input_norm, self.eps)
        n = x.shape[0]
        q = linear(h, w.q, w.q_bias).view(n, self.heads, self.head_dim)
        k = linear(h, w.k, w.k_bias).view(n, self.kv_heads, self.head_dim)
        v = linear(h, w.v, w.v_bias).view(n, self.kv_heads, self.head_dim)
        cos, sin = cos[:, None], sin[:, None]
        return apply_rope(q, cos, sin), apply_rope(k, cos, sin), v

    def _after_attention(self, w: LayerWeights, x: torch.Tensor, attn: torch.Tensor, linear=F.linear) -> torch.Tensor:
        x = x + linear(attn, w.o)
        h = rms_norm(x, w.post_norm, self.eps)
        return x + linear(F.silu(linear(h, w.gate)) * linear(h, w.up), w.down)


# Output columns per ``rowwise_linear`` block: about this many bytes of weights, so that the
# B single-row products of a block read its weights from cache, not memory, after the first.
ROWWISE_BLOCK_BYTES = 2 << 20


def rowwise_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear`` whose row ``b`` is bitwise independent of the other rows (CPU decode).

    A CPU GEMM's blocking, hence its reduction order, changes with the row count M (M = 1 takes
    a GEMV path, M >= 4 other kernels), so a row of ``F.linear`` differs by an ulp between a
    batch and the same row alone. A batched matmul of B [1, K] x [K, n] problems computes every
    row as the same single-row product, whatever B is. The output columns go in blocks of
    about ``ROWWISE_BLOCK_BYTES`` of weights (the same blocks for every B), so the B products of
    a block share its weights in cache: one read of the weights from memory per step, not B."""
    batch, k = x.shape
    rows = x[:, None, :]
    block = max(1, ROWWISE_BLOCK_BYTES // (k * weight.element_size()))
    outs = [torch.bmm(rows, part.t().expand(batch, k, part.shape[0]))[:, 0] for part in weight.split(block)]
    out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
    return out if bias is None else out + bias


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
        q=attn.q_proj.weight, q_bias=attn.q_proj.bias,
        k=attn.k_proj.weight, k_bias=attn.k_proj.bias,
        v=attn.v_proj.weight, v_bias=attn.v_proj.bias,
        o=attn.o_proj.weight,
        post_norm=layer.post_attention_layernorm.weight,
        gate=mlp.gate_proj.weight, up=mlp.up_proj.weight, down=mlp.down_proj.weight,
    )


def rope_tables(rotary: torch.nn.Module, positions: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin [positions, head_dim] computed exactly as ``Qwen2RotaryEmbedding.forward``."""
    inv_freq = rotary.inv_freq.float()
    freqs = torch.arange(positions, device=inv_freq.device).float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    scaling = getattr(rotary, "attention_scaling", 1.0)
    return (emb.cos() * scaling).to(dtype), (emb.sin() * scaling).to(dtype)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen2RMSNorm: normalise in float32, scale in the model dtype."""
    h = x.float()
    h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
    return weight * h.to(x.dtype)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin
