"""The decode engine on a tiny random Qwen2 model (fp32, CPU): each test checks one property.

- the compact forward's logits equal transformers' forward (prefill in chunks, every decode
  step, batched rows in any slots);
- greedy decoding is token-identical to ``model.generate``;
- a sample's tokens do not depend on the rest of the batch; n-sample prefix sharing, TIR
  resume and chunked prefill give the same tokens as recomputing from scratch;
- EOS, stop strings, max_tokens and the context window end a sequence correctly;
- the sampler: counter-based uniforms, exact nucleus/top-k distribution, batch independence;
- the KV cache refuses a budget too small for one sequence with a clear error.
"""

from __future__ import annotations

import random

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from qwen_math.engine.engine import (  # noqa: E402
    Engine,
    EngineConfig,
    EngineRequest,
    PrefixIndex,
    common_prefix_length,
)
from qwen_math.engine.kv_cache import CacheShape, KVCache, slots_that_fit  # noqa: E402
from qwen_math.engine.qwen2 import PrefillPiece, Qwen2Forward  # noqa: E402
from qwen_math.engine.sampling import (  # noqa: E402
    SamplingBatch,
    sample_tokens,
    sort_position_reference,
    splitmix64,
    uniform,
)
from qwen_math.errors import EnvironmentUnavailable, UsageError  # noqa: E402

VOCAB = 151936
SAMPLED = {"temperature": 0.7, "top_p": 0.8}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread: the tiny shape gains nothing from two, and on a shared 2-core
    machine thread hand-offs make each op 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from qwen_math.tiny import SHAPES, model_config

    torch.manual_seed(0)
    config = Qwen2Config(**model_config(SHAPES["tiny"]))
    tiny = Qwen2ForCausalLM(config).eval()
    with torch.no_grad():  # random biases and norms, so every parameter path is exercised
        for name, parameter in tiny.named_parameters():
            if name.endswith("bias") or "norm" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return tiny


def byte_decode(ids) -> str:
    """A stand-in detokeniser: each id is one character (enough for stop-string logic)."""
    return "".join(chr(0x4E00 + i % 20000) if i >= 128 else chr(i) for i in ids)


def make_engine(model, **config) -> Engine:
    eos = config.pop("eos_ids", frozenset())
    return Engine(model, decode_text=byte_decode, eos_ids=eos, config=EngineConfig(**config))


def prompt(seed: int, length: int) -> tuple[int, ...]:
    rng = random.Random(seed)
    return tuple(rng.randrange(VOCAB) for _ in range(length))


def request(name, ids, *, max_tokens=12, seed=0, **sampling) -> EngineRequest:
    return EngineRequest(name, tuple(ids), max_tokens=max_tokens, seed=seed, **sampling)


def tokens_of(results) -> list[tuple[int, ...]]:
    return [r.finish.token_ids for r in results]


# ---------------------------------------------------------------------------------------
# the forward pass equals transformers' forward
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunks", [(23,), (7, 9, 7), (1, 22)])
def test_prefill_and_every_decode_step_match_transformers(model, chunks):
    ids = torch.tensor(prompt(1, 40))
    with torch.inference_mode():
        reference = model(ids[None]).logits[0]  # [40, V]
        forward = Qwen2Forward(model, context_window=4096)
        cache = KVCache(forward.cache_shape, slots=3, context_window=4096, device=torch.device("cpu"))
        cache.ensure_capacity(64)
        start = 0
        for size in chunks:
            forward.prefill(cache, slot=2, tokens=ids[start:start + size], start=start)
            start += size
        for position in range(start, 40):
            logits = forward.decode(
                cache, slots=torch.tensor([2]), tokens=ids[position:position + 1],
                positions=torch.tensor([position]), span=position + 1, contiguous=False,
            )
            torch.testing.assert_close(logits[0], reference[position], atol=1e-4, rtol=0)


def test_batched_decode_rows_match_transformers(model):
    # three sequences of different lengths decoded together, in slots 0..2 (sliced) and 2,0,1
    prompts = [torch.tensor(prompt(i, n)) for i, n in ((2, 9), (3, 15), (4, 4))]
    with torch.inference_mode():
        references = [model(p[None]).logits[0, -1] for p in prompts]
        forward = Qwen2Forward(model, context_window=4096)
        for slots, contiguous in (([0, 1, 2], True), ([2, 0, 1], False)):
            cache = KVCache(forward.cache_shape, slots=3, context_window=4096, device=torch.device("cpu"))
            cache.ensure_capacity(32)
            for slot, p in zip(slots, prompts, strict=True):
                forward.prefill(cache, slot=slot, tokens=p[:-1], start=0)
            positions = torch.tensor([len(p) - 1 for p in prompts])
            logits = forward.decode(
                cache, slots=torch.tensor(slots), tokens=torch.stack([p[-1] for p in prompts]),
                positions=positions, span=int(positions.max()) + 1, contiguous=contiguous,
            )
            for row, reference in enumerate(references):
                torch.testing.assert_close(logits[row], reference, atol=1e-4, rtol=0)


