"""The vllm backend: the pure mapping onto vLLM's API (no vLLM needed), routing, and the
backend itself when vLLM is importable (skipped with a reason otherwise)."""

from __future__ import annotations

import importlib.util
import re
from types import SimpleNamespace

import pytest

from qwen_math.backends.base import BackendOptions, GenerationRequest, get_backend_class
from qwen_math.backends.vllm import (
    EngineRequest,
    VLLMBackend,
    completion_from_output,
    engine_for,
    engine_kwargs,
    gpu_groups,
    sampling_params_kwargs,
    stop_token_ids,
)
from qwen_math.config import SamplingConfig, default_sampling
from qwen_math.errors import EnvironmentUnavailable, UsageError

HAVE_VLLM = importlib.util.find_spec("vllm") is not None


# --- SamplingConfig -> SamplingParams ---------------------------------------------------------
@pytest.mark.parametrize(
    "sampling, seed, expected",
    [
        # greedy (the CLI default for one sample): top_p/top_k forced off, seed still sent
        (default_sampling(n=1), 7,
         {"temperature": 0.0, "top_p": 1.0, "top_k": -1, "max_tokens": 2048, "stop": [], "seed": 7}),
        # the model card's maj@k setting; n is per request, so always 1
        (default_sampling(n=8, top_k=20, max_tokens=512), 2**62,
         {"n": 1, "temperature": 0.7, "top_p": 0.8, "top_k": 20, "max_tokens": 512, "seed": 2**62}),
        # TIR stops on the string, which vLLM cuts from the text as our contract does
        (SamplingConfig(stop=("```output",)), 0,
         {"stop": ["```output"], "include_stop_str_in_output": False}),
        # top_k = 0 means disabled in SamplingConfig and is sent as -1 (valid in every vLLM)
        (SamplingConfig(temperature=1.0, top_k=0), 1, {"top_k": -1}),
    ],
)
def test_sampling_params_kwargs(sampling, seed, expected):
    kwargs = sampling_params_kwargs(sampling, seed=seed)
    assert {key: kwargs[key] for key in expected} == expected


def test_every_sampling_parameter_is_explicit():
    kwargs = sampling_params_kwargs(SamplingConfig(), seed=0, max_tokens=5, stop_token_ids=(151645, 151643))
    # server / library defaults (max_tokens=16, repetition penalties) never leak in
    assert kwargs["max_tokens"] == 5
    assert kwargs["stop_token_ids"] == [151645, 151643]
    assert kwargs["repetition_penalty"] == 1.0 and kwargs["presence_penalty"] == 0.0
    assert set(kwargs) >= {"n", "temperature", "top_p", "top_k", "max_tokens", "stop", "seed"}


@pytest.mark.skipif(not HAVE_VLLM, reason="vLLM is not installed (pip install 'qwen-math[vllm]')")
def test_vllm_accepts_the_mapping():
    import vllm

    params = vllm.SamplingParams(**sampling_params_kwargs(default_sampling(n=4), seed=3))
    assert params.seed == 3 and params.n == 1


# --- engine construction ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "options, expected",
    [
        # defaults: one GPU, prefix caching on so TIR resumes are cheap
        (BackendOptions(), {"tensor_parallel_size": 1, "pipeline_parallel_size": 1,
                            "enable_prefix_caching": True, "dtype": "auto"}),
        # a 72B model across 8 GPUs
        (BackendOptions(tensor_parallel_size=4, pipeline_parallel_size=2, dtype="bfloat16", seed=5),
         {"tensor_parallel_size": 4, "pipeline_parallel_size": 2, "dtype": "bfloat16", "seed": 5}),
        # the batch cap becomes vLLM's max_num_seqs
        (BackendOptions(max_batch_size=64), {"max_num_seqs": 64}),
    ],
)
def test_engine_kwargs(options, expected):
    kwargs = engine_kwargs(options, model_path="/ckpt")
    assert kwargs["model"] == kwargs["tokenizer"] == "/ckpt"
    assert {key: kwargs[key] for key in expected} == expected


