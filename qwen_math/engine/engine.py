"""The decode engine: continuous batching over a slot KV cache with prefix reuse.

Each request is one sample (token ids in, token ids and text out). ``Engine.step`` advances
all work by one decode step and returns the requests that finished in it:

1. admit waiting requests into free slots; a request starts from the longest prefix of its
   prompt already held in any slot (the n samples of one prompt share its prefill; a TIR
   continuation with the same ``cache_key`` takes over its parked slot and keeps its KV), the
   prefix is copied (or kept) and only the remaining tokens are fed;
2. chunked prefill: feed up to ``prefill_chunk`` prompt tokens (all but each prompt's last
   token), so a long prompt never stalls the decoding rows for long; on CUDA the chunks of
   several rows go through one packed forward (``EngineConfig.packed_prefill``);
3. decode: one batched forward over every row whose last input token is pending -> logits,
   sampled on the device with each row's own parameters and seed;
4. bring the new tokens to the host once for the whole batch, check EOS / stop strings /
   max_tokens / context; a finished row frees its slot (or parks it under its ``cache_key``
   for a later TIR resume), refilled from waiting work at the next step.

Why the last prompt token is always fed by the decode step: prefill then never computes logits
(no LM head over prompt positions), and a prompt's n samples each feed that token in the same
batched step and sample with their own seeds.

On CUDA the cache is preallocated at full context and the decode forward is replayed as CUDA
graphs, one per batch bucket, captured once (``qwen_math.engine.graphs``,
``EngineConfig.static_decode``; attention reads each row's own length through a varlen kernel,
``qwen_math.engine.attention``; the padded static layout is tested eagerly on CPU, the graph
capture itself only runs on CUDA). The decode step has no host synchronisation before its one
device-to-host copy of the sampled ids (``_sampled_ids_to_host``).

What it deliberately does not do: tokenisation (the backend does it), preemption of running
rows, speculative decoding, or priorities (waiting work is first come, first served).
"""

from __future__ import annotations

import bisect
import logging
import resource
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch

from qwen_math.backends.base import drain
from qwen_math.engine.graphs import GraphDecoder
from qwen_math.engine.kv_cache import KVCache, free_memory_bytes, slots_that_fit
from qwen_math.engine.qwen2 import PrefillPiece, Qwen2Forward
from qwen_math.engine.sampling import SamplingBatch, host_to_device, sample_tokens
from qwen_math.engine.stops import Finish, StopChecker
from qwen_math.errors import UsageError

log = logging.getLogger(__name__)

#: a request waits for a prefix another row is still prefilling only to save this many tokens
#: (or its whole prompt).
WAIT_FOR_PREFIX_TOKENS = 16


@dataclass(frozen=True)
class EngineConfig:
    max_batch_size: int | None = None  # None: 64 on CPU, 256 on CUDA (then capped by memory)
    context_window: int = 4096
    # prompt tokens prefilled per step (all rows together). None: 2048 on CUDA, where they go
    # through one packed forward (a few ms at 1.5B), 512 on CPU (a step per chunk there is slow)
    prefill_chunk: int | None = None
    memory_fraction: float | None = None  # of free memory for the KV cache; None: 0.5 CPU, 0.85 CUDA
    ignore_eos: bool = False  # benchmarks only: decode exactly max_tokens tokens
    # static decode (qwen_math.engine.graphs): batch padded to buckets, attention over the whole
    # capacity, replayed as CUDA graphs on a GPU. None: on for CUDA, off on CPU (where it only
    # adds padding work; tests turn it on to check it gives the same tokens).
    static_decode: bool | None = None
    # prefill of several rows' chunks in one forward (matmuls over all their tokens at once).
    # None: on for CUDA, off on CPU (there a packed matmul changes a row's keys by an ulp with
    # the other rows, and "a request's tokens never depend on its batch" is exact on CPU).
    packed_prefill: bool | None = None


@dataclass(frozen=True)
class EngineRequest:
    request_id: str
    prompt_ids: tuple[int, ...]
    max_tokens: int
    seed: int
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = -1
    stop: tuple[str, ...] = ()
    cache_key: str | None = None


@dataclass(frozen=True)
class EngineResult:
    request_id: str
    finish: Finish
    prompt_tokens: int
    reused_tokens: int  # prompt tokens whose KV came from the cache instead of a prefill