def test_packed_prefill_of_several_sequences_then_decode_matches_transformers(model):
    # three chunks of different sequences in one pass: slot 2 from 0, slot 0 from 0, slot 1
    # continuing at position 5 (its first 5 positions prefilled alone before)
    prompts = [torch.tensor(prompt(i, n)) for i, n in ((70, 12), (71, 7), (72, 16))]
    with torch.inference_mode():
        references = [model(p[None]).logits[0, -1] for p in prompts]
        forward = Qwen2Forward(model, context_window=4096)
        cache = KVCache(forward.cache_shape, slots=3, context_window=4096, device=torch.device("cpu"))
        cache.ensure_capacity(32)
        forward.prefill(cache, slot=1, tokens=prompts[2][:5], start=0)
        forward.prefill_many(cache, [PrefillPiece(2, prompts[0][:-1], 0), PrefillPiece(0, prompts[1][:-1], 0),
                                     PrefillPiece(1, prompts[2][5:-1], 5)])
        positions = torch.tensor([len(p) - 1 for p in prompts])
        logits = forward.decode(cache, slots=torch.tensor([2, 0, 1]), tokens=torch.stack([p[-1] for p in prompts]),
                                positions=positions, span=int(positions.max()) + 1, contiguous=False)
        for row, reference in enumerate(references):
            torch.testing.assert_close(logits[row], reference, atol=1e-4, rtol=0)


def test_fused_projections_are_views_of_the_models_own_parameters(model):
    attn = model.model.layers[0].self_attn
    with torch.inference_mode():
        ids = torch.tensor([prompt(73, 9)])
        before = model(ids).logits
        first = Qwen2Forward(model, context_window=4096).layers[0]
        second = Qwen2Forward(model, context_window=4096).layers[0]  # a second engine on the same model
        assert torch.equal(model(ids).logits, before)  # the model computes exactly as before
    assert first.qkv.data_ptr() == second.qkv.data_ptr() == attn.q_proj.weight.data_ptr()  # no copy
    rows = attn.q_proj.weight.shape[0]
    assert torch.equal(first.qkv[rows:rows + attn.k_proj.weight.shape[0]], attn.k_proj.weight)
    assert torch.equal(first.qkv_bias[-attn.v_proj.bias.shape[0]:], attn.v_proj.bias)
    assert isinstance(attn.q_proj.weight, torch.nn.Parameter)