@pytest.mark.parametrize(
    "options, message",
    [
        (BackendOptions(dtype="fp8"), "--dtype 'fp8'"),
        (BackendOptions(tensor_parallel_size=0), "tensor_parallel_size must be an integer >= 1"),
        (BackendOptions(gpu_memory_utilization=1.5), "gpu_memory_utilization must be in (0, 1]"),
    ],
)
def test_engine_kwargs_rejects(options, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        engine_kwargs(options, model_path="/ckpt")


# --- data parallelism: GPU groups and sticky routing --------------------------------------------
@pytest.mark.parametrize(
    "devices, group_size, groups, expected",
    [
        (["0", "1", "2", "3"], 1, 4, ["0", "1", "2", "3"]),
        (["0", "1", "2", "3", "4", "5", "6", "7"], 2, 4, ["0,1", "2,3", "4,5", "6,7"]),
        (["4", "5", "6", "7"], 2, 2, ["4,5", "6,7"]),  # respects CUDA_VISIBLE_DEVICES ids
        (["0", "1", "2"], 2, 1, ["0,1"]),  # spare GPUs stay idle
    ],
)
def test_gpu_groups(devices, group_size, groups, expected):
    assert gpu_groups(devices, group_size=group_size, groups=groups) == expected


def test_gpu_groups_needs_enough_gpus():
    with pytest.raises(EnvironmentUnavailable, match="needs 8 GPUs; 4 visible"):
        gpu_groups(["0", "1", "2", "3"], group_size=4, groups=2)


def test_engine_for_is_stable_and_spreads():
    prompts = [f"problem {i}" for i in range(200)]
    first = [engine_for(p, 4) for p in prompts]
    assert first == [engine_for(p, 4) for p in prompts]  # a pure function of the prompt
    assert sorted(set(first)) == [0, 1, 2, 3]


class FakeWorker:
    """Stands in for a data-parallel engine process: records what it was sent."""

    def __init__(self) -> None:
        self.requests: list[EngineRequest] = []
        self.in_flight = 0

    def add(self, request: EngineRequest) -> None:
        self.requests.append(request)
        self.in_flight += 1


class ByteTokenizer:
    eos_token_id = None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(text.encode())


def request(request_id: str, prompt: str, *, cache_key: str | None = None, max_tokens: int = 100):
    return GenerationRequest(request_id, prompt, SamplingConfig(max_tokens=max_tokens), seed=1,
                             cache_key=cache_key)


def test_trajectories_stay_on_their_engine():
    workers = [FakeWorker() for _ in range(4)]
    backend = VLLMBackend(ByteTokenizer(), 10_000, (), workers=workers)
    prompts = [f"question {i}: " for i in range(12)]
    for i, prompt in enumerate(prompts):
        for sample in range(3):
            backend.add_request(request(f"{i}-{sample}", prompt, cache_key=f"{i}/{sample}"))
            # the TIR continuation is a longer prompt: it must follow the trajectory anyway
            backend.add_request(request(f"{i}-{sample}-turn2", prompt + "x" * 50, cache_key=f"{i}/{sample}"))
    where = {r.request_id: n for n, w in enumerate(workers) for r in w.requests}
    for i in range(12):
        assert len({where[f"{i}-{s}{t}"] for s in range(3) for t in ("", "-turn2")}) == 1
    assert backend.has_unfinished()


def test_prompt_filling_the_context_finishes_with_length():
    backend = VLLMBackend(ByteTokenizer(), 16, (151645,), workers=[FakeWorker()])
    backend.add_request(request("long", "y" * 16))
    backend.add_request(request("short", "y" * 10, max_tokens=100))
    [done] = backend.step()
    assert (done.request_id, done.finish_reason, done.prompt_tokens, done.text) == ("long", "length", 16, "")
    [sent] = backend.workers[0].requests
    assert sent.params["max_tokens"] == 6  # clamped to what still fits
    assert sent.params["stop_token_ids"] == [151645]
    assert sent.prompt_token_ids == tuple(b"y" * 10)


# --- CompletionOutput -> Completion ---------------------------------------------------------------
def output(text, token_ids, finish_reason, stop_reason=None):
    return SimpleNamespace(text=text, token_ids=token_ids, finish_reason=finish_reason,
                           stop_reason=stop_reason)


@pytest.mark.parametrize(
    "vllm_output, reason, stop_string",
    [
        # a stop string: vLLM names it in stop_reason
        (output("x = 1\n```", [1, 2], "stop", "```output"), "stop", "```output"),
        # end of sequence: stop_reason is None (eos) or the stop token id
        (output("done", [3], "stop", None), "eos", None),
        (output("done", [3], "stop", 151645), "eos", None),
        # max_tokens
        (output("abc", [4, 5, 6], "length"), "length", None),
    ],
)
def test_completion_from_output(vllm_output, reason, stop_string):
    completion = completion_from_output("r1", vllm_output, prompt_tokens=9)
    assert (completion.finish_reason, completion.stop_string) == (reason, stop_string)
    assert completion.text == vllm_output.text
    assert completion.completion_tokens == len(vllm_output.token_ids)
    assert completion.prompt_tokens == 9


def test_aborted_output_is_an_error():
    with pytest.raises(EnvironmentUnavailable, match="finish_reason 'abort'"):
        completion_from_output("r1", output("", [], "abort"), prompt_tokens=1)


class ScriptedLLMEngine:
    """vLLM's ``LLMEngine`` as the local engine sees it: cumulative outputs per step, aborts."""

    def __init__(self, steps):
        self.steps = list(steps)
        self.aborted = []

    def step(self):
        return self.steps.pop(0)

    def abort_request(self, request_ids):
        self.aborted.extend(request_ids)


def request_output(request_id, ids, finished=False):
    finish = "length" if finished else None
    return SimpleNamespace(request_id=request_id, finished=finished,
                           outputs=[output("t" * len(ids), ids, finish)])


def test_local_engine_streams_new_tokens_and_aborts():
    from qwen_math.backends.vllm import LocalEngine

    engine = LocalEngine.__new__(LocalEngine)  # no vLLM here: only the step bookkeeping
    engine._engine = ScriptedLLMEngine([
        [request_output("a", [1]), request_output("b", [7, 8])],  # several tokens in one step
        [request_output("a", [1, 2, 3]), request_output("b", [7, 8, 9], finished=True)],
    ])
    engine._prompt_tokens = {"a": 4, "b": 5}
    engine._streamed = {}
    seen = []
    engine.token_listener = seen.append
    assert engine.step() == []
    [done] = engine.step()
    # each token once; a finished request's tokens come with its completion instead
    assert seen == [[("a", 1), ("b", 7), ("b", 8)], [("a", 2), ("a", 3)]]
    assert done.request_id == "b" and done.completion_tokens == 3
    assert engine.abort("a") and engine._engine.aborted == ["a"] and not engine.abort("a")


def test_stop_token_ids_from_generation_config(tmp_path):
    (tmp_path / "generation_config.json").write_text('{"eos_token_id": [151645, 151643]}')
    tokenizer = SimpleNamespace(eos_token_id=151645)
    assert stop_token_ids(tmp_path, tokenizer) == (151645, 151643)


# --- the backend itself ---------------------------------------------------------------------------
@pytest.mark.skipif(HAVE_VLLM, reason="vLLM is installed here")
def test_create_without_vllm_names_the_extra():
    backend_class = get_backend_class("vllm")
    with pytest.raises(EnvironmentUnavailable, match=r"pip install 'qwen-math\[vllm\]'"):
        backend_class.create(BackendOptions(model="/nonexistent"))


@pytest.mark.skipif(not HAVE_VLLM, reason="vLLM is not installed (pip install 'qwen-math[vllm]')")
def test_vllm_backend_greedy_is_deterministic(tiny_checkpoint):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a GPU")
    backend = get_backend_class("vllm").create(BackendOptions(model=str(tiny_checkpoint)))
    try:
        requests = [request(f"r{i}", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
                            max_tokens=16) for i in range(2)]
        first, second = backend.generate(requests)
        assert first.text == second.text and first.finish_reason in ("stop", "eos", "length")
    finally:
        backend.close()


# --- the data-parallel worker loop (a fake engine in a thread, the real message protocol) ------------
class FakeLocalEngine:
    """Finishes each request one step after it was added; request "boom" fails the step."""

    max_model_len = 4096

    def __init__(self, kwargs):
        self.running: list[EngineRequest] = []

    def add(self, request):
        self.running.append(request)

    def has_unfinished(self):
        return bool(self.running)

    def step(self):
        if any(r.request_id == "boom" for r in self.running):
            raise RuntimeError("CUDA out of memory")
        done, self.running = self.running, []
        return [completion_from_output(r.request_id, output("ok", [1], "stop"), prompt_tokens=len(r.prompt_token_ids))
                for r in done]


def run_worker(monkeypatch, requests):
    """Feed ``requests`` to ``serve_engine`` in a thread; every message it sent back."""
    import multiprocessing
    import threading

    import qwen_math.backends.vllm as vllm_backend

    monkeypatch.setattr(vllm_backend, "LocalEngine", FakeLocalEngine)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    parent, child = multiprocessing.Pipe()
    worker = threading.Thread(target=vllm_backend.serve_engine, args=("2,3", {}, child), daemon=True)
    worker.start()
    received = [parent.recv()]
    for request in requests:
        parent.send(("add", request))
    finished = 0
    while finished < len(requests) and received[-1][0] != "error" and parent.poll(5):
        received.append(parent.recv())
        finished += len(received[-1][1]) if received[-1][0] == "done" else 0
    parent.send(("close",))
    worker.join(timeout=5)
    assert not worker.is_alive()
    return received


def test_worker_protocol(monkeypatch):
    requests = [EngineRequest(f"r{i}", (1, 2, 3), {}) for i in range(6)]
    received = run_worker(monkeypatch, requests)
    assert received[0] == ("ready", 4096)
    finished = [c.request_id for kind, batch in received[1:] if kind == "done" for c in batch]
    assert sorted(finished) == [f"r{i}" for i in range(6)]


def test_worker_reports_engine_failure(monkeypatch):
    received = run_worker(monkeypatch, [EngineRequest("boom", (1,), {})])
    assert received[-1] == ("error", "RuntimeError: CUDA out of memory")