@dataclass
class EngineStats:
    prefill_tokens: int = 0
    reused_tokens: int = 0
    decode_steps: int = 0
    decoded_tokens: int = 0
    kv_read_tokens: int = 0  # cache positions the decode steps attended to (for a roofline)
    peak_kv_bytes: int = 0
    peak_memory_bytes: int = 0  # accelerator peak on CUDA, process peak RSS on CPU


@dataclass
class Slot:
    """One row of the KV cache and what it holds."""

    index: int
    tokens: list[int] = field(default_factory=list)  # ids whose keys/values are in the row
    row: Row | None = None  # the request decoding here, if any
    parked_key: str | None = None  # a finished trajectory's cache_key, kept for its resume
    parked_at: int = 0


@dataclass
class Row:
    """A request in flight (like nanochat's RowState)."""

    request: EngineRequest
    slot: Slot
    pending: list[int]  # input tokens not yet in the cache; exactly 1 while decoding
    checker: StopChecker
    reused: int
    generated: list[int] = field(default_factory=list)


class Engine:
    """Continuous-batching generation over a ``Qwen2ForCausalLM``."""

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        decode_text: Callable[[Sequence[int]], str],
        eos_ids: frozenset[int],
        config: EngineConfig = EngineConfig(),
    ) -> None:
        self.config = config
        self.forward = Qwen2Forward(model, context_window=config.context_window)
        self.device = self.forward.device
        self.decode_text = decode_text
        self.eos_ids = frozenset() if config.ignore_eos else eos_ids
        self.cache = KVCache(
            self.forward.cache_shape,
            slots=self._slot_count(),
            context_window=config.context_window,
            device=self.device,
            preallocate=self._preallocate,
        )
        # with CUDA graphs the last slot is scratch space for the rows that pad a batch bucket
        usable = self.cache.slots - 1 if self._use_graphs and self.cache.slots > 1 else self.cache.slots
        self.slots = [Slot(i) for i in range(usable)]
        self.waiting: deque[EngineRequest] = deque()
        self.running: list[Row] = []
        self.stats = EngineStats()
        self._clock = 0
        self._row_chunk = 16 if self.device.type == "cpu" else None
        self._graphs = None
        # streaming (optional): called once per step with (request_id, token) for every row
        # that sampled a token and is still running; finished rows come back from ``step``
        self.on_tokens: Callable[[list[tuple[str, int]]], None] | None = None
        if usable < self.cache.slots:
            self._graphs = GraphDecoder(self.forward, self.cache, scratch_slot=self.cache.slots - 1,
                                        row_chunk=self._row_chunk)

    # -- public --------------------------------------------------------------------------

    def add(self, request: EngineRequest) -> None:
        prompt = len(request.prompt_ids)
        if prompt == 0:
            raise UsageError(f"request {request.request_id}: empty prompt")
        if prompt >= self.config.context_window:
            raise UsageError(
                f"request {request.request_id}: the prompt is {prompt} tokens; the context window "
                f"is {self.config.context_window} tokens (prompt + completion)"
            )
        self.waiting.append(request)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def step(self) -> list[EngineResult]:
        """Admit, prefill, decode one token for every ready row; return the rows that finished."""
        with torch.inference_mode():
            self._clock += 1
            self._admit_waiting()  # 1) admit, reusing cached prefixes
            self._prefill(self._prefill_budget)  # 2) chunked prefill
            ready = [row for row in self.running if len(row.pending) == 1]
            if not ready:
                return []
            tokens = self._decode(ready)  # 3) one batched decode step
            return self._advance(ready, tokens)  # 4) host-side stop checks, free slots

    def run(self, requests: Sequence[EngineRequest]) -> list[EngineResult]:
        """Generate every request to completion; results in request order."""
        return drain(requests, add=self.add, step=self.step, has_unfinished=self.has_unfinished)

    def clear_prefix_cache(self) -> None:
        """Forget every cached prefix and parked trajectory of idle slots (like vLLM's
        ``reset_prefix_cache``): later requests prefill from scratch. Benchmarks call it between
        repeats so that no repeat reuses an earlier one's prompts."""
        for slot in self.slots:
            if slot.row is None:
                slot.tokens = []
                slot.parked_key = None

    def peak_memory_bytes(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    # -- 1) admission ----------------------------------------------------------------------

    def _admit_waiting(self) -> None:
        """Fill free slots in arrival order; a request whose prefix is still being prefilled
        by another row waits (keeping its place) so it can copy that prefix next step.

        The longest prefix a request shares with any slot (and with what any prefilling row
        will hold) is found in two ``PrefixIndex``es built once per step: a binary search and
        at most four prefix comparisons per request, not one per slot."""
        if not (self.waiting and len(self.running) < len(self.slots)):
            return
        deferred: list[EngineRequest] = []
        held = PrefixIndex((s.tokens, s.index) for s in self.slots if s.tokens)
        coming = PrefixIndex((row.slot.tokens + row.pending[:-1], row.slot.index)
                             for row in self.running if len(row.pending) > 1)
        while self.waiting and len(self.running) < len(self.slots) and len(deferred) < len(self.slots):
            request = self.waiting.popleft()
            prompt = list(request.prompt_ids)
            if self._prefix_coming(prompt, held, coming):
                deferred.append(request)
                continue
            row = self._admit(request, prompt, held)
            if len(row.pending) > 1:
                coming.add(row.slot.tokens + row.pending[:-1], row.slot.index)
        self.waiting.extendleft(reversed(deferred))

    def _admit(self, request: EngineRequest, prompt: list[int], held: PrefixIndex) -> Row:
        """Place ``request`` in a slot, starting from the longest prefix any slot holds."""
        usable = len(prompt) - 1  # the last prompt token is fed by the decode step
        slot = self._parked_slot(request.cache_key) or self._free_slot(prompt)
        reused = common_prefix_length(slot.tokens, prompt, usable)
        source = held.longest(prompt, usable, exclude=slot.index)
        held.remove(slot.index)  # its tokens change below
        if source is not None and source[1] > reused:
            donor, reused = source
            self.cache.copy_prefix(source=donor, target=slot.index, length=reused)
            slot.tokens = prompt[:reused]
        else:
            del slot.tokens[reused:]
        if slot.tokens:
            held.add(slot.tokens, slot.index)
        slot.parked_key = None
        checker = StopChecker(
            decode=self.decode_text, stops=request.stop, eos_ids=self.eos_ids, max_tokens=request.max_tokens
        )
        row = Row(request, slot, pending=prompt[reused:], checker=checker, reused=reused)
        slot.row = row
        self.running.append(row)
        self.stats.reused_tokens += reused
        return row

    @staticmethod
    def _prefix_coming(prompt: list[int], held: PrefixIndex, coming: PrefixIndex) -> bool:
        """Wait when a row still prefilling will hold a longer prefix than any slot does now:
        the request's whole usable prompt (n samples of one prompt), or at least
        ``WAIT_FOR_PREFIX_TOKENS`` more of it. (Waiting a step to save a token or two would
        hold distinct prompts that share a system prompt back one step each, in chains.)"""
        usable = len(prompt) - 1
        best_coming = coming.longest(prompt, usable)
        if best_coming is None:
            return False
        best_held = held.longest(prompt, usable)
        now = best_held[1] if best_held else 0
        return best_coming[1] >= min(usable, now + WAIT_FOR_PREFIX_TOKENS) > now

    def _parked_slot(self, cache_key: str | None) -> Slot | None:
        if cache_key is None:
            return None
        return next((s for s in self.slots if s.parked_key == cache_key and s.row is None), None)

    def _free_slot(self, prompt: list[int]) -> Slot:
        """A free slot (the caller checked there is room), preferring one whose own tokens share
        the prompt's prefix; when only parked slots are left, the least recently parked goes."""
        free = [s for s in self.slots if s.row is None and s.parked_key is None]
        if not free:
            victim = min((s for s in self.slots if s.row is None), key=lambda s: s.parked_at)
            victim.parked_key = None
            free = [victim]
        shared = {s.index: common_prefix_length(s.tokens, prompt, len(prompt)) for s in free if s.tokens}
        best = max(free, key=lambda s: (shared.get(s.index, 0), -s.index))
        if shared.get(best.index, 0) == 0:
            best = min(free, key=lambda s: s.index)  # keep the batch dense at low slot indices
        return best

    # -- 2) prefill ------------------------------------------------------------------------

    def _prefill(self, budget: int) -> None:
        """Feed up to ``budget`` pending prompt tokens, in arrival order of the rows: packed into
        one forward (``Qwen2Forward.prefill_many``) where ``packed_prefill`` is on, else one
        forward per chunk (CPU: a row's keys/values then never depend on the other rows)."""
        pieces: list[tuple[Row, list[int]]] = []
        for row in self.running:
            if budget <= 0:
                break
            if len(row.pending) > 1:
                chunk = row.pending[: min(budget, len(row.pending) - 1)]
                pieces.append((row, chunk))
                budget -= len(chunk)
        if not pieces:
            return
        self.cache.ensure_capacity(max(len(row.slot.tokens) + len(chunk) for row, chunk in pieces))
        chunks = [PrefillPiece(row.slot.index, host_to_device(torch.tensor(chunk, dtype=torch.int64), self.device),
                               len(row.slot.tokens)) for row, chunk in pieces]
        for group in ([chunks] if self._packed_prefill else [[chunk] for chunk in chunks]):
            self.forward.prefill_many(self.cache, group)
        for row, chunk in pieces:
            row.slot.tokens.extend(chunk)
            del row.pending[: len(chunk)]
            self.stats.prefill_tokens += len(chunk)

    # -- 3) decode -------------------------------------------------------------------------

    def _decode(self, ready: list[Row]) -> list[int]:
        ready.sort(key=lambda row: row.slot.index)
        positions = [len(row.slot.tokens) for row in ready]
        self.cache.ensure_capacity(max(positions) + 1)
        slots = [row.slot.index for row in ready]
        rows = [
            (r.request.temperature, r.request.top_p, r.request.top_k, r.request.seed, p + 1)
            for r, p in zip(ready, positions, strict=True)
        ]
        logits = self._logits(slots, [row.pending[0] for row in ready], positions)
        if self._graphs is not None:  # sampling replayed as a graph over the forward's logits
            tokens = self._graphs.sample(rows)
        else:
            params = SamplingBatch.build(rows, self.device)
            tokens = sample_tokens(logits[: len(ready)], params, row_chunk=self._row_chunk)
        self.stats.decode_steps += 1
        self.stats.decoded_tokens += len(ready)
        self.stats.kv_read_tokens += sum(positions) + len(positions)
        return self._sampled_ids_to_host(tokens)

    def _sampled_ids_to_host(self, tokens: torch.Tensor) -> list[int]:
        """The step's one device-to-host transfer: the sampled ids, in ``ready`` order.

        Everything before it is queued on the device without a sync; a per-step hook that
        wants the new ids (streaming) belongs here."""
        return tokens.tolist()

    def _logits(self, slots: list[int], tokens: list[int], positions: list[int]) -> torch.Tensor:
        if self._graphs is not None:
            return self._graphs(slots, tokens, positions)
        as_tensor = lambda values: host_to_device(torch.tensor(values, dtype=torch.int64), self.device)  # noqa: E731
        return self.forward.decode(
            self.cache,
            slots=as_tensor(slots),
            tokens=as_tensor(tokens),
            positions=as_tensor(positions),
            span=max(positions) + 1,
            contiguous=slots == list(range(len(slots))),
            host_rows=[(slot, position + 1) for slot, position in zip(slots, positions, strict=True)],
        )

    # -- 4) bookkeeping --------------------------------------------------------------------

    def _advance(self, ready: list[Row], tokens: list[int]) -> list[EngineResult]:
        finished = []
        for row, token in zip(ready, tokens, strict=True):
            row.slot.tokens.append(row.pending[0])
            row.pending = [token]
            row.generated.append(token)
            total = len(row.request.prompt_ids) + len(row.generated)
            finish = row.checker.check(row.generated, context_full=total >= self.config.context_window)
            if finish is not None:
                finished.append(self._release(row, finish))
        if finished or self.stats.decode_steps == 1:  # allocator statistics cost ~ms on CUDA: not every step
            self._update_peaks()
        if self.on_tokens is not None:
            self._emit_tokens(ready, tokens, finished)
        return finished

    def _release(self, row: Row, finish: Finish) -> EngineResult:
        self.running.remove(row)
        slot = row.slot
        slot.row = None
        if row.request.cache_key is not None:
            slot.parked_key = row.request.cache_key
            slot.parked_at = self._clock
        return EngineResult(row.request.request_id, finish, len(row.request.prompt_ids), row.reused)

    # -- streaming and cancellation (optional; outside the decode path) ----------------------

    def _emit_tokens(self, ready: list[Row], tokens: list[int], finished: list[EngineResult]) -> None:
        """Hand this step's sampled ids (the list from the one host transfer) to ``on_tokens``."""
        done = {result.request_id for result in finished}
        pairs = [(row.request.request_id, token) for row, token in zip(ready, tokens, strict=True)
                 if row.request.request_id not in done]
        if pairs:
            self.on_tokens(pairs)

    def abort(self, request_id: str) -> bool:
        """Drop a waiting or running request and free its slot; False when it is not here.

        The slot's cached tokens stay reusable as a prefix; nothing is parked for a resume.
        """
        for request in self.waiting:
            if request.request_id == request_id:
                self.waiting.remove(request)
                return True
        for row in self.running:
            if row.request.request_id == request_id:
                self.running.remove(row)
                row.slot.row = None
                return True
        return False

    def _update_peaks(self) -> None:
        self.stats.peak_kv_bytes = max(self.stats.peak_kv_bytes, self.cache.peak_bytes)
        self.stats.peak_memory_bytes = self.peak_memory_bytes()

    # -- sizing and CUDA graphs ------------------------------------------------------------

    def _slot_count(self) -> int:
        cuda = self.device.type == "cuda"
        wanted = self.config.max_batch_size or (256 if cuda else 64)
        fraction = self.config.memory_fraction or (0.85 if cuda else 0.5)
        budget = int(free_memory_bytes(self.device) * fraction)
        return slots_that_fit(
            self.forward.cache_shape, context_window=self.config.context_window, budget_bytes=budget, wanted=wanted,
            grows=not self._preallocate,
        )

    @property
    def _preallocate(self) -> bool:
        """CUDA: the whole context per slot up front, so graphs never see the cache move."""
        return self.device.type == "cuda"

    def _setting(self, value, *, cuda, cpu):
        """A config field, or its device default when it is None."""
        if value is not None:
            return value
        return cuda if self.device.type == "cuda" else cpu

    @property
    def _prefill_budget(self) -> int:
        return self._setting(self.config.prefill_chunk, cuda=2048, cpu=512)

    @property
    def _packed_prefill(self) -> bool:
        return self._setting(self.config.packed_prefill, cuda=True, cpu=False)

    @property
    def _use_graphs(self) -> bool:
        return self._setting(self.config.static_decode, cuda=True, cpu=False)


class PrefixIndex:
    """Token sequences (each with a key: a slot index) kept in sorted order, so that the one
    sharing the longest prefix with a query sits next to the query's insertion point: for
    sorted sequences, the shared prefix only shrinks moving away from it. A query costs a
    binary search (C-speed list compares) and at most four prefix comparisons, whatever the
    number of sequences. The sequences are the caller's lists, not copies: one must be removed
    before it changes and added again after."""

    def __init__(self, items: Iterable[tuple[list[int], int]] = ()) -> None:
        self.entries = sorted(items, key=_tokens_of)

    def add(self, tokens: list[int], key: int) -> None:
        bisect.insort(self.entries, (tokens, key), key=_tokens_of)

    def remove(self, key: int) -> None:
        self.entries = [entry for entry in self.entries if entry[1] != key]

    def longest(self, query: list[int], limit: int, *, exclude: int | None = None) -> tuple[int, int] | None:
        """(key, shared length <= ``limit``) of the sequence sharing the longest non-empty
        prefix with ``query`` (of equal ones near the insertion point, the lower key), or None.
        With ``exclude`` one key is skipped; the best of the rest is then still within two
        places of the insertion point."""
        at = bisect.bisect_left(self.entries, query, key=_tokens_of)
        best: tuple[int, int] | None = None
        for tokens, key in self.entries[max(0, at - 2): at + 2]:
            if key == exclude:
                continue
            length = common_prefix_length(tokens, query, limit)
            if length and (best is None or (length, -key) > (best[1], -best[0])):
                best = (key, length)
        return best


def _tokens_of(entry: tuple[list[int], int]) -> list[int]:
    return entry[0]


def common_prefix_length(a: Sequence[int], b: Sequence[int], limit: int) -> int:
    """Length of the longest common prefix of two token lists, at most ``limit``.

    Binary search over slice equality (C-speed list compares) instead of a Python loop.
    """
    n = min(len(a), len(b), limit)
    if n <= 0 or a[0] != b[0]:
        return 0
    if a[:n] == b[:n]:
        return n
    low, high = 1, n  # a[:low] == b[:low], a[:high] != b[:high]
    while high - low > 1:
        middle = (low + high) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle
    return low