def test_a_decode_layer_issues_few_ops():
    """Kernel count per layer bounds a GPU decode step (each op is a launch inside the graph):
    the static step of a layer stays at about 20 compute ops (views are free; the SDPA path run
    here gathers k and v, two ops the CUDA varlen kernel does not need). It was 46 (66 with
    views) before the fused projections, joint RoPE, residuals in the matmuls, one-op RMSNorm
    and the per-step attention plan; it is 19 (33 with views)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from qwen_math.tiny import SHAPES, model_config

    views = {"view", "_unsafe_view", "slice", "select", "transpose", "unsqueeze", "chunk", "split", "expand",
             "as_strided", "t", "detach", "detach_", "alias", "lift_fresh", "unbind", "permute", "_reshape_alias"}

    class CountOps(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops += func.overloadpacket.__name__ not in views
            return func(*args, **(kwargs or {}))

    def ops_per_step(layers: int) -> int:
        config = model_config(SHAPES["tiny"]) | {"num_hidden_layers": layers}
        forward = Qwen2Forward(Qwen2ForCausalLM(Qwen2Config(**config)).eval(), context_window=64)
        cache = KVCache(forward.cache_shape, slots=4, context_window=64, device=torch.device("cpu"),
                        preallocate=True)
        with torch.inference_mode(), CountOps() as counter:
            forward.decode_static(cache.keys, cache.values, torch.tensor([0, 2]), torch.tensor([5, 6]),
                                  torch.tensor([3, 9]))
        return counter.ops

    per_layer = (ops_per_step(6) - ops_per_step(2)) / 4
    assert per_layer <= 20, per_layer


@pytest.mark.parametrize("shape", ["1.5b", "7b"])
def test_the_cuda_code_path_runs_at_the_released_shapes_on_the_meta_device(shape, monkeypatch):
    """What only a GPU runs (varlen decode attention, packed prefill, the sort sampler), in bf16
    at the released models' shapes, on the meta device (shapes and dtypes, no memory, no
    values): a shape or dtype slip in those branches fails here, not on scarce GPU time. The
    varlen kernel is the one ``decode_attention`` picks on CUDA (its self-check needs values)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from qwen_math.engine import qwen2
    from qwen_math.engine.attention import ATTENTION
    from qwen_math.engine.sampling import batch_flags, pack_rows
    from qwen_math.tiny import SHAPES, model_config

    monkeypatch.setattr(qwen2, "decode_attention", lambda device, **_: ("varlen", ATTENTION["varlen"]))
    meta = torch.device("meta")
    with meta:
        model = Qwen2ForCausalLM(Qwen2Config(**model_config(SHAPES[shape]))).to(torch.bfloat16)
    vocab = model.config.vocab_size
    forward = Qwen2Forward(model, context_window=4096)
    cache = KVCache(forward.cache_shape, slots=6, context_window=4096, device=meta, preallocate=True)
    with torch.inference_mode():
        forward.prefill_many(cache, [PrefillPiece(0, torch.zeros(30, dtype=torch.long, device=meta), 0),
                                     PrefillPiece(3, torch.zeros(17, dtype=torch.long, device=meta), 5),
                                     PrefillPiece(5, torch.ones(1, dtype=torch.long, device=meta), 0)])
        rows = [(0.0, 1.0, -1, 0, 0), (0.7, 0.8, -1, 1, 3), (0.7, 0.9, 20, 2, 9), (1.0, 1.0, 5, 3, 4)]
        logits = forward.decode_static(cache.keys, cache.values, torch.tensor([3, 0, 5, 1], device=meta),
                                       torch.zeros(4, dtype=torch.long, device=meta),
                                       torch.tensor([22, 30, 1, 0], device=meta))
        tokens = sample_tokens(logits, SamplingBatch.from_buffers(pack_rows(rows).to(meta), batch_flags(rows)),
                               method="sort")
    assert forward.static_attention_name == "varlen"
    assert cache.keys.dtype == torch.bfloat16 and cache.keys.shape[2] == 4096
    assert logits.shape == (4, vocab) and logits.dtype == torch.float32 and logits.device == meta
    assert tokens.shape == (4,) and tokens.dtype == torch.int64


def test_greedy_is_token_identical_to_generate(model):
    prompts = [prompt(5, 6), prompt(6, 17), prompt(7, 11)]
    results = make_engine(model).run([request(f"g{i}", p, max_tokens=20) for i, p in enumerate(prompts)])
    with torch.inference_mode():
        for p, result in zip(prompts, results, strict=True):
            out = model.generate(torch.tensor([p]), max_new_tokens=20, do_sample=False,
                                 eos_token_id=None, pad_token_id=0)
            assert list(result.finish.token_ids) == out[0, len(p):].tolist()


# ---------------------------------------------------------------------------------------
# batch independence, prefix sharing, TIR resume, chunked prefill
# ---------------------------------------------------------------------------------------


# the CPU decode's matmul: a row of a batch is bitwise the row alone (which runs its blocks as one
# batched matmul), with and without a remainder block, a bias and a [B, n] residual
@pytest.mark.parametrize("n,k,block_bytes", [(1000, 300, 2 << 20), (1000, 64, 4096), (1024, 64, 4096),
                                             (7, 64, 4096), (96, 896, 65536)])
def test_rowwise_linear_row_alone_is_bitwise_the_row_in_a_batch(n, k, block_bytes, monkeypatch):
    from qwen_math.engine import qwen2

    monkeypatch.setattr(qwen2, "ROWWISE_BLOCK_BYTES", block_bytes)
    torch.manual_seed(4)
    x, weight, bias, residual = torch.randn(6, k), torch.randn(n, k), torch.randn(n), torch.randn(6, n)
    together = qwen2.rowwise_linear(x, weight, bias)
    with_residual = qwen2.rowwise_linear(x, weight, residual)
    for row in range(6):
        assert torch.equal(qwen2.rowwise_linear(x[row:row + 1], weight, bias), together[row:row + 1])
        assert torch.equal(qwen2.rowwise_linear(x[row:row + 1], weight, residual[row:row + 1]),
                           with_residual[row:row + 1])
    torch.testing.assert_close(together, torch.nn.functional.linear(x, weight, bias), rtol=1e-5, atol=1e-4)


