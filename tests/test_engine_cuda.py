"""The decode engine on a CUDA device (skipped without one; ``bench/device_run.sh`` runs it).

- the varlen decode attention equals SDPA on random rows (fp32 and bf16, shuffled slots, lengths
  1..capacity) and is what the engine picked;
- CUDA-graph decode (preallocated cache, one graph per batch bucket) gives the same greedy tokens
  as eager decode, and the logits of a step equal transformers' forward on the device;
- sequences that grow across many positions re-capture nothing (one capture per bucket);
- a decode step synchronises with the host once (CUDA sync debug mode counts every sync);
- sampled tokens do not depend on the batch.
"""

from __future__ import annotations

import random
import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

from qwen_math.engine.attention import ATTENTION, self_check  # noqa: E402
from qwen_math.engine.engine import Engine, EngineConfig, EngineRequest  # noqa: E402

CUDA = torch.device("cuda")
VOCAB = 151936
SAMPLED = {"temperature": 0.7, "top_p": 0.8}


@pytest.fixture(scope="module")
def model():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from qwen_math.tiny import SHAPES, model_config

    torch.manual_seed(0)
    tiny = Qwen2ForCausalLM(Qwen2Config(**model_config(SHAPES["tiny"]))).eval()
    with torch.no_grad():
        for name, parameter in tiny.named_parameters():
            if name.endswith("bias") or "norm" in name:
                parameter.add_(torch.randn_like(parameter) * 0.1)
    return tiny.to(CUDA)


def make_engine(model, **config) -> Engine:
    return Engine(model, decode_text=lambda ids: "".join(chr(65 + i % 26) for i in ids), eos_ids=frozenset(),
                  config=EngineConfig(**{"max_batch_size": 16, "memory_fraction": 0.05, **config}))


def prompt(seed: int, length: int) -> tuple[int, ...]:
    rng = random.Random(seed)
    return tuple(rng.randrange(VOCAB) for _ in range(length))


def tokens_of(results):
    return [r.finish.token_ids for r in results]


@pytest.mark.parametrize("dtype,tolerance", [(torch.float32, 1e-3), (torch.bfloat16, 2e-2)])
def test_varlen_attention_equals_sdpa(dtype, tolerance):
    for heads, kv_heads in ((12, 2), (28, 4), (4, 2)):
        assert self_check(ATTENTION["varlen"], device=CUDA, dtype=dtype, heads=heads, kv_heads=kv_heads,
                          head_dim=128 if dtype == torch.bfloat16 else 64, seed=heads) < tolerance


def test_engine_uses_graphs_and_varlen_attention(model):
    engine = make_engine(model)
    assert engine._graphs is not None
    assert engine.forward.static_attention_name == "varlen"
    assert engine.cache.capacity >= 4096  # preallocated: the cache never moves


def test_graph_decode_equals_eager_decode_and_never_recaptures(model):
    requests = [EngineRequest(f"g{i}", prompt(i, 5 + 7 * i), max_tokens=40 + 10 * i, seed=i) for i in range(5)]
    graphs = make_engine(model)
    assert tokens_of(graphs.run(requests)) == tokens_of(make_engine(model, static_decode=False).run(requests))
    buckets = {1, 2, 4, 8}  # 5 rows finishing one by one pass through buckets 8, 4, 2, 1
    decoder = graphs._graphs
    assert set(decoder.graphs) == buckets and {bucket for bucket, _ in decoder.samplers} == buckets
    assert decoder.capture_sampling  # the sampler was captured too (not the eager fallback)
    assert decoder.captures == 2 * len(buckets)  # forward + sampler per bucket, never again


def test_graph_step_logits_equal_transformers(model):
    ids = prompt(77, 30)
    engine = make_engine(model)
    engine.add(EngineRequest("x", ids, max_tokens=1, seed=0))
    with torch.inference_mode():
        engine._admit_waiting()
        engine._prefill(512)
        row = engine.running[0]
        logits = engine._logits([row.slot.index], [row.pending[0]], [len(row.slot.tokens)])
        reference = model(torch.tensor([ids], device=CUDA)).logits[0, -1]
    torch.testing.assert_close(logits[0], reference.float(), atol=1e-3, rtol=1e-3)


def test_decode_step_synchronises_once(model):
    engine = make_engine(model)
    for i in range(4):
        engine.add(EngineRequest(f"s{i}", prompt(90 + i, 9), max_tokens=30, seed=i, top_k=50 * (i % 2) - 1,
                                 **SAMPLED))
    for _ in range(3):  # admission, prefill, graph capture
        engine.step()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for _ in range(5):
                engine.step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in caught if "synchroniz" in str(w.message).lower()]
    assert len(syncs) <= 5, [str(w.message) for w in syncs]


def test_sample_does_not_depend_on_batch_composition(model):
    target = EngineRequest("t", prompt(8, 12), max_tokens=16, seed=1234, **SAMPLED)
    alone = make_engine(model).run([target])
    others = [EngineRequest(f"o{i}", prompt(20 + i, 5 + 3 * i), max_tokens=4 + i, seed=i, **SAMPLED)
              for i in range(6)]
    crowded = make_engine(model).run([*others[:3], target, *others[3:]])
    assert tokens_of(alone) == tokens_of([crowded[3]])
