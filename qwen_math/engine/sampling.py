"""On-device sampling for a batch of rows, each with its own temperature, top-p, top-k and seed.

Randomness is counter-based: the uniform of a row is a hash (SplitMix64) of its seed and the
position of the token being sampled, computed on the host from the row's settings (integer
arithmetic, ~1 us a row) and sent with its other parameters in the step's one small
host-to-device copy. A row's token therefore depends only on its own logits, parameters, seed and position,
never on which other rows share the batch, and there is no per-row ``torch.Generator`` call
(which would cost one launch per row and break CUDA-graph capture).

One definition of top-k and top-p, the sort-position one of Hugging Face and vLLM: order the
vocabulary by probability, descending, ties by lower token id; top-k keeps the first k tokens of
that order; top-p then keeps the smallest prefix of the survivors whose mass reaches ``top_p``
of theirs. Two ways find that kept set, with the same result and no host synchronisation
(``NUCLEUS_METHODS``):

- ``select`` (the CPU default: no sort of the vocabulary, 152k elements per row, ~30 ms per
  row on a CPU core). Top-k: the k-th largest value from ``topk`` (k up to the batch's largest
  k, known on the host), every token above it, and the lowest-id tokens tied with it up to k in
  all. Top-p: the probability ``p_c`` of the last kept token is found exactly by a radix select
  over the float32 bit patterns of the probabilities (non-negative floats order like their
  bits): two digits of 16/15 bits for the real vocabulary, each a ``scatter_add`` histogram of
  mass per digit and a search of its suffix sums for the digit where the mass above crosses
  ``top_p``; then every token above ``p_c``, and the lowest-id tokens tied at ``p_c`` until the
  mass reaches it.
- ``sort`` (the CUDA default: a sort is fast there, while the histograms' atomics crowd into a
  few buckets when the distribution is flat): a stable descending sort, a float64 cumulative
  sum, the kept prefix, scattered back to token-id order.

Either way a row then draws one token from its kept mass in token-id order, by inverse
transform of one counter-based uniform (a two-level blocked CDF, no full-vocabulary float64
copy). The draw does not depend on how the kept set was found: for one seed, a CPU and a GPU
draw the same token from the same probabilities, and often from probabilities that differ by
rounding (measured at temperature 0.7 / top_p 0.8, fp32 logits against their bf16 rounding:
98 % of tokens agree for peaked N(0, 6^2) logits, 18 % for flat N(0, 1) ones). Greedy rows
(temperature 0) take the argmax (ties: the lowest id). Which rows are greedy or filtered is
decided per row by masks on the device; only whole stages that no row of the batch needs are
skipped, from the host-side settings (no sync), so a row's token never depends on its batch.

What it deliberately does not do: repetition penalties, min-p, logit processors, or beam search.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: SplitMix64 constants.
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB
_POSITION_SALT = 0xD1B54A32D192ED03

@dataclass(frozen=True)
class SamplingBatch:
    """Per-row sampling parameters as device tensors (one row per sequence being decoded), plus
    three host-side facts about the batch that let whole stages be skipped without a sync."""

    temperature: torch.Tensor  # [B] float32, 0 = greedy
    top_p: torch.Tensor  # [B] float32 in (0, 1]
    top_k: torch.Tensor  # [B] int64, <= 0 = disabled
    uniform: torch.Tensor  # [B] float64 in [0, 1): the row's draw, ``uniform(seed, position)``
    all_greedy: bool = False
    any_greedy: bool = True
    k_max: int = 0  # the largest top_k of the batch (0: no row uses top-k)
    any_top_p: bool = True  # some sampled row has top_p < 1

    @classmethod
    def build(cls, rows: list[tuple[float, float, int, int, int]], device: torch.device) -> SamplingBatch:
        """From ``(temperature, top_p, top_k, seed, position)`` tuples: one host-to-device copy."""
        return cls.from_buffers(host_to_device(pack_rows(rows), device), batch_flags(rows))

    @classmethod
    def from_buffers(cls, floats: torch.Tensor, flags: tuple[bool, bool, int, bool]) -> SamplingBatch:
        """From device buffers (``pack_rows``' layout) and ``batch_flags``: device ops only, so
        a CUDA graph captured over this reads whatever the buffers hold at replay."""
        all_greedy, any_greedy, k_max, any_top_p = flags
        return cls(temperature=floats[0].float(), top_p=floats[1].float(), top_k=floats[2].long(),
                   uniform=floats[3], all_greedy=all_greedy, any_greedy=any_greedy, k_max=k_max, any_top_p=any_top_p)

    def slice(self, start: int, stop: int) -> SamplingBatch:
        tensors = {f: getattr(self, f)[start:stop] for f in ("temperature", "top_p", "top_k", "uniform")}
        return SamplingBatch(**tensors, all_greedy=self.all_greedy, any_greedy=self.any_greedy, k_max=self.k_max,
                             any_top_p=self.any_top_p)


def pack_rows(rows: list[tuple[float, float, int, int, int]]) -> torch.Tensor:
    """A host tensor [4, B] float64: temperature, top_p, top_k, uniform (all exact in float64)."""
    temperature, top_p, top_k, seed, position = zip(*rows, strict=True)
    draws = [uniform(s, p) for s, p in zip(seed, position, strict=True)]
    return torch.tensor([temperature, top_p, top_k, draws], dtype=torch.float64)


def batch_flags(rows: list[tuple[float, float, int, int, int]]) -> tuple[bool, bool, int, bool]:
    """What the batch needs, from the host-side settings: (all greedy, any greedy, largest
    top_k of a sampled row or 0, any sampled row with top_p < 1)."""
    sampled = [row for row in rows if row[0] > 0]
    return (not sampled, len(sampled) < len(rows), max((row[2] for row in sampled if row[2] > 0), default=0),
            any(row[1] < 1.0 for row in sampled))


def host_to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small host tensor on ``device`` without blocking the host: on CUDA it is staged in
    pinned memory (PyTorch's caching host allocator) and copied asynchronously, so the copy
    queues behind the work in flight instead of waiting for it."""
    if device.type != "cuda":
        return tensor
    pinned = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
    pinned.copy_(tensor)
    return pinned.to(device, non_blocking=True)


def splitmix64(x: int) -> int:
    """The SplitMix64 finaliser on an unsigned 64-bit integer."""
    x = (x + _GOLDEN) & _MASK64
    x = ((x ^ (x >> 30)) * _MIX1) & _MASK64
    x = ((x ^ (x >> 27)) * _MIX2) & _MASK64
    return x ^ (x >> 31)


def uniform(seed: int, position: int, draw: int = 0) -> float:
    """A uniform in [0, 1) (53 random bits), a pure function of (seed, position, draw)."""
    key = splitmix64(seed & _MASK64) ^ ((position * _POSITION_SALT) & _MASK64) ^ splitmix64(draw)
    return (splitmix64(key) >> 11) * 2.0**-53


def sample_tokens(logits: torch.Tensor, params: SamplingBatch, *, row_chunk: int | None = None,
                  method: str | None = None) -> torch.Tensor:
    """[B, V] float logits -> [B] int64 tokens (greedy rows take the argmax).

    ``method``: ``"sort"`` or ``"select"`` (``NUCLEUS_METHODS``; default: sort on CUDA, select
    elsewhere). ``row_chunk`` processes the rows in groups (rows are independent, so the result
    is the same); on CPU, groups of 16 keep every [rows, V] temporary below glibc's mmap
    threshold, which avoids page-faulting fresh memory on every elementwise op.
    """
    method = method or ("sort" if logits.is_cuda else "select")
    rows = logits.shape[0]
    if row_chunk and rows > row_chunk:
        parts = [
            sample_rows(logits[start:start + row_chunk], params.slice(start, start + row_chunk), method)
            for start in range(0, rows, row_chunk)
        ]
        return torch.cat(parts)
    return sample_rows(logits, params, method)


def sample_rows(logits: torch.Tensor, params: SamplingBatch, method: str) -> torch.Tensor:
    if params.all_greedy:
        return logits.argmax(dim=-1)
    greedy = params.temperature <= 0
    temperature = torch.where(greedy, 1.0, params.temperature)
    probs = torch.softmax(logits.float() / temperature[:, None], dim=-1)
    kept = NUCLEUS_METHODS[method](probs, params)
    sampled = BlockedDistribution(kept).inverse_transform(params.uniform)
    if not params.any_greedy:
        return sampled
    return torch.where(greedy, logits.argmax(dim=-1), sampled)


def nucleus_by_selection(probs: torch.Tensor, params: SamplingBatch) -> torch.Tensor:
    """Sort-free: zero what top-k / top-p drop, by exact selection. Fast on a CPU (no
    152k-element sort per row); on a GPU its histograms' atomics all land in a few buckets when
    the distribution is flat."""
    if params.k_max > 0:
        probs = top_k_filter(probs, params.top_k, params.k_max)
    if params.any_top_p:
        probs = top_p_filter(probs, params.top_p)
    return probs


def nucleus_by_sorting(probs: torch.Tensor, params: SamplingBatch) -> torch.Tensor:
    """The definition itself: a stable descending sort (ties keep the lower id first), the kept
    prefix (first top_k positions, then positions whose mass before them is below top_p of the
    top-k mass), scattered back to token-id order; zero elsewhere. Every row is sorted, whatever
    its settings, so its result never depends on the rest of the batch. Fast on a GPU."""
    vocab = probs.shape[-1]
    ordered, order = probs.sort(dim=-1, descending=True, stable=True)
    cdf = ordered.cumsum(dim=-1, dtype=torch.float64)  # [B, V]
    k = torch.where(params.top_k > 0, params.top_k.clamp(max=vocab), vocab)  # positions top-k keeps
    mass_k = cdf.gather(1, (k - 1)[:, None])  # [B, 1]
    reach = torch.searchsorted(cdf, (params.top_p.double()[:, None] * mass_k).contiguous())  # cdf >= limit
    kept = torch.where((params.top_p < 1.0)[:, None], torch.minimum(reach + 1, k[:, None]), k[:, None])
    in_prefix = torch.arange(vocab, device=probs.device)[None, :] < kept  # [B, V], sorted order
    keep = torch.empty_like(in_prefix).scatter_(1, order, in_prefix)  # the same, in token-id order
    return torch.where(keep, probs, 0.0)


NUCLEUS_METHODS = {"select": nucleus_by_selection, "sort": nucleus_by_sorting}


def keep_lowest_ids(tied: torch.Tensor, quota: torch.Tensor) -> torch.Tensor:
    """Of each row's tied tokens, the ``quota`` ([B, 1]) with the lowest ids."""
    return tied & (tied.cumsum(dim=-1, dtype=torch.int32) <= quota)


def top_k_filter(probs: torch.Tensor, top_k: torch.Tensor, k_max: int) -> torch.Tensor:
    """Zero every token outside each row's first ``top_k`` in sort-position order (rows with
    ``top_k <= 0`` are left whole); ``k_max`` >= every row's k."""
    vocab = probs.shape[-1]
    k = top_k.clamp(min=1, max=vocab)
    largest = probs.topk(min(k_max, vocab), dim=-1).values
    kth = largest.gather(1, (k - 1).clamp(max=largest.shape[-1] - 1)[:, None])  # [B, 1]
    above = probs > kth
    quota = (k[:, None] - above.sum(dim=-1, keepdim=True)).to(torch.int32)
    keep = above | keep_lowest_ids(probs == kth, quota) | (top_k <= 0)[:, None]
    return torch.where(keep, probs, 0.0)


def radix_levels(vocab: int) -> tuple[tuple[int, int], ...]:
    """Radix-select digits over the 31 used bits of a non-negative float32, most significant
    first, as (shift, width): each digit's histogram is at most about half the row wide (two
    digits of 16/15 bits for a 152k vocabulary; more, narrower ones for a small test vocabulary)."""
    width = max(4, vocab.bit_length() - 2)
    levels, low = [], 31
    while low > 0:
        shift = max(low - width, 0)
        levels.append((shift, low - shift))
        low = shift
    return tuple(levels)


def top_p_filter(probs: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Zero every token outside each row's nucleus: the smallest prefix, in sort-position order,
    whose mass reaches ``top_p`` of the row's (unnormalised) mass."""
    boundary, mass_above, limit = radix_boundary(probs, top_p)  # [B] float32, float64, float64
    p_c = boundary[:, None]
    quota = torch.ceil((limit - mass_above) / boundary.double()).to(torch.int32)[:, None]  # ties to keep
    keep = (probs > p_c) | keep_lowest_ids(probs == p_c, quota) | (top_p >= 1.0)[:, None]
    return torch.where(keep, probs, 0.0)


def radix_boundary(probs: torch.Tensor, top_p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per row, the value ``p_c`` with mass(probs > p_c) < limit <= mass(probs >= p_c), where
    limit = top_p * the row's mass; returns (p_c, mass(probs > p_c), limit). Found digit by
    digit on the float bits, most significant first; tokens whose higher digits differ from the
    boundary's go to an extra, ignored bucket. Masses are float64 sums."""
    bits = probs.contiguous().view(torch.int32)
    mass = probs.double()
    rows = probs.shape[0]
    value = torch.zeros(rows, dtype=torch.int32, device=probs.device)
    above = torch.zeros(rows, dtype=torch.float64, device=probs.device)
    limit = None
    for level, (shift, width) in enumerate(radix_levels(probs.shape[-1])):
        digit = bits >> shift if shift + width == 31 else (bits >> shift) & ((1 << width) - 1)
        if level:
            higher = shift + width  # tokens that share the boundary's higher digits
            digit = torch.where((bits >> higher) == (value >> higher)[:, None], digit, 1 << width)
        histogram = torch.zeros(rows, (1 << width) + 1, dtype=torch.float64, device=probs.device)
        histogram.scatter_add_(1, digit.long(), mass)
        if limit is None:
            limit = top_p.double() * histogram.sum(dim=-1)
        chosen, mass_in_higher = crossing_digit(histogram[:, :-1], limit - above)
        above = above + mass_in_higher
        value = value | (chosen << shift)
    return value.view(torch.float32), above, limit


def crossing_digit(histogram: torch.Tensor, limit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The digit whose bucket holds the point where the mass, summed from the highest digit
    down, reaches ``limit``; and the mass of the digits above it."""
    buckets = histogram.shape[-1]
    suffix = histogram.flip(-1).cumsum(dim=-1)  # [j]: mass of digits >= buckets - 1 - j
    j = torch.searchsorted(suffix, limit[:, None].contiguous()).clamp(max=buckets - 1)  # [B, 1]
    before = torch.where(j > 0, suffix.gather(1, (j - 1).clamp(min=0)), 0.0)
    return (buckets - 1 - j[:, 0]).to(torch.int32), before[:, 0]


class BlockedDistribution:
    """Unnormalised rows of probabilities, searchable by cumulative mass in two levels.

    The vocabulary is cut into blocks of ``BLOCK`` tokens: a float64 cumulative sum over block
    totals finds the block, a float64 cumulative sum inside that one block finds the token. This
    avoids a full float64 copy and cumulative sum of every [B, V] row per step.
    """

    BLOCK = 128

    def __init__(self, probs: torch.Tensor, block_cdf: torch.Tensor | None = None) -> None:
        rows, vocab = probs.shape
        padding = -vocab % self.BLOCK
        self.probs = probs
        self.padded = F.pad(probs, (0, padding)) if padding else probs
        self.blocks = self.padded.view(rows, -1, self.BLOCK)
        if block_cdf is None:
            block_cdf = self.blocks.sum(dim=-1).cumsum(dim=-1, dtype=torch.float64)
        self.block_cdf = block_cdf  # [B, blocks] float64
        self.total = block_cdf[:, -1]

    def inverse_transform(self, u: torch.Tensor) -> torch.Tensor:
        """[B] uniforms in [0, 1) -> [B] token ids, each with probability proportional to its mass."""
        target = u * self.total
        block = first_above(self.block_cdf, target)
        before = torch.where(block > 0, self.block_cdf.gather(1, (block - 1).clamp(min=0)[:, None])[:, 0], 0.0)
        rows = torch.arange(block.shape[0], device=block.device)
        inner_cdf = self.blocks[rows, block].cumsum(dim=-1, dtype=torch.float64)  # [B, BLOCK]
        inner_total = inner_cdf[:, -1]
        within = torch.minimum(target - before, torch.nextafter(inner_total, torch.zeros_like(inner_total)))
        return block * self.BLOCK + first_above(inner_cdf, within)


def first_above(cdf: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per row, the first index whose cumulative mass exceeds ``target``."""
    index = torch.searchsorted(cdf, target[:, None].contiguous(), right=True).flatten()
    return index.clamp(max=cdf.shape[-1] - 1)


def sort_position_reference(probs: torch.Tensor, top_p: float, top_k: int = -1) -> torch.Tensor:
    """The definition by brute force, for tests: [V] probabilities -> [V] renormalised kept mass.
    Orders tokens by (probability descending, id ascending) with a stable sort."""
    ordered, order = probs.double().sort(descending=True, stable=True)
    if top_k > 0:
        ordered = torch.where(torch.arange(len(ordered)) < top_k, ordered, 0.0)
    mass_before = ordered.cumsum(0) - ordered
    kept = torch.where(mass_before < top_p * ordered.sum(), ordered, 0.0) if top_p < 1 else ordered
    out = torch.zeros_like(kept).scatter(0, order, kept)
    return out / out.sum()