def test_sample_does_not_depend_on_batch_composition(model):
    target = request("t", prompt(8, 12), seed=1234, max_tokens=16, **SAMPLED)
    alone = make_engine(model).run([target])
    others = [request(f"o{i}", prompt(20 + i, 5 + 3 * i), seed=i, max_tokens=4 + i, **SAMPLED) for i in range(6)]
    crowded = make_engine(model).run([*others[:3], target, *others[3:]])
    assert tokens_of(alone) == tokens_of([crowded[3]])


# regression (QWEN_MATH_KILL_SEED=633597039 resume test, /work/notes/bc.py): on CPU a padded
# batched attention span and a GEMM whose blocking depends on the row count made a row's decode
# logits differ by an ulp from the same row alone; top_p < 1 on a near-flat distribution then
# picked another token. Rows: prompt index per row (n samples of prompt 0, then of prompt 1).
@pytest.mark.parametrize("rows", [(0, 0, 0, 0, 1, 1, 1, 1), (1, 0), (0, 1, 1), (1, 1, 1, 1, 1)])
def test_decode_logits_of_a_row_are_bitwise_those_of_the_row_alone(model, rows):
    prompts = [torch.tensor(prompt(40, 21)), torch.tensor(prompt(41, 33))]

    def decode(layout):
        cache = KVCache(forward.cache_shape, slots=len(layout), context_window=4096, device=torch.device("cpu"))
        cache.ensure_capacity(64)
        for slot, which in enumerate(layout):
            forward.prefill(cache, slot=slot, tokens=prompts[which][:-1], start=0)
        positions = torch.tensor([len(prompts[which]) - 1 for which in layout])
        return forward.decode(
            cache, slots=torch.arange(len(layout)), tokens=torch.stack([prompts[which][-1] for which in layout]),
            positions=positions, span=int(positions.max()) + 1, contiguous=True,
        ).clone()

    with torch.inference_mode():
        forward = Qwen2Forward(model, context_window=4096)
        together = decode(rows)
        for row, which in enumerate(rows):
            assert torch.equal(together[row], decode((which,))[0]), f"row {row} differs from itself alone"


@pytest.mark.parametrize("top_p", [0.8, 0.95])
def test_n_samples_of_two_prompts_with_top_p_match_each_request_alone(model, top_p):
    prompts = [prompt(42, 14), prompt(43, 23)]
    requests = [request(f"p{j}s{i}", prompts[j], seed=1000 * j + i, max_tokens=16, temperature=0.7, top_p=top_p)
                for j in range(2) for i in range(4)]
    together = make_engine(model).run(requests)
    alone = [make_engine(model).run([r])[0] for r in requests]
    assert tokens_of(together) == tokens_of(alone)


def test_n_samples_share_the_prefill_and_match_separate_runs(model):
    shared = prompt(9, 30)
    samples = [request(f"s{i}", shared, seed=100 + i, max_tokens=10, **SAMPLED) for i in range(4)]
    engine = make_engine(model)
    together = engine.run(samples)
    assert engine.stats.prefill_tokens == len(shared) - 1  # the prompt was prefilled once
    assert [r.reused_tokens for r in together] == [0, 29, 29, 29]
    separately = [make_engine(model).run([s])[0] for s in samples]
    assert tokens_of(together) == tokens_of(separately)
    assert len(set(tokens_of(together))) == 4  # different seeds, different samples


def test_tir_resume_reuses_the_kept_cache_and_matches_recompute(model):
    first = request("turn1", prompt(10, 20), seed=7, max_tokens=8, cache_key="traj", **SAMPLED)
    engine = make_engine(model)
    (turn1,) = engine.run([first])
    transcript = first.prompt_ids + turn1.finish.token_ids + prompt(11, 6)  # + tool output tokens
    second = request("turn2", transcript, seed=7, max_tokens=8, cache_key="traj", **SAMPLED)
    prefilled_before = engine.stats.prefill_tokens
    (resumed,) = engine.run([second])
    assert resumed.reused_tokens == len(first.prompt_ids) + len(turn1.finish.token_ids) - 1
    assert engine.stats.prefill_tokens - prefilled_before == 6  # only the appended tokens
    assert tokens_of([resumed]) == tokens_of(make_engine(model).run([second]))


