"""The openai backend against the real `qwen-math serve` (a subprocess on a loopback port, over
the tiny checkpoint): the same completions as the hf backend for CoT, TIR continuations and
n > 1; retries across a server restart; a 429 storm; timeouts; and `qwen-math eval --backend
openai` producing the samples `--backend hf` does. Fake HTTP servers (loopback, in this
process) pin the retry policy, the API key handling and the fallbacks."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from qwen_math.backends.base import BackendOptions, GenerationRequest, get_backend_class
from qwen_math.backends.openai_compat import (
    NotAuthorized,
    OpenAIBackend,
    OpenAIClient,
    RetryPolicy,
    chat_messages,
    completion_body,
    error_message,
    finish_of,
    retry_after_seconds,
)
from qwen_math.cli import main
from qwen_math.config import SamplingConfig
from qwen_math.errors import EnvironmentUnavailable, UsageError
from qwen_math.record import strip_time_dependent
from qwen_math.runs.store import RunLayout

SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
QUESTIONS = ("What is 2+2?", "Compute 7*8.", "Solve x + 3 = 5.")
FAST_RETRY = RetryPolicy(max_retries=40, base_delay_s=0.05, max_delay_s=0.5)


def chat(question: str) -> str:
    return (f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n"
            "<|im_start|>assistant\n")


# --- the real server ------------------------------------------------------------------------------
class ServeProcess:
    """`python -m qwen_math serve` on a loopback port; waits for its "serving ... on URL" line."""

    def __init__(self, checkpoint, *flags: str, port: int = 0) -> None:
        command = [sys.executable, "-m", "qwen_math", "-q", "serve", "--model", str(checkpoint),
                   "--port", str(port), "--device", "cpu", "--dtype", "float32", *flags]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}  # leave the test's own engine a core
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.url = self._wait_for_url(deadline_s=120)
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def _wait_for_url(self, *, deadline_s: float) -> str:
        found: list[str] = []
        reader = threading.Thread(target=lambda: found.append(self.process.stdout.readline()), daemon=True)
        reader.start()
        reader.join(deadline_s)
        if not found or "serving" not in found[0]:
            self.stop()
            raise AssertionError(f"server did not start: {found} {self.process.stderr.read()[-2000:]}")
        return found[0].split(" on ")[-1].strip()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self.process.stdout, self.process.stderr):
            stream.close()


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    """The server every test shares; its queue of 4 samples makes overload easy to reach."""
    serving = ServeProcess(tiny_checkpoint, "--max-queue", "4")
    yield serving
    serving.stop()


def openai_backend(checkpoint, url, *, concurrency=4, retry=FAST_RETRY, timeout_s=60.0) -> OpenAIBackend:
    created = OpenAIBackend.create(BackendOptions(model=str(checkpoint), base_url=url, max_concurrency=concurrency))
    created.close()
    client = OpenAIClient(url, timeout_s=timeout_s, retry=retry)
    return OpenAIBackend(client, model=str(checkpoint), tokenizer=created.tokenizer,
                         context_window=created.context_window, max_concurrency=concurrency)


@pytest.fixture(scope="module")
def remote(server, tiny_checkpoint):
    backend = openai_backend(tiny_checkpoint, server.url)
    yield backend
    backend.close()


def same(left, right):
    """Completions compared field by field (request ids included)."""
    return [asdict(c) for c in left] == [asdict(c) for c in right]


# --- equal to the in-process engine -------------------------------------------------------------------
def test_create_reads_the_served_model(remote, hf_backend):
    assert remote.context_window == hf_backend.context_window
    assert remote.count_tokens(chat("hi")) == hf_backend.count_tokens(chat("hi"))


def test_greedy_cot_equals_hf(remote, hf_backend):
    sampling = SamplingConfig(max_tokens=24)
    requests = [GenerationRequest(f"q{i}", chat(q), sampling, seed=i) for i, q in enumerate(QUESTIONS)]
    assert same(remote.generate(requests), hf_backend.generate(requests))


def test_n_samples_equal_hf(remote, hf_backend):
    sampling = SamplingConfig(n=4, temperature=0.7, top_p=0.8, top_k=50, max_tokens=16)
    requests = [GenerationRequest(f"s{i}", chat(QUESTIONS[0]), sampling, seed=1000 + i) for i in range(4)]
    completions = remote.generate(requests)
    assert same(completions, hf_backend.generate(requests))
    assert len({c.text for c in completions}) > 1  # four seeds, four samples


def test_tir_continuation_equals_hf(remote, hf_backend):
    # a transcript after a tool call: the prompt continues the model's own turn
    transcript = chat(QUESTIONS[0]) + "Let me compute.\n```python\nprint(2+2)\n```\n```output\n4\n```\n"
    request = GenerationRequest("t", transcript, SamplingConfig(max_tokens=20, stop=("```output",)), seed=0,
                                cache_key="traj-0")
    assert same(remote.generate([request]), hf_backend.generate([request]))


def test_tir_solve_equals_hf(remote, hf_backend):
    from qwen_math.solve import solve

    sampling = SamplingConfig(n=2, temperature=0.7, top_p=0.8, max_tokens=24, seed=3)
    over_http = solve(QUESTIONS[1], mode="tir", sampling=sampling, backend=remote)
    local = solve(QUESTIONS[1], mode="tir", sampling=sampling, backend=hf_backend)
    assert [strip_time_dependent(s.to_json()) for s in over_http.samples] == [
        strip_time_dependent(s.to_json()) for s in local.samples]


def test_prompt_filling_the_context_never_reaches_the_server(remote):
    long_prompt = "1 " * (remote.context_window + 10)
    [completion] = remote.generate([GenerationRequest("long", long_prompt, SamplingConfig(max_tokens=5), seed=0)])
    assert completion.finish_reason == "length" and completion.text == ""


def test_streaming_from_the_real_server(server):
    import http.client

    host, port = "127.0.0.1", server.port
    conn = http.client.HTTPConnection(host, port, timeout=60)
    body = {"prompt": chat("hi"), "max_tokens": 6, "n": 2, "temperature": 0.7, "seed": 1, "stream": True}
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = conn.getresponse()
    text = response.read().decode()
    conn.close()
    assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
    events = [line[6:] for line in text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    # text deltas as tokens are sampled: several chunks per sample, both samples present
    assert {json.loads(e)["choices"][0]["index"] for e in events[:-1]} == {0, 1}


@pytest.mark.parametrize("signum", [
    signal.SIGTERM,
    pytest.param(signal.SIGINT, marks=pytest.mark.slow),  # one more server start
])
def test_signal_stops_the_server_cleanly(tiny_checkpoint, signum):
    # mid-stream: the stream ends, the process exits 0 with no traceback, the port is released
    import http.client

    serving = ServeProcess(tiny_checkpoint)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", serving.port, timeout=60)
        conn.request("POST", "/v1/completions", json.dumps(
            {"prompt": chat("hi"), "max_tokens": 4000, "temperature": 1.0, "seed": 1, "stream": True}))
        response = conn.getresponse()
        assert response.readline().startswith(b"data: ")
        serving.process.send_signal(signum)
        rest = response.read()  # the server ends the stream (no hang)
        conn.close()
        assert serving.process.wait(timeout=30) == 0
        assert rest.rstrip().endswith(b"data: [DONE]")
        assert "Traceback" not in serving.process.stderr.read()
        with socket.create_server(("127.0.0.1", serving.port)):
            pass
    finally:
        serving.stop()


# --- failures: storms, restarts, timeouts ----------------------------------------------------------------
def test_429_storm_is_retried_to_completion(server, tiny_checkpoint, hf_backend, caplog):
    backend = openai_backend(tiny_checkpoint, server.url, concurrency=16)
    sampling = SamplingConfig(max_tokens=12)
    requests = [GenerationRequest(f"r{i}", chat(QUESTIONS[i % 3]), sampling, seed=i) for i in range(16)]
    with caplog.at_level(logging.INFO, logger="qwen_math.backends.openai_compat"):
        completions = backend.generate(requests)
    backend.close()
    assert same(completions, hf_backend.generate(requests))
    assert any("HTTP 429" in record.getMessage() for record in caplog.records)  # the storm happened


@pytest.mark.slow  # two more server starts (~10-30 s on a busy 2-core machine)
def test_server_restarted_mid_run(tiny_checkpoint, hf_backend):
    first = ServeProcess(tiny_checkpoint)
    backend = openai_backend(tiny_checkpoint, first.url, concurrency=8)
    sampling = SamplingConfig(max_tokens=48)
    requests = [GenerationRequest(f"r{i}", chat(QUESTIONS[i % 3]), sampling, seed=i) for i in range(8)]
    for request in requests:
        backend.add_request(request)
    first.kill()  # mid-run: requests are in flight or not yet sent
    second = ServeProcess(tiny_checkpoint, port=first.port)
    try:
        done = {}
        while backend.has_unfinished():
            done.update((c.request_id, c) for c in backend.step())
    finally:
        backend.close()
        second.stop()
        first.stop()
    assert same([done[r.request_id] for r in requests], hf_backend.generate(requests))


@pytest.fixture
def silent_server():
    """A loopback socket that accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


