"""`qwen_math.serve`: the OpenAI-compatible server, in process on a loopback port.

The protocol (routes, errors, limits, streaming), the bounded queue (429 with Retry-After,
never a lost request), /v1/solve with the sandbox server-side, and a load test of 64
concurrent clients. The engine is the hf backend over the tiny checkpoint, or a gated fake
backend where a test needs requests to stay in flight.
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from qwen_math.backends.base import Completion, GenerationRequest, run_to_completion
from qwen_math.backends.openai_compat import OpenAIClient, RetryPolicy
from qwen_math.config import SamplingConfig
from qwen_math.serve import (
    ServeConfig,
    make_server,
    parse_prompts,
    parse_sampling,
    sample_seeds,
    shutdown,
)

CHAT = "<|im_start|>system\nPlease reason step by step.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"


# --- fixtures and helpers ---------------------------------------------------------------------
class Serving:
    """A server on a free loopback port, its address, and raw HTTP helpers."""

    def __init__(self, backend, **config) -> None:
        self.server = make_server(backend, ServeConfig(model_name="tiny", port=0, **config))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.host, self.port = self.server.server_address[:2]
        self.url = self.server.url

    def close(self) -> None:
        shutdown(self.server)
        self.thread.join(timeout=10)

    def request(self, method, path, body=None, *, raw=None, headers=None, timeout=60):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
            conn.request(method, path, body=data, headers=headers or {})
            response = conn.getresponse()
            payload = response.read()
            kind = response.getheader("Content-Type", "")
            parsed = json.loads(payload) if kind.startswith("application/json") else payload.decode()
            return response.status, response.headers, parsed
        finally:
            conn.close()

    def post(self, path, body, **kwargs):
        return self.request("POST", path, body, **kwargs)


@pytest.fixture(scope="module")
def served(hf_backend):
    serving = Serving(hf_backend, max_queue=16, max_body_bytes=64_000)
    yield serving
    serving.close()


class GatedBackend:
    """A fake engine whose requests stay in flight until the test opens the gate; each
    completion echoes the last word of its prompt."""

    name = "gated"
    context_window = 4096
    tokenizer = None

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.queued: list[GenerationRequest] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def add_request(self, request: GenerationRequest) -> None:
        self.queued.append(request)

    def has_unfinished(self) -> bool:
        return bool(self.queued)

    def step(self) -> list[Completion]:
        if not self.gate.wait(timeout=0.05):
            return []
        done, self.queued = self.queued, []
        return [Completion(r.request_id, r.prompt.split()[-1], (1,), "eos", len(r.prompt.split()), 1) for r in done]

    def generate(self, requests):
        return run_to_completion(self, requests)

    def close(self) -> None:
        self.queued = []


@pytest.fixture
def gated():
    backend = GatedBackend()
    serving = Serving(backend, max_queue=4, max_connections=8)
    yield serving, backend
    backend.gate.set()
    serving.close()


# --- routes -------------------------------------------------------------------------------------
def test_models_lists_the_served_model(served, hf_backend):
    status, _, body = served.request("GET", "/v1/models")
    assert status == 200
    assert body["data"][0]["id"] == "tiny"
    assert body["data"][0]["max_model_len"] == hf_backend.context_window


def test_completion_matches_the_backend(served, hf_backend):
    status, _, body = served.post("/v1/completions", {"model": "tiny", "prompt": CHAT, "max_tokens": 12,
                                                      "temperature": 0, "seed": 3})
    assert status == 200
    [expected] = hf_backend.generate([GenerationRequest("x", CHAT, SamplingConfig(max_tokens=12), seed=3)])
    [choice] = body["choices"]
    assert choice["text"] == expected.text and choice["token_ids"] == list(expected.token_ids)
    assert body["usage"] == {"prompt_tokens": expected.prompt_tokens, "completion_tokens": expected.completion_tokens,
                             "total_tokens": expected.prompt_tokens + expected.completion_tokens}


def test_token_id_prompts_equal_text_prompts(served, hf_backend):
    ids = hf_backend.encode(CHAT)
    _, _, by_text = served.post("/v1/completions", {"prompt": CHAT, "max_tokens": 8})
    _, _, by_ids = served.post("/v1/completions", {"prompt": ids, "max_tokens": 8})
    assert by_ids["choices"][0]["text"] == by_text["choices"][0]["text"]
    assert by_ids["usage"]["prompt_tokens"] == len(ids)


def test_n_samples_have_their_own_seeds(served, hf_backend):
    body = {"prompt": CHAT, "max_tokens": 10, "n": 3, "temperature": 1.0, "seed": 11}
    _, _, response = served.post("/v1/completions", body)
    texts = [choice["text"] for choice in response["choices"]]
    assert [choice["index"] for choice in response["choices"]] == [0, 1, 2]
    sampling = parse_sampling(body)[0]  # top_p 0.8: the project's default when sampling
    expected = hf_backend.generate([GenerationRequest(str(i), CHAT, sampling, seed=11 + i) for i in range(3)])
    assert texts == [c.text for c in expected]
    assert len(set(texts)) > 1


def test_batch_of_prompts(served):
    _, _, body = served.post("/v1/completions", {"prompt": [CHAT, CHAT + "Hi"], "max_tokens": 4, "n": 2})
    assert [choice["index"] for choice in body["choices"]] == [0, 1, 2, 3]


def test_stop_string_is_reported(served):
    # find two characters a seeded completion writes, then stop on them
    body = {"prompt": CHAT, "max_tokens": 16, "temperature": 1.0, "seed": 2}
    _, _, free = served.post("/v1/completions", body)
    text = free["choices"][0]["text"]
    starts = [k for k in range(1, len(text) - 1) if text[k:k + 2].strip() and text.index(text[k:k + 2]) == k]
    if not starts:
        pytest.skip("the random model's text has no usable stop string")
    stop = text[starts[len(starts) // 2]:][:2]
    _, _, stopped = served.post("/v1/completions", {**body, "stop": [stop]})
    choice = stopped["choices"][0]
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] == stop
    assert choice["text"] == text[:text.index(stop)]


def test_chat_completion_uses_the_chat_template(served):
    messages = [{"role": "system", "content": "Please reason step by step."},
                {"role": "user", "content": "What is 2+2?"}]
    _, _, chat = served.post("/v1/chat/completions", {"messages": messages, "max_tokens": 8})
    _, _, plain = served.post("/v1/completions", {"prompt": CHAT, "max_tokens": 8})
    assert chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"] == {"role": "assistant", "content": plain["choices"][0]["text"]}


def events(text):
    """The JSON events of a server-sent-event body, and whether it ended with [DONE]."""
    data = [line[len("data: "):] for line in text.split("\n\n") if line.startswith("data: ")]
    return [json.loads(item) for item in data if item != "[DONE]"], data[-1] == "[DONE]"


def test_streaming_completions(served):
    body = {"prompt": CHAT, "max_tokens": 8, "n": 2, "temperature": 0.7, "seed": 5}
    _, _, whole = served.post("/v1/completions", body)
    status, headers, text = served.post("/v1/completions", {**body, "stream": True,
                                                            "stream_options": {"include_usage": True}})
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    chunks, done = events(text)
    assert done
    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk["choices"]:
            texts[choice["index"]] += choice["text"]
    assert texts == {c["index"]: c["text"] for c in whole["choices"]}
    last = {c["choices"][0]["index"]: c["choices"][0] for c in chunks if c["choices"]}
    assert [last[i]["finish_reason"] for i in (0, 1)] == [c["finish_reason"] for c in whole["choices"]]
    assert chunks[-1]["usage"] == whole["usage"]


def test_streaming_chat(served):
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 6, "stream": True}
    _, _, text = served.post("/v1/chat/completions", body)
    chunks, done = events(text)
    assert done and chunks[0]["object"] == "chat.completion.chunk"
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"


def stream_chunks(served, body):
    """POST a streaming request; the (arrival time, event) of each SSE chunk and the total time."""
    conn = http.client.HTTPConnection(served.host, served.port, timeout=120)
    started = time.monotonic()
    conn.request("POST", "/v1/completions", body=json.dumps({**body, "stream": True}))
    response = conn.getresponse()
    assert response.status == 200
    arrived = []
    for line in response:
        if line.startswith(b"data: ") and line.strip() != b"data: [DONE]":
            arrived.append((time.monotonic() - started, json.loads(line[len(b"data: "):])))
    total = time.monotonic() - started
    conn.close()
    return arrived, total


def test_tokens_stream_as_they_are_sampled(served):
    # the done-when case: 256 tokens, the first chunk early, many chunks, the same text
    body = {"prompt": CHAT, "max_tokens": 256, "temperature": 1.0, "seed": 7}
    _, _, whole = served.post("/v1/completions", body)
    [expected] = whole["choices"]
    assert whole["usage"]["completion_tokens"] >= 64, "pick a seed that does not end at once"
    arrived, total = stream_chunks(served, body)
    first_at = arrived[0][0]
    assert first_at < 0.25 * total, f"first chunk at {first_at:.3f} s of {total:.3f} s"
    assert len(arrived) >= 8
    assert "".join(event["choices"][0]["text"] for _, event in arrived) == expected["text"]
    assert arrived[-1][1]["choices"][0]["finish_reason"] == expected["finish_reason"]


def test_a_stop_string_is_never_streamed(served):
    body = {"prompt": CHAT, "max_tokens": 48, "temperature": 1.0, "seed": 7}
    free = served.post("/v1/completions", body)[2]["choices"][0]["text"]
    stop = free[20:23]
    if len(stop) < 3 or not stop.strip():
        pytest.skip("the random model's text has no usable stop string")
    arrived, _ = stream_chunks(served, {**body, "stop": [stop]})
    pieces = [event["choices"][0]["text"] for _, event in arrived]
    assert "".join(pieces) == free[:free.index(stop)]
    assert arrived[-1][1]["choices"][0]["stop_reason"] == stop


def test_openai_sdk_consumes_the_streams(served):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=served.url, api_key="unused", max_retries=0)
    whole = client.completions.create(model="tiny", prompt=CHAT, max_tokens=40, temperature=1.0, seed=3)
    stream = client.completions.create(model="tiny", prompt=CHAT, max_tokens=40, temperature=1.0, seed=3,
                                       stream=True)
    chunks = list(stream)
    assert len(chunks) > 1
    assert "".join(chunk.choices[0].text for chunk in chunks) == whole.choices[0].text
    messages = [{"role": "user", "content": "What is 2+2?"}]
    reply = client.chat.completions.create(model="tiny", messages=messages, max_tokens=24, seed=1)
    streamed = client.chat.completions.create(model="tiny", messages=messages, max_tokens=24, seed=1,
                                              stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed if chunk.choices)
    assert text == reply.choices[0].message.content


def admitted(served) -> int:
    return served.request("GET", "/health")[2]["samples_admitted"]


def test_a_client_that_disconnects_frees_its_slot(served):
    conn = http.client.HTTPConnection(served.host, served.port, timeout=60)
    conn.request("POST", "/v1/completions", body=json.dumps(
        {"prompt": CHAT, "max_tokens": 4000, "temperature": 1.0, "seed": 7, "stream": True}))
    response = conn.getresponse()
    assert response.readline().startswith(b"data: ")  # decoding has started
    assert admitted(served) == 1
    conn.sock.shutdown(2)  # the client goes away mid-stream
    conn.close()
    gone = time.monotonic()
    while admitted(served) != 0:
        assert time.monotonic() - gone < 1.0, "the slot was not freed within 1 s"
        time.sleep(0.02)


@pytest.mark.parametrize("path, body", [
    # without streaming too: the server notices the closed connection while it waits
    ("/v1/completions", {"prompt": CHAT, "max_tokens": 4000, "temperature": 1.0, "seed": 8}),
    # a whole solve: its samples leave the engine, the solve thread ends
    ("/v1/solve", {"problem": "What is 2+2?", "n": 2, "max_tokens": 4000, "seed": 8}),
])
def test_a_waiting_client_that_disconnects_frees_its_slot(served, path, body):
    conn = http.client.HTTPConnection(served.host, served.port, timeout=60)
    conn.request("POST", path, body=json.dumps(body))
    deadline = time.monotonic() + 10
    while admitted(served) != body.get("n", 1):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    conn.sock.shutdown(2)
    conn.close()
    gone = time.monotonic()
    while admitted(served) != 0:
        assert time.monotonic() - gone < 1.0, "the slot was not freed within 1 s"
        time.sleep(0.02)


# --- errors and limits -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path, body, status, message",
    [
        # bad sampling values name the field
        ("/v1/completions", {"prompt": "x", "temperature": -1}, 400, "temperature must be >= 0"),
        ("/v1/completions", {"prompt": "x", "top_p": 0}, 400, "top_p must be in (0, 1]"),
        ("/v1/completions", {"prompt": "x", "max_tokens": "10"}, 400, "max_tokens must be an integer"),
        ("/v1/completions", {"prompt": "x", "n": True}, 400, "n must be an integer"),
        ("/v1/completions", {"prompt": "x", "stop": [1]}, 400, "stop must be a string or a list"),
        # knobs the engine does not have are refused, not ignored
        ("/v1/completions", {"prompt": "x", "repetition_penalty": 1.05}, 400, "repetition_penalty=1.05 is not supported"),
        ("/v1/completions", {"prompt": "x", "logprobs": 5}, 400, "logprobs=5 is not supported"),
        ("/v1/completions", {"prompt": "x", "best_of": 3}, 400, "best_of=3 is not supported"),
        # malformed prompts and messages
        ("/v1/completions", {"max_tokens": 3}, 400, "prompt is required"),
        ("/v1/completions", {"prompt": []}, 400, "prompt must be a string"),
        ("/v1/completions", {"prompt": [1, "a"]}, 400, "prompt must be a string"),
        ("/v1/chat/completions", {"messages": [{"role": "robot", "content": "x"}]}, 400, "messages[0] must have role"),
        ("/v1/solve", {"mode": "cot"}, 400, "problem (the question text) is required"),
        ("/v1/solve", {"problem": "1+1", "mode": "guess"}, 400, "mode must be one of cot, pot, tir"),
        # the wrong model, an unknown route, more samples than the queue holds
        ("/v1/completions", {"model": "gpt-4", "prompt": "x"}, 404, "the model 'gpt-4' does not exist"),
        ("/v1/embeddings", {"input": "x"}, 404, "no route POST /v1/embeddings"),
        ("/v1/completions", {"prompt": "x", "n": 17}, 400, "17 samples at once exceed this server's queue of 16"),
    ],
)
def test_bad_requests(served, path, body, status, message):
    got, _, response = served.post(path, body)
    assert got == status
    assert message in response["error"]["message"]
    assert response["error"]["code"] == status


@pytest.mark.parametrize(
    "raw, headers, status, message",
    [
        (b"{not json", None, 400, "not valid JSON"),
        (b"[1, 2]", None, 400, "must be a JSON object"),
        (b"x" * 70_000, None, 413, "exceeds the limit of 64,000"),
    ],
)
def test_bad_bodies(served, raw, headers, status, message):
    got, _, response = served.post("/v1/completions", None, raw=raw, headers=headers)
    assert got == status and message in response["error"]["message"]


def chunked_post(served, pieces):
    conn = http.client.HTTPConnection(served.host, served.port, timeout=30)
    try:
        conn.request("POST", "/v1/completions", body=iter(pieces), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def test_chunked_bodies_are_read_within_the_limit(served):
    # a body without Content-Length is counted as it arrives: small ones work, big ones get 413
    status, body = chunked_post(served, [json.dumps({"prompt": CHAT, "max_tokens": 2}).encode()])
    assert status == 200 and body["choices"][0]["finish_reason"] in ("stop", "length")
    status, body = chunked_post(served, [b"x" * 20_000] * 4)
    assert status == 413 and "exceeds the limit of 64,000 bytes" in body["error"]["message"]


def test_health(served):
    status, _, body = served.request("GET", "/health")
    assert status == 200 and body["status"] == "ok" and body["samples_admitted"] == 0


def test_full_queue_answers_429_and_loses_nothing(gated):
    serving, backend = gated
    with ThreadPoolExecutor(8) as pool:
        # 1) four samples fill the queue of four
        first = [pool.submit(serving.post, "/v1/completions", {"prompt": f"p {i}", "max_tokens": 2})
                 for i in range(4)]
        deadline = time.monotonic() + 10
        while len(backend.queued) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        # 2) more are refused at once, with Retry-After
        status, headers, body = serving.post("/v1/completions", {"prompt": "late", "max_tokens": 2})
        assert status == 429 and headers["Retry-After"] == "1"
        assert "server busy" in body["error"]["message"]
        # 3) once the engine moves, every admitted request completes
        backend.gate.set()
        results = [future.result(timeout=10) for future in first]
    assert [r[2]["choices"][0]["text"] for r in results] == ["0", "1", "2", "3"]
    assert serving.post("/v1/completions", {"prompt": "late", "max_tokens": 2})[0] == 200


def test_connections_beyond_the_limit_get_503(gated):
    serving, _ = gated
    idle = []
    for _ in range(8):  # hold every connection slot with idle keep-alive connections
        conn = http.client.HTTPConnection(serving.host, serving.port, timeout=10)
        conn.connect()
        idle.append(conn)
    time.sleep(0.2)
    status, _, _ = serving.request("GET", "/health")
    assert status == 503  # uvicorn's limit_concurrency
    for conn in idle:
        conn.close()
    deadline = time.monotonic() + 10
    while serving.request("GET", "/health")[0] != 200:
        assert time.monotonic() < deadline, "slots were not given back"
        time.sleep(0.05)


def test_engine_failure_answers_503(hf_backend):
    class Broken(GatedBackend):
        def step(self):
            raise RuntimeError("CUDA error: device lost")

    serving = Serving(Broken())
    try:
        status, _, body = serving.post("/v1/completions", {"prompt": "x"})
        assert status == 503 and "device lost" in body["error"]["message"]
        assert serving.request("GET", "/health")[0] == 503
        assert serving.post("/v1/completions", {"prompt": "x"})[0] == 503
    finally:
        serving.close()


# --- /v1/solve -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["cot", "tir"])
def test_solve_runs_a_whole_solution(served, hf_backend, mode):
    from qwen_math.solve import solve

    body = {"problem": "What is 2+2?", "mode": mode, "n": 2, "max_tokens": 24, "seed": 1}
    status, _, response = served.post("/v1/solve", body)
    assert status == 200 and response["object"] == "solution"
    local = solve("What is 2+2?", mode=mode, sampling=parse_sampling(body)[0], backend=hf_backend)
    assert [s["turns"] for s in response["samples"]] == [
        [turn.to_json() for turn in sample.turns] for sample in local.samples]
    assert response["votes"] == dict(local.votes)


def solve_scripted_tir(tmp_path, **fields):
    """POST /v1/solve to a server whose backend writes one program (print(6*7)), then answers."""
    from qwen_math.backends.scripted import ScriptedBackend, read_script
    from qwen_math.tokenizer import load_offline_tokenizer

    script = tmp_path / "script.jsonl"
    script.write_text(json.dumps([
        "Compute it.\n```python\nprint(6*7)\n```\n```output", "The answer is $\\boxed{42}$."]) + "\n")
    serving = Serving(ScriptedBackend(read_script(script), tokenizer=load_offline_tokenizer()))
    try:
        return serving.post("/v1/solve", {"problem": "What is 6 times 7?", "mode": "tir", **fields})
    finally:
        serving.close()


def test_solve_executes_code_server_side(tmp_path):
    status, _, body = solve_scripted_tir(tmp_path)
    assert status == 200 and body["answer"] == "42"
    [first, _] = body["samples"][0]["turns"]
    assert first["code"].strip() == "print(6*7)" and first["output"].strip() == "42"


def test_solve_streams_turns_and_program_outputs(tmp_path):
    status, headers, text = solve_scripted_tir(tmp_path, stream=True)
    assert status == 200 and headers["Content-Type"].startswith("text/event-stream")
    chunks, done = events(text)
    assert done
    # the first turn, its program's output, the second turn, then the whole solution
    assert [c["object"] for c in chunks] == ["solve.turn", "solve.output", "solve.turn", "solution"]
    assert "```python" in chunks[0]["text"]
    assert chunks[1]["code"].strip() == "print(6*7)" and "42" in chunks[1]["output"]
    assert chunks[-1]["answer"] == "42"


# --- pure request parsing ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, temperature, top_p, max_tokens",
    [
        # unset fields take the project's defaults, not OpenAI's (temperature 1, 16 tokens)
        ({}, 0.0, 1.0, 2048),
        ({"n": 4}, 0.7, 0.8, 2048),
        ({"temperature": 0.5, "max_tokens": 7}, 0.5, 0.8, 7),
        ({"max_completion_tokens": 9}, 0.0, 1.0, 9),
    ],
)
def test_parse_sampling_defaults(body, temperature, top_p, max_tokens):
    sampling, seed = parse_sampling(body)
    assert (sampling.temperature, sampling.top_p, sampling.max_tokens, seed) == (temperature, top_p, max_tokens, None)


def test_sample_seeds():
    import random

    assert sample_seeds(5, 3, random.Random(0)) == [5, 6, 7]
    fresh = sample_seeds(None, 3, random.Random(0))
    assert len(set(fresh)) == 3 and all(0 <= s < 2**63 for s in fresh)


def test_parse_prompts_decodes_ids():
    assert parse_prompts([[1, 2], "b"], lambda ids: "".join(map(str, ids))) == ["12", "b"]


# --- load: 64 concurrent clients ---------------------------------------------------------------------
def rss_bytes() -> int:
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("no /proc: cannot read memory use")
    match = re.search(r"VmRSS:\s+(\d+) kB", status.read_text())
    return int(match.group(1)) * 1024


def test_64_concurrent_clients(served):
    body = {"prompt": CHAT, "max_tokens": 6}

    def burst():
        with ThreadPoolExecutor(64) as pool:
            return list(pool.map(lambda i: served.post("/v1/completions", {**body, "seed": i})[0], range(64)))

    # 1) without retries: every request is answered, 200 or 429 (the queue holds 16), nothing else
    statuses = burst()
    assert set(statuses) <= {200, 429} and 200 in statuses
    # 2) with the openai client's retries: all 64 complete
    client = OpenAIClient(served.url, timeout_s=60, retry=RetryPolicy(max_retries=30, base_delay_s=0.05, max_delay_s=0.5))
    with ThreadPoolExecutor(64) as pool:
        answers = list(pool.map(lambda i: client.post("completions", {**body, "seed": i}), range(64)))
    assert all(answer["choices"][0]["finish_reason"] in ("stop", "length") for answer in answers)
    # 3) memory stays flat over further bursts
    before = rss_bytes()
    for _ in range(3):
        assert set(burst()) <= {200, 429}
    assert rss_bytes() - before < 64 * 2**20
    assert served.request("GET", "/health")[2]["samples_admitted"] == 0