def test_parked_trajectory_evicted_for_new_work_still_resumes_correctly(model):
    engine = make_engine(model, max_batch_size=1)
    first = request("a1", prompt(50, 10), seed=1, max_tokens=4, cache_key="a", **SAMPLED)
    (turn1,) = engine.run([first])
    engine.run([request("b", prompt(51, 10), seed=2, max_tokens=4, cache_key="b", **SAMPLED)])  # evicts "a"
    second = request("a2", first.prompt_ids + turn1.finish.token_ids + prompt(52, 3), seed=1, max_tokens=4,
                     cache_key="a", **SAMPLED)
    assert tokens_of(engine.run([second])) == tokens_of(make_engine(model).run([second]))


def test_a_long_queue_does_not_slow_a_step(model):
    import time

    engine = make_engine(model, max_batch_size=4)
    shared = prompt(53, 40)
    for i in range(3000):
        engine.add(request(f"q{i}", shared, seed=i, max_tokens=1, **SAMPLED))
    start = time.perf_counter()
    for _ in range(3):
        engine.step()
    assert time.perf_counter() - start < 3.0
    # step 1 prefills the shared prompt once (the others wait for it); steps 2-3 copy it, 4 each
    assert len(engine.waiting) == 3000 - 9


def test_chunked_prefill_gives_the_same_tokens(model):
    long = request("long", prompt(12, 60), seed=3, max_tokens=10, **SAMPLED)
    short = request("short", prompt(13, 5), seed=4, max_tokens=10, **SAMPLED)
    whole = make_engine(model).run([long, short])
    chunked = make_engine(model, prefill_chunk=7).run([long, short])
    assert tokens_of(whole) == tokens_of(chunked)


def test_static_decode_gives_the_same_tokens(model):
    # the CUDA-graph layout (padded batch buckets, attention over the whole capacity), run eagerly
    requests = [request(f"p{i}", prompt(40 + i, 4 + 5 * i), seed=i, max_tokens=6, **SAMPLED) for i in range(3)]
    static = make_engine(model, static_decode=True)
    assert len(static.slots) == static.cache.slots - 1  # the last slot pads the buckets
    assert tokens_of(static.run(requests)) == tokens_of(make_engine(model).run(requests))


def test_packed_prefill_gives_the_same_greedy_tokens(model):
    # the CUDA default (several rows' prompt chunks in one forward), run on CPU; greedy, since a
    # packed matmul may move a key by an ulp (which sampling at top_p < 1 could turn into a token)
    requests = [request(f"k{i}", prompt(80 + i, 5 + 7 * i), seed=i, max_tokens=8) for i in range(4)]
    packed = make_engine(model, packed_prefill=True, prefill_chunk=24)
    assert tokens_of(packed.run(requests)) == tokens_of(make_engine(model).run(requests))
    assert packed.stats.prefill_tokens == sum(len(r.prompt_ids) - 1 for r in requests)


def test_continuous_batching_refills_freed_slots(model):
    requests = [request(f"c{i}", prompt(30 + i, 6), seed=i, max_tokens=3 + i % 4, **SAMPLED) for i in range(7)]
    engine = make_engine(model, max_batch_size=2)
    results = engine.run(requests)
    assert [len(r.finish.token_ids) for r in results] == [3 + i % 4 for i in range(7)]
    assert tokens_of(results) == tokens_of(make_engine(model).run(requests))


# ---------------------------------------------------------------------------------------
# stop conditions
# ---------------------------------------------------------------------------------------


def test_max_tokens_ends_with_length(model):
    (result,) = make_engine(model).run([request("m", prompt(14, 5), max_tokens=5)])
    assert (result.finish.reason, len(result.finish.token_ids)) == ("length", 5)


def test_eos_ends_the_sequence_and_is_not_in_the_text(model):
    ids = prompt(15, 8)
    (free,) = make_engine(model).run([request("e", ids, max_tokens=10)])
    eos = free.finish.token_ids[3]
    (stopped,) = make_engine(model, eos_ids=frozenset({eos})).run([request("e", ids, max_tokens=10)])
    first = free.finish.token_ids.index(eos)
    assert stopped.finish.reason == "eos"
    assert stopped.finish.token_ids == free.finish.token_ids[: first + 1]
    assert stopped.finish.text == byte_decode(free.finish.token_ids[:first])