def test_connection_refused_is_retried_until_the_server_is_up(fake):
    # a port nobody listens on yet; the server comes up while the client backs off
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    client = OpenAIClient(f"http://127.0.0.1:{port}/v1", timeout_s=5,
                          retry=RetryPolicy(max_retries=50, base_delay_s=0.05, max_delay_s=0.2))
    late = threading.Timer(0.5, lambda: servers.append(FakeOpenAI({"/completions": [OK]}, port=port)))
    servers: list[FakeOpenAI] = []
    late.start()
    try:
        assert client.post("completions", {"prompt": "x"})["choices"][0]["text"] == "4"
    finally:
        late.join()
        for server in servers:
            server.close()


def test_timeouts_are_retried_then_reported(silent_server):
    client = OpenAIClient(silent_server, timeout_s=0.3, retry=RetryPolicy(max_retries=2, base_delay_s=0.01))
    started = time.monotonic()
    with pytest.raises(EnvironmentUnavailable, match=r"failed 3 times; last: connection error: .*timed out"):
        client.post("completions", {"prompt": "x"})
    assert time.monotonic() - started < 5  # 3 attempts x 0.3 s, plus small pauses


# --- retry policy, API key, fallbacks: a scripted fake server ------------------------------------------
class FakeOpenAI:
    """A loopback HTTP server answering from a script of (status, body, headers) per path."""

    def __init__(self, script: dict[str, list[tuple[int, dict, dict]]], *, port: int = 0) -> None:
        self.script = {path: list(answers) for path, answers in script.items()}
        self.seen: list[tuple[str, dict, dict]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.respond({})

            def do_POST(self):
                self.respond(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

            def respond(self, body):
                fake.seen.append((self.path, body, dict(self.headers)))
                answers = fake.script.get(self.path.removeprefix("/v1"), [(404, {"error": {"message": "no route"}}, {})])
                status, payload, headers = answers.pop(0) if len(answers) > 1 else answers[0]
                data = json.dumps(payload).encode()
                self.send_response(status)
                for name, value in {"Content-Length": str(len(data)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def posts(self, path):
        return [body for seen_path, body, _ in self.seen if seen_path == f"/v1/{path}"]


OK = (200, {"choices": [{"text": "4", "finish_reason": "stop", "stop_reason": None}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1}}, {})
CHAT_OK = (200, {"choices": [{"message": {"role": "assistant", "content": "4"}, "finish_reason": "stop"}]}, {})
MODELS = (200, {"data": [{"id": "m", "max_model_len": 4096}]}, {})


@pytest.fixture
def fake():
    servers = []

    def make(script):
        servers.append(FakeOpenAI({"/models": [MODELS], **script}))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def fake_backend(server, *, tokenizer=None, retry=RetryPolicy(max_retries=3, base_delay_s=0.01), key=None):  # noqa: B008
    client = OpenAIClient(server.url, api_key=key, timeout_s=5, retry=retry)
    return OpenAIBackend(client, model="m", tokenizer=tokenizer or ByteTokenizer(), context_window=4096)


class ByteTokenizer:
    def encode(self, text, add_special_tokens=False):
        return list(text.encode())


def one(backend, prompt="What?", **sampling):
    [completion] = backend.generate([GenerationRequest("r", prompt, SamplingConfig(**sampling), seed=9)])
    return completion


@pytest.mark.parametrize(
    "failures",
    [
        # 429 (with Retry-After), then 5xx, then success
        [(429, {"error": {"message": "slow down"}}, {"Retry-After": "0"}), (503, {}, {}), (502, {}, {})],
        [(500, {"error": {"message": "boom"}}, {})],
    ],
)
def test_retries_on_429_and_5xx(fake, failures):
    server = fake({"/completions": [*failures, OK]})
    assert one(fake_backend(server)).text == "4"
    assert len(server.posts("completions")) == len(failures) + 1


@pytest.mark.parametrize("status", [400, 404, 413, 422])
def test_never_retries_other_4xx(fake, status):
    server = fake({"/completions": [(status, {"error": {"message": "bad field top_k"}}, {})],
                   "/chat/completions": [(status, {"error": {"message": "bad field top_k"}}, {})]})
    backend = fake_backend(server, tokenizer=None)
    backend._send_ids = False
    # (a 404 first tries /chat/completions, which cannot carry this prompt: still no retry)
    with pytest.raises(UsageError, match=f"HTTP {status}: bad field top_k"):
        one(backend, prompt="plain text, not a chat")
    assert len(server.posts("completions")) == 1


def test_gives_up_after_max_retries(fake):
    server = fake({"/completions": [(503, {"error": {"message": "overloaded"}}, {})]})
    with pytest.raises(EnvironmentUnavailable, match="failed 4 times; last: HTTP 503: overloaded"):
        one(fake_backend(server))


def test_api_key_is_sent_and_never_shown(fake, caplog, monkeypatch):
    secret = "sk-test-0123456789abcdef"
    server = fake({"/completions": [(503, {}, {}), OK]})
    monkeypatch.setenv("QM_TEST_KEY", secret)
    with caplog.at_level(logging.DEBUG):
        backend = get_backend_class("openai").create(
            BackendOptions(model="m", base_url=server.url, api_key_env="QM_TEST_KEY", max_retries=2))
        backend.client.retry = RetryPolicy(max_retries=2, base_delay_s=0.01)
        one(backend)
    assert all(headers.get("Authorization") == f"Bearer {secret}" for _, _, headers in server.seen)
    assert secret not in caplog.text and secret not in repr(backend.client) and secret not in repr(vars(backend))


def test_wrong_key_is_an_environment_error(fake):
    server = fake({"/completions": [(401, {"error": {"message": "invalid api key"}}, {})]})
    with pytest.raises(NotAuthorized, match="HTTP 401"):
        one(fake_backend(server, key="wrong"))


def test_every_sampling_parameter_is_sent(fake):
    server = fake({"/completions": [OK]})
    one(fake_backend(server), temperature=0.7, top_p=0.8, top_k=20, max_tokens=33, stop=("```output",))
    [body] = server.posts("completions")
    assert body["prompt"] == list(b"What?")  # token ids, not re-tokenised by the server
    assert {k: body[k] for k in ("temperature", "top_p", "top_k", "max_tokens", "stop", "seed", "n",
                                 "repetition_penalty", "min_p")} == {
        "temperature": 0.7, "top_p": 0.8, "top_k": 20, "max_tokens": 33, "stop": ["```output"], "seed": 9,
        "n": 1, "repetition_penalty": 1.0, "min_p": 0.0}


def test_server_refusing_token_ids_gets_text(fake):
    server = fake({"/completions": [(400, {"error": {"message": "prompt must be a string"}}, {}), OK]})
    backend = fake_backend(server)
    assert one(backend).text == "4" and one(backend).text == "4"
    prompts = [body["prompt"] for body in server.posts("completions")]
    assert prompts == [list(b"What?"), "What?", "What?"]  # switched once, for good


def test_server_without_completions_gets_chat_for_chat_prompts(fake):
    server = fake({"/chat/completions": [CHAT_OK]})
    backend = fake_backend(server)
    assert one(backend, prompt=chat("What?")).text == "4"
    [body] = server.posts("chat/completions")
    assert body["messages"] == [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What?"}]
    with pytest.raises(UsageError, match="cannot be sent as chat messages"):
        one(backend, prompt=chat("What?") + "Let me see.\n```output\n4\n```\n")


@pytest.mark.parametrize(
    "options, message",
    [
        (BackendOptions(model="m"), "--backend openai needs --base-url"),
        (BackendOptions(model="m", base_url="127.0.0.1:8000"), r"--base-url must be an http\(s\) URL"),
    ],
)
def test_create_needs_a_url(options, message):
    with pytest.raises(UsageError, match=message):
        get_backend_class("openai").create(options)


def test_create_checks_the_model_name(fake):
    server = fake({})
    with pytest.raises(UsageError, match=r"does not serve model 'other'; it serves: m"):
        get_backend_class("openai").create(BackendOptions(model="other", base_url=server.url))


# --- pure pieces -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "choice, stop, expected",
    [
        # vLLM / qwen-math serve: stop_reason names the stop string, null or an id at end of sequence
        ({"finish_reason": "stop", "stop_reason": "```output"}, ("```output",), ("stop", "```output")),
        ({"finish_reason": "stop", "stop_reason": None}, ("```output",), ("eos", None)),
        ({"finish_reason": "stop", "stop_reason": 151645}, (), ("eos", None)),
        # SGLang
        ({"finish_reason": "stop", "matched_stop": "```output"}, ("```output",), ("stop", "```output")),
        ({"finish_reason": "length"}, (), ("length", None)),
        # a server that says nothing: a stop string when the request had exactly one
        ({"finish_reason": "stop"}, ("```output",), ("stop", "```output")),
        ({"finish_reason": "stop"}, (), ("eos", None)),
    ],
)
def test_finish_of(choice, stop, expected):
    assert finish_of(choice, stop) == expected


@pytest.mark.parametrize(
    "prompt, messages",
    [
        (chat("Q"), [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Q"}]),
        ("<|im_start|>user\nmulti\nline<|im_end|>\n<|im_start|>assistant\n", [{"role": "user", "content": "multi\nline"}]),
        (chat("Q") + "partial answer", None),  # a continuation
        ("Question: 1+1\nAnswer:", None),  # few-shot text
        ("junk<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n", None),
    ],
)
def test_chat_messages(prompt, messages):
    assert chat_messages(prompt) == messages


def test_completion_body_is_explicit():
    body = completion_body("m", [1, 2], SamplingConfig(), seed=5, max_tokens=7)
    assert body["prompt"] == [1, 2] and body["max_tokens"] == 7 and body["temperature"] == 0.0
    assert body["top_k"] == -1 and body["repetition_penalty"] == 1.0 and body["stream"] is False


def test_backoff_is_bounded_and_jittered():
    import random

    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0)
    rng = random.Random(0)
    delays = [policy.delay(attempt, rng) for attempt in range(8)]
    assert all(0.25 <= d <= 0.5 for d in delays[:1]) and all(d <= 4.0 for d in delays)
    assert delays[3] >= 2.0  # 0.5 * 2**3 = 4, jittered into [2, 4]
    assert policy.delay(0, rng, retry_after_s=3.0) == 3.0  # Retry-After is a floor
    assert policy.delay(0, rng, retry_after_s=99.0) == 4.0  # ... capped


@pytest.mark.parametrize("value, seconds", [("2", 2.0), ("0", 0.0), (None, None), ("soon", None)])
def test_retry_after_seconds(value, seconds):
    assert retry_after_seconds(value) == seconds


def test_error_message_is_short():
    assert error_message(b'{"error": {"message": "bad  top_k"}}') == "bad top_k"
    assert error_message(b"x" * 1000).endswith("...")


# --- done when: `eval --backend openai` equals `eval --backend hf` -------------------------------------------
def test_eval_over_openai_equals_hf(server, tiny_checkpoint, tmp_path):
    data = tmp_path / "toy.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": "4"}) + "\n" for q in QUESTIONS))
    common = ["eval", "--datasets", str(data), "--model", str(tiny_checkpoint), "--max-tokens", "24",
              "--mode", "cot", "--device", "cpu", "--dtype", "float32", "--no-progress"]
    assert main([*common, "--backend", "hf", "--output-dir", str(tmp_path / "hf")]) == 0
    assert main([*common, "--backend", "openai", "--base-url", server.url,
                 "--output-dir", str(tmp_path / "openai")]) == 0

    def samples(run):  # written in completion order: compare by (problem, sample)
        path = RunLayout(run).samples("toy")
        records = [strip_time_dependent(json.loads(line)) for line in path.read_text().splitlines()]
        return sorted(records, key=lambda record: (record["idx"], record["sample"]))

    assert samples(tmp_path / "openai") == samples(tmp_path / "hf")


def test_no_request_leaves_loopback():
    # every address these tests talk to is 127.0.0.1 (a guard against a future edit)
    source = Path(__file__).read_text(encoding="utf-8")
    assert set(re.findall(r"http://([A-Za-z0-9.-]+)", source)) == {"127.0.0.1"}
