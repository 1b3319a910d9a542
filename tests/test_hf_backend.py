"""The ``hf`` backend on the tiny random checkpoint with the real Qwen2.5 tokenizer.

- loading: a local folder, dtype/device auto, EOS ids from the checkpoint, bad folders and bad
  options are clear errors;
- the Backend protocol: request order, finish reasons, token counts, stop strings cut
  exactly (the TIR stop "```output" is two tokens), per-sample seeds independent of the batch,
  greedy determinism, a TIR resume through ``cache_key`` that prefills only the new tokens.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from qwen_math.backends.base import Backend, BackendOptions, GenerationRequest, get_backend_class  # noqa: E402
from qwen_math.backends.hf import HFBackend, pick_device, pick_dtype  # noqa: E402
from qwen_math.config import SamplingConfig, sample_seed  # noqa: E402
from qwen_math.errors import UsageError  # noqa: E402

CHAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
SAMPLED = SamplingConfig(temperature=0.7, top_p=0.8, max_tokens=12)
GREEDY = SamplingConfig(max_tokens=12)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread (the tiny shape gains nothing from more on a shared machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def backend(tiny_checkpoint):
    created = HFBackend.create(BackendOptions(model=str(tiny_checkpoint)))
    yield created
    created.close()


def ask(name: str, question: str, sampling=SAMPLED, *, seed: int = 0, cache_key=None) -> GenerationRequest:
    return GenerationRequest(name, CHAT.format(question), sampling, seed=seed, cache_key=cache_key)


# ---------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------


def test_create_loads_the_checkpoint_with_auto_dtype_and_device(backend):
    assert isinstance(backend, Backend)
    assert get_backend_class("hf") is HFBackend
    assert (backend.name, backend.context_window) == ("hf", 4096)
    assert backend.model.dtype == torch.float32 and backend.model.device.type == "cpu"
    assert backend.eos_ids == {151645, 151643}
    assert backend.count_tokens("<|im_start|>user\n") == 3  # <|im_start|>, "user", newline


@pytest.mark.parametrize(
    "options,message",
    [
        (BackendOptions(model="/nonexistent/qwen"), "no such folder"),
        (BackendOptions(model="__TINY__", dtype="float8"), "--dtype 'float8'"),
        (BackendOptions(model="__TINY__", device="tpu9"), "--device 'tpu9'"),
    ],
)
def test_bad_options_are_clear_errors(tiny_checkpoint, options, message):
    if options.model == "__TINY__":
        options = BackendOptions(model=str(tiny_checkpoint), dtype=options.dtype, device=options.device)
    with pytest.raises(UsageError, match=message):
        HFBackend.create(options)


def test_folder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(UsageError, match=r"no config\.json"):
        HFBackend.create(BackendOptions(model=str(tmp_path)))


def test_dtype_and_device_auto_on_cpu():
    device = pick_device("auto")
    expected = torch.bfloat16 if device.type == "cuda" else torch.float32
    assert pick_dtype("auto", device) == expected
    assert pick_dtype("bf16", device) == torch.bfloat16


# ---------------------------------------------------------------------------------------
# the Backend protocol
# ---------------------------------------------------------------------------------------


def test_generate_keeps_order_and_counts_tokens(backend):
    requests = [ask(f"q{i}", f"What is {i} + {i}?", seed=i) for i in range(3)]
    completions = backend.generate(requests)
    assert [c.request_id for c in completions] == ["q0", "q1", "q2"]
    for request, completion in zip(requests, completions, strict=True):
        assert completion.prompt_tokens == backend.count_tokens(request.prompt)
        assert completion.completion_tokens == len(completion.token_ids) == 12
        assert completion.finish_reason == "length"


def test_greedy_is_deterministic(backend):
    first, second = backend.generate([ask("a", "1+1?", GREEDY), ask("b", "1+1?", GREEDY)])
    assert first.token_ids == second.token_ids


def test_samples_depend_only_on_their_seed(backend):
    seeds = [sample_seed(0, "p1", i) for i in range(4)]
    together = backend.generate([ask(f"s{i}", "Compute 7*8.", seed=s) for i, s in enumerate(seeds)])
    alone = backend.generate([ask("x", "Compute 7*8.", seed=seeds[2])])
    assert together[2].token_ids == alone[0].token_ids
    assert len({c.token_ids for c in together}) == 4


def test_stop_string_spanning_two_tokens_is_cut_exactly(backend):
    # "```output" is two tokens; the stop must be found on text, the text cut before it
    (free,) = backend.generate([ask("f", "Write code.", seed=11)])
    text = backend.tokenizer.decode(list(free.token_ids))
    stop = text[3:7]
    (stopped,) = backend.generate([ask("f", "Write code.", SAMPLED.with_stop(stop), seed=11)])
    assert (stopped.finish_reason, stopped.stop_string) == ("stop", stop)
    assert stopped.text == text[: text.index(stop)]
    assert stop not in stopped.text


def test_tir_resume_prefills_only_the_appended_tokens(backend):
    turn1 = ask("t1", "Use python.", seed=5, cache_key="traj-1")
    (first,) = backend.generate([turn1])
    transcript = turn1.prompt + first.text + "```output\n42\n```\n"
    turn2 = GenerationRequest("t2", transcript, SAMPLED, seed=5, cache_key="traj-1")
    before = backend.stats.prefill_tokens
    (resumed,) = backend.generate([turn2])
    appended = backend.count_tokens(transcript) - first.prompt_tokens - first.completion_tokens
    assert backend.stats.prefill_tokens - before <= appended + 2  # + re-tokenised boundary
    fresh = HFBackend.from_model(backend.model, backend.tokenizer)
    assert fresh.generate([turn2])[0].token_ids == resumed.token_ids


def test_step_interface_lets_callers_add_work_between_steps(backend):
    backend.add_request(ask("early", "Hi.", SamplingConfig(max_tokens=3)))
    finished = []
    added = False
    while backend.has_unfinished():
        finished += backend.step()
        if not added:
            backend.add_request(ask("late", "Hello.", SamplingConfig(max_tokens=2)))
            added = True
    assert sorted(c.request_id for c in finished) == ["early", "late"]


def test_prompt_longer_than_the_context_is_refused(backend):
    with pytest.raises(UsageError, match="context window"):
        backend.add_request(ask("long", "x " * 5000))