def test_eos_ignored_when_configured(model):
    ids = prompt(15, 8)
    (free,) = make_engine(model).run([request("e", ids, max_tokens=10)])
    config = {"eos_ids": frozenset(free.finish.token_ids), "ignore_eos": True}
    (result,) = make_engine(model, **config).run([request("e", ids, max_tokens=10)])
    assert result.finish.reason == "length" and len(result.finish.token_ids) == 10


@pytest.mark.parametrize("start,length", [(2, 1), (3, 2), (0, 4)])  # one token, across tokens, at once
def test_stop_string_cuts_the_text_before_it(model, start, length):
    ids = prompt(16, 8)
    (free,) = make_engine(model).run([request("s", ids, max_tokens=12, seed=5, **SAMPLED)])
    full = byte_decode(free.finish.token_ids)  # one character per token
    stop = full[start:start + length]
    stopped = request("s", ids, max_tokens=12, seed=5, stop=("never", stop), **SAMPLED)
    (result,) = make_engine(model).run([stopped])
    assert (result.finish.reason, result.finish.stop_string) == ("stop", stop)
    assert result.finish.text == full[: full.index(stop)]
    assert result.finish.token_ids == free.finish.token_ids[: full.index(stop) + length]


def test_context_window_full_ends_with_length(model):
    (result,) = make_engine(model, context_window=40).run([request("w", prompt(17, 30), max_tokens=100)])
    assert (result.finish.reason, len(result.finish.token_ids)) == ("length", 10)


@pytest.mark.parametrize("ids,message", [((), "empty prompt"), (tuple(range(40)), "context window")])
def test_prompts_that_cannot_run_are_refused(model, ids, message):
    with pytest.raises(UsageError, match=message):
        make_engine(model, context_window=40).add(request("bad", ids))


# ---------------------------------------------------------------------------------------
# sampling
# ---------------------------------------------------------------------------------------


def splitmix64_reference(x: int) -> int:
    mask = (1 << 64) - 1
    x = (x + 0x9E3779B97F4A7C15) & mask
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & mask
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & mask
    return x ^ (x >> 31)


def test_splitmix64_matches_the_reference():
    values = [0, 1, 12345, 2**63 - 1, 2**64 - 1, 0xDEADBEEFCAFEF00D]
    assert [splitmix64(v) for v in values] == [splitmix64_reference(v) for v in values]
    assert splitmix64(0) == 0xE220A8397B1DCDAF  # the published first output of SplitMix64(seed 0)


def test_uniforms_are_uniform_and_depend_on_seed_and_position():
    draws = torch.tensor([uniform(seed, 7) for seed in range(100_000)], dtype=torch.float64)
    assert float(draws.min()) >= 0.0 and float(draws.max()) < 1.0
    assert abs(float(draws.mean()) - 0.5) < 0.005 and abs(float(draws.var()) - 1 / 12) < 0.002
    assert uniform(1, 2) == uniform(1, 2) != uniform(1, 3) != uniform(2, 2)
    assert uniform(-1, 5) == uniform(2**64 - 1, 5)  # seeds fold into 64 bits


def batch(rows: int, *, temperature=1.0, top_p=1.0, top_k=-1, seed0=0, position=5) -> SamplingBatch:
    return SamplingBatch.build(
        [(temperature, top_p, top_k, seed0 + i, position) for i in range(rows)], torch.device("cpu")
    )


def empirical(logits: torch.Tensor, params: SamplingBatch, *, row_chunk=None, method=None) -> torch.Tensor:
    tokens = sample_tokens(logits.expand(params.uniform.shape[0], -1).contiguous(), params, row_chunk=row_chunk,
                           method=method)
    return torch.bincount(tokens, minlength=logits.shape[-1]).double() / tokens.shape[0]


# probabilities 0.4 0.25 0.15 0.1 0.05 0.05 (+ two impossible tokens)
PROBS = torch.tensor([0.4, 0.25, 0.15, 0.1, 0.05, 0.05, 0.0, 0.0])


@pytest.mark.parametrize(
    "top_p,top_k,kept",
    [
        (1.0, -1, 6),  # plain sampling
        (0.6, -1, 2),  # 0.4 < 0.6 <= 0.65: the nucleus is the top two
        (0.8, -1, 4),  # 0.8 reached within four tokens (0.9)
        (0.9, 3, 3),  # top-k first, then the nucleus of the renormalised three
    ],
)
@pytest.mark.parametrize("method", ["select", "sort"])
def test_sampler_draws_from_the_exact_truncated_distribution(top_p, top_k, kept, method):
    logits = PROBS.clamp(min=1e-30).log()[None]
    draws = 20000
    freq = empirical(logits, batch(draws, top_p=top_p, top_k=top_k), row_chunk=4096, method=method)
    target = torch.zeros_like(PROBS)
    target[:kept] = PROBS[:kept] / PROBS[:kept].sum()
    assert torch.all(freq[kept:] == 0)
    assert torch.allclose(freq, target.double(), atol=0.015)


# tied and near-tied probabilities (bf16 logits tie often): 200k draws against the brute-force
# sort-position definition (stable sort, ties by lower token id), within 4 standard errors
TIED = torch.tensor([0.1, 0.2, 0.1, 0.05, 0.2, 0.1, 0.05, 0.1 + 1e-7, 0.05, 0.05 - 1e-7, 0.0])


@pytest.mark.parametrize("method", ["select", "sort"])  # CPU default, CUDA default
@pytest.mark.parametrize("top_p", [0.1, 0.5, 0.8, 0.95])
@pytest.mark.parametrize("top_k", [-1, 5])
def test_tied_probabilities_follow_the_sort_position_definition(top_p, top_k, method):
    draws = 200_000
    probs = TIED / TIED.sum()
    logits = probs.clamp(min=1e-30).log()[None]
    freq = empirical(logits, batch(draws, top_p=top_p, top_k=top_k), row_chunk=8192, method=method)
    target = sort_position_reference(probs, top_p, top_k)
    assert torch.all(freq[target == 0] == 0)
    standard_error = (target * (1 - target) / draws).sqrt()
    assert torch.all((freq - target).abs() <= 4 * standard_error + 1e-12), (freq, target)


@pytest.mark.parametrize("method", ["select", "sort"])
def test_tie_at_the_boundary_keeps_the_lower_ids(method):
    # four tokens tied at 0.25: top_p 0.5 keeps exactly ids 0 and 1 (HF/vLLM sort position)
    logits = torch.zeros(1, 4)
    freq = empirical(logits, batch(4000, top_p=0.5), method=method)
    assert freq[2] == 0 and freq[3] == 0 and freq[0] > 0.4 and freq[1] > 0.4


# the CPU's method (select) and the CUDA one (sort) keep the same tokens and draw in token-id
# order, so one seed gives the same token on both: random rows at several temperatures, with and
# without top-k, greedy rows mixed in, and the tied distribution (bf16 logits tie often)
@pytest.mark.parametrize("scale", [1.0, 6.0])  # flat and peaked logits
@pytest.mark.parametrize("top_k", [-1, 40])
def test_select_and_sort_draw_the_same_token(scale, top_k):
    torch.manual_seed(3)
    rows = [(0.0 if i % 5 == 0 else 0.5 + i % 3 * 0.3, (0.1, 0.5, 0.8, 0.95, 1.0)[i % 5], top_k, 70 + i, 9)
            for i in range(40)]
    params = SamplingBatch.build(rows, torch.device("cpu"))
    logits = torch.randn(40, VOCAB) * scale
    assert torch.equal(sample_tokens(logits, params, method="select", row_chunk=16),
                       sample_tokens(logits, params, method="sort", row_chunk=16))
    tied = (TIED / TIED.sum()).clamp(min=1e-30).log()[None].expand(40, -1).contiguous()
    assert torch.equal(sample_tokens(tied, params, method="select"), sample_tokens(tied, params, method="sort"))


def test_sampled_token_depends_only_on_its_row():
    torch.manual_seed(1)
    logits = torch.randn(40, VOCAB) * 2
    params = batch(40, temperature=0.7, top_p=0.8, seed0=99)
    together = sample_tokens(logits, params, row_chunk=16)
    one_by_one = torch.cat([sample_tokens(logits[i:i + 1], params.slice(i, i + 1)) for i in range(40)])
    assert torch.equal(together, one_by_one)


def test_greedy_rows_take_the_argmax_in_a_mixed_batch():
    torch.manual_seed(2)
    logits = torch.randn(4, 1000)
    params = SamplingBatch.build([(0.0, 1.0, -1, 0, 1), (0.7, 0.8, -1, 1, 1)] * 2, torch.device("cpu"))
    tokens = sample_tokens(logits, params)
    assert tokens[0] == logits[0].argmax() and tokens[2] == logits[2].argmax()


# ---------------------------------------------------------------------------------------
# cache sizing and helpers
# ---------------------------------------------------------------------------------------


def test_cache_budget_too_small_for_one_sequence_is_a_clear_error():
    shape = CacheShape(layers=28, kv_heads=2, head_dim=128, dtype=torch.bfloat16)
    with pytest.raises(EnvironmentUnavailable, match="not enough memory for the KV cache"):
        slots_that_fit(shape, context_window=4096, budget_bytes=10 * 2**20, wanted=8)
    assert slots_that_fit(shape, context_window=4096, budget_bytes=2**40, wanted=8) == 8


def test_cache_grows_and_keeps_its_contents():
    shape = CacheShape(layers=1, kv_heads=1, head_dim=2, dtype=torch.float32)
    cache = KVCache(shape, slots=2, context_window=4096, device=torch.device("cpu"))
    cache.ensure_capacity(10)
    cache.keys[0, 1, 9, 0] = 3.0
    cache.ensure_capacity(300)
    assert cache.capacity == 512 and cache.keys[0, 1, 9, 0, 0] == 3.0


def test_preallocated_cache_never_moves():
    # the CUDA layout: full context from the start, so captured graphs stay valid
    shape = CacheShape(layers=1, kv_heads=1, head_dim=2, dtype=torch.float32)
    cache = KVCache(shape, slots=2, context_window=300, device=torch.device("cpu"), preallocate=True)
    address = cache.keys.data_ptr()
    cache.ensure_capacity(300)
    assert cache.capacity == 512 and cache.keys.data_ptr() == address


def test_prefix_index_finds_the_longest_shared_prefix_like_a_full_scan():
    # sequences over a 3-token alphabet share long prefixes often; every query (and every
    # excluded key) is checked against the brute-force maximum over all sequences
    rng = random.Random(5)
    sequences = [[rng.randrange(3) for _ in range(rng.randrange(1, 9))] for _ in range(40)]
    index = PrefixIndex((seq, key) for key, seq in enumerate(sequences))
    for _ in range(300):
        query = [rng.randrange(3) for _ in range(rng.randrange(1, 9))]
        limit = rng.randrange(0, 9)
        exclude = rng.choice([None, rng.randrange(40)])
        lengths = [common_prefix_length(seq, query, limit) for key, seq in enumerate(sequences) if key != exclude]
        found = index.longest(query, limit, exclude=exclude)
        assert (found[1] if found else 0) == max(lengths)
        if found:
            assert common_prefix_length(sequences[found[0]], query, limit) == found[1] and found[0] != exclude
    index.remove(3)
    sequences[3] = [2, 2, 2, 2, 2, 2, 2, 2]
    index.add(sequences[3], 3)
    assert index.longest([2] * 8, 8) == (3, 8)


@pytest.mark.parametrize(
    "a,b,limit,expected",
    [([1, 2, 3], [1, 2, 4], 9, 2), ([1, 2, 3], [1, 2, 3], 2, 2), ([5], [1], 9, 0), ([], [1], 9, 0),
     (list(range(100)), [*list(range(57)), 0], 99, 57)],
)
def test_common_prefix_length(a, b, limit, expected):
    assert common_prefix_length(a, b, limit) == expected


# ---------------------------------------------------------------------------------------
# host synchronisation: one device-to-host transfer per decode step
# ---------------------------------------------------------------------------------------


def test_decode_step_transfers_to_the_host_once(model, monkeypatch):
    from torch.utils._python_dispatch import TorchDispatchMode

    host_ops = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique", "_unique2",
                "unique_consecutive", "unique_dim", "item"}
    transfers: list[str] = []

    class CountHostTransfers(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = func.overloadpacket.__name__
            to_cpu = name in {"_to_copy", "to", "copy_"} and str(kwargs.get("device", "")) == "cpu"
            if name in host_ops or to_cpu:
                transfers.append(name)
            return func(*args, **kwargs)

    for method in ("tolist", "cpu", "numpy", "item"):
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _original=original, _name=method, **kwargs):
            transfers.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counted)
    engine = make_engine(model, max_batch_size=8)
    mixed = [{"temperature": 0.0}, SAMPLED, {"temperature": 0.7, "top_k": 20}, {"temperature": 1.0, "top_p": 0.5,
                                                                                  "top_k": 7}]
    for i, sampling in enumerate(mixed * 2):
        engine.add(request(f"h{i}", prompt(60 + i % 4, 9), seed=i, max_tokens=30, **sampling))
    engine.step()  # admission and prefill
    transfers.clear()
    with CountHostTransfers():
        for _ in range(6):
            engine.step()
    assert transfers == ["tolist"] * 6
