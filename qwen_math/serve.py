"""An OpenAI-compatible HTTP server over any ``Backend`` (in practice the in-process engine).

Endpoints:

- ``GET /v1/models``: the one served model, with ``max_model_len`` (its context window);
- ``POST /v1/completions``: text or token-id prompts (one or a batch), ``n`` samples each,
  every ``SamplingConfig`` field (``top_k``, ``seed`` included); ``stream: true`` answers with
  server-sent events; each choice carries vLLM's ``stop_reason`` (the stop string that matched,
  ``null`` at end of sequence) and its ``token_ids``;
- ``POST /v1/chat/completions``: messages rendered with the model's chat template;
- ``POST /v1/solve``: a whole CoT/PoT/TIR solve (``qwen_math.solve.solve``) with the sandbox
  running server-side; the answer, the vote table and every trace come back;
- ``GET /health``: liveness and queue occupancy.

Threads: one *engine thread* owns the backend and is the only one to call it; each HTTP
connection has a handler thread that opens an ``EngineSession`` (itself a ``Backend``, so
``solve`` runs over it unchanged, its sandbox calls in the handler thread while other requests
decode). Sample ``i`` of a request with ``seed s`` uses seed ``s + i``; without a seed each
sample gets a fresh random one, as OpenAI servers do. Unset sampling fields take the project's
defaults (greedy for one sample, temperature 0.7 / top-p 0.8 for several, 2048 new tokens),
not OpenAI's (temperature 1, 16 tokens).

Limits: binds to 127.0.0.1 unless told otherwise (``/v1/solve`` runs code: expose it only
behind your own authentication); bodies over ``max_body_bytes`` get 413; samples admitted
(queued or decoding) are bounded by ``max_queue`` and a request that would exceed it gets 429
with ``Retry-After``; connections beyond ``max_connections`` get 429 at once.

What it deliberately does not do: authentication, TLS, token-by-token streaming (the backend
protocol returns whole completions: a stream sends each sample when it finishes), logprobs,
penalties, or serving several models.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import logging
import queue
import random
import socket
import socketserver
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from qwen_math.backends.base import Backend, Completion, GenerationRequest, run_to_completion
from qwen_math.config import (
    DEFAULT_MAX_TOKENS,
    SamplingConfig,
    default_sampling,
)
from qwen_math.errors import EnvironmentUnavailable, QwenMathError, UsageError

log = logging.getLogger(__name__)

MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class ServeConfig:
    """How the server listens and how much it admits."""

    model_name: str
    host: str = "127.0.0.1"
    port: int = 8000  # 0 picks a free port
    max_body_bytes: int = 1 << 20
    max_queue: int = 256  # samples queued or decoding, all requests together
    max_connections: int = 256  # connections handled at once (each holds a thread)
    idle_timeout_s: float = 30.0  # an idle keep-alive connection is closed after this
    tir_protocol: str = "qwen-agent"  # /v1/solve's default (``serve --tir-protocol``)


# --- errors ------------------------------------------------------------------------------------
class ApiError(Exception):
    """An error answered as ``{"error": {...}}`` with an HTTP status."""

    def __init__(self, status: int, message: str, *, kind: str = "invalid_request_error",
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.kind, "code": self.status}}


def overloaded(message: str) -> ApiError:
    return ApiError(429, message, kind="rate_limit_error", headers={"Retry-After": "1"})


class EngineFailed(QwenMathError):
    """The backend raised while stepping; its in-flight requests are lost."""


# --- the engine thread ---------------------------------------------------------------------------
class EngineLoop:
    """Owns the backend: admits sessions, feeds their requests to it, routes completions back."""

    def __init__(self, backend: Backend, *, max_queue: int) -> None:
        self.backend = backend
        self.max_queue = max_queue
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._admitted = 0
        self._ids = itertools.count()
        self._owners: dict[str, tuple[EngineSession, str]] = {}  # engine thread only
        self._failure: str | None = None
        self._thread = threading.Thread(target=self._run, name="engine", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._inbox.put(None)
        self._thread.join(timeout=30)

    @property
    def admitted(self) -> int:
        return self._admitted

    @property
    def failure(self) -> str | None:
        return self._failure

    def open_session(self, samples: int) -> EngineSession:
        """Reserve room for ``samples`` concurrent requests, or raise 429 when full."""
        with self._lock:
            if self._failure is not None:
                raise ApiError(503, f"the engine failed and must be restarted: {self._failure}",
                               kind="server_error")
            if samples > self.max_queue:
                raise ApiError(400, f"{samples} samples at once exceed this server's queue of "
                                    f"{self.max_queue}; send fewer")
            if self._admitted + samples > self.max_queue:
                raise overloaded(f"server busy: {self._admitted} of {self.max_queue} sample slots "
                                 "in use; retry shortly")
            self._admitted += samples
        return EngineSession(self, samples)

    def release(self, samples: int) -> None:
        with self._lock:
            self._admitted -= samples

    def submit(self, session: EngineSession, request: GenerationRequest) -> None:
        internal = replace(request, request_id=f"q{next(self._ids)}")
        self._inbox.put((session, request.request_id, internal))

    # --- runs on the engine thread ---
    def _run(self) -> None:
        try:
            self._serve_requests()
        except Exception as exc:  # every waiting request must hear of it
            self._fail_all(f"{type(exc).__name__}: {exc}")
            log.exception("the engine failed; answering 503 from now on")
        finally:
            self._fail_all(self._failure or "the server is shutting down")

    def _serve_requests(self) -> None:
        while True:
            # 1) take new requests: block while the backend is idle, else only drain the inbox
            if not self._take_requests(block=not self.backend.has_unfinished()):
                return
            # 2) advance the backend one step and hand each finished completion to its session
            if self.backend.has_unfinished():
                for completion in self.backend.step():
                    self._deliver(completion)

    def _take_requests(self, *, block: bool) -> bool:
        """Move waiting requests into the backend; False when asked to stop."""
        while True:
            try:
                item = self._inbox.get(timeout=1.0) if block else self._inbox.get_nowait()
            except queue.Empty:
                if block:
                    continue
                return True
            if item is None:
                return False
            session, client_id, request = item
            self._owners[request.request_id] = (session, client_id)
            try:
                self.backend.add_request(request)
            except Exception as exc:  # noqa: BLE001 - a bad request fails alone
                del self._owners[request.request_id]
                session.deliver(exc)
            block = False

    def _deliver(self, completion: Completion) -> None:
        owner = self._owners.pop(completion.request_id, None)
        if owner is None:
            log.warning("completion for unknown request %s dropped", completion.request_id)
            return
        session, client_id = owner
        session.deliver(replace(completion, request_id=client_id))

    def _fail_all(self, reason: str) -> None:
        with self._lock:
            self._failure = self._failure or reason
        for session, _ in self._owners.values():
            session.deliver(EngineFailed(reason))
        self._owners.clear()


class EngineSession:
    """One HTTP request's share of the engine, seen as a ``Backend`` (``solve`` runs over it).

    It holds ``samples`` reserved slots: at most that many of its requests are in flight at
    once (a TIR trajectory has one request in flight at a time), so a running solve is never
    refused halfway. ``close`` gives the slots back.
    """

    name = "session"

    def __init__(self, loop: EngineLoop, samples: int) -> None:
        self._loop = loop
        self._slots = samples
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._in_flight = 0  # touched by the handler thread only
        self._closed = False
        self._lock = threading.Lock()
        self.tokenizer = loop.backend.tokenizer
        self.context_window = loop.backend.context_window

    def __enter__(self) -> EngineSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def count_tokens(self, text: str) -> int:
        return self._loop.backend.count_tokens(text)

    def add_request(self, request: GenerationRequest) -> None:
        if self._in_flight >= self._slots:
            raise UsageError(f"a session of {self._slots} slots cannot run more requests at once")
        self._in_flight += 1
        self._loop.submit(self, request)

    def has_unfinished(self) -> bool:
        return self._in_flight > 0

    def step(self) -> list[Completion]:
        """Wait for this session's next completion (and take any others already done)."""
        finished = [self._take(block=True)]
        while True:
            try:
                finished.append(self._take(block=False))
            except queue.Empty:
                return finished

    def _take(self, *, block: bool) -> Completion:
        item = self._results.get(block=block)
        self._in_flight -= 1
        if isinstance(item, BaseException):
            raise item
        return item

    def deliver(self, item: Completion | BaseException) -> None:
        """Called by the engine thread; after ``close`` the result only frees its slot."""
        with self._lock:
            if not self._closed:
                self._results.put(item)
                return
        self._loop.release(1)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return run_to_completion(self, requests)

    def completions(self) -> Iterator[Completion]:
        """Each completion as it finishes, until none is in flight."""
        while self.has_unfinished():
            yield from self.step()

    def close(self) -> None:
        """Give back the slots: now for what is done, on delivery for what is still running."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            while True:
                try:
                    self._results.get_nowait()
                except queue.Empty:
                    break
                self._in_flight -= 1
            free_now = self._slots - self._in_flight
        self._loop.release(free_now)


# --- request parsing (pure) --------------------------------------------------------------------------
NUMBER = (int, float)


def get_field(body: Mapping[str, Any], name: str, types: type | tuple[type, ...], default: Any) -> Any:
    """``body[name]`` checked against ``types`` (``None`` means the default)."""
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise ApiError(400, f"{name} must be {type_names(types)}, got {json.dumps(value)}")
    if not isinstance(value, types):
        raise ApiError(400, f"{name} must be {type_names(types)}, got {json.dumps(value)[:60]}")
    return value


def type_names(types: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "an object"}
    types = types if isinstance(types, tuple) else (types,)
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


#: Fields accepted only at the value that means "off" (the backend protocol has no such knob).
UNSUPPORTED_AT: dict[str, tuple[Any, ...]] = {
    "repetition_penalty": (1, 1.0),
    "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0),
    "min_p": (0, 0.0),
    "logprobs": (0, False),
    "top_logprobs": (0,),
    "echo": (False,),
    "suffix": ("",),
    "logit_bias": ({},),
    "include_stop_str_in_output": (False,),
    "skip_special_tokens": (True,),
}


def parse_sampling(body: Mapping[str, Any]) -> tuple[SamplingConfig, int | None]:
    """The request's sampling (project defaults for unset fields) and its seed, if any."""
    for name, allowed in UNSUPPORTED_AT.items():
        if body.get(name) is not None and body[name] not in allowed:
            raise ApiError(400, f"{name}={json.dumps(body[name])} is not supported by this server")
    n = get_field(body, "n", int, 1)
    best_of = get_field(body, "best_of", int, n)
    if best_of != n:
        raise ApiError(400, f"best_of={best_of} is not supported (only best_of = n)")
    stop = get_field(body, "stop", (str, list), [])
    stop = [stop] if isinstance(stop, str) else stop
    if not all(isinstance(item, str) for item in stop):
        raise ApiError(400, "stop must be a string or a list of strings")
    max_tokens = get_field(body, "max_completion_tokens", int, None)
    max_tokens = get_field(body, "max_tokens", int, max_tokens or DEFAULT_MAX_TOKENS)
    seed = get_field(body, "seed", int, None)
    try:
        sampling = default_sampling(
            n=n, temperature=get_field(body, "temperature", NUMBER, None),
            top_p=get_field(body, "top_p", NUMBER, None), top_k=get_field(body, "top_k", int, -1),
            max_tokens=max_tokens, stop=tuple(item for item in stop if item),
            seed=0 if seed is None else seed,
        )
    except UsageError as exc:
        raise ApiError(400, str(exc)) from None
    return sampling, seed


def sample_seeds(seed: int | None, n: int, rng: random.Random) -> list[int]:
    """Seed of each sample: ``seed + i`` when the request has one, else fresh random seeds."""
    if seed is None:
        return [rng.randrange(MAX_SEED) for _ in range(n)]
    return [(seed + i) % (MAX_SEED + 1) for i in range(n)]


def parse_prompts(value: Any, decode: Callable[[list[int]], str] | None) -> list[str]:
    """``prompt`` as a list of texts: a string, token ids, or a batch of either."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(is_token_id(item) for item in value):
        return [decode_ids(value, decode)]
    if isinstance(value, list) and value and all(isinstance(item, (str, list)) for item in value):
        return [item if isinstance(item, str) else parse_prompts(item, decode)[0] for item in value]
    raise ApiError(400, "prompt must be a string, a list of token ids, or a non-empty list of either")


def is_token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def decode_ids(ids: list[int], decode: Callable[[list[int]], str] | None) -> str:
    if decode is None:
        raise ApiError(400, "this server has no tokenizer; send the prompt as text")
    try:
        return decode(ids)
    except (ValueError, TypeError, IndexError, OverflowError) as exc:
        raise ApiError(400, f"prompt token ids cannot be decoded: {exc}") from None


def parse_messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise ApiError(400, "messages must be a non-empty list of {role, content} objects")
    messages = []
    for index, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise ApiError(400, f"messages[{index}] must have role system, user or assistant")
        content = message.get("content")
        if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str):
            raise ApiError(400, f"messages[{index}].content must be text")
        messages.append({"role": message["role"], "content": content})
    return messages


def render_chat(messages: list[dict[str, str]], tokenizer: Any) -> str:
    """The prompt for ``messages``: the tokenizer's chat template, else ChatML."""
    from qwen_math.prompts import CHATML, GENERATION_PROMPT

    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "".join(CHATML.format(role=m["role"], content=m["content"]) for m in messages) + GENERATION_PROMPT


# --- responses (pure) -----------------------------------------------------------------------------
def finish_fields(completion: Completion) -> dict[str, Any]:
    """OpenAI's ``finish_reason`` plus vLLM's ``stop_reason`` (which stop matched)."""
    if completion.finish_reason == "length":
        return {"finish_reason": "length", "stop_reason": None}
    return {"finish_reason": "stop", "stop_reason": completion.stop_string}


def usage_of(completions: Sequence[Completion], prompt_tokens: Sequence[int]) -> dict[str, int]:
    prompt = sum(prompt_tokens)
    generated = sum(c.completion_tokens for c in completions)
    return {"prompt_tokens": prompt, "completion_tokens": generated, "total_tokens": prompt + generated}


def completion_choice(index: int, completion: Completion) -> dict[str, Any]:
    return {"index": index, "text": completion.text, "logprobs": None,
            "token_ids": list(completion.token_ids), **finish_fields(completion)}


def chat_choice(index: int, completion: Completion) -> dict[str, Any]:
    return {"index": index, "message": {"role": "assistant", "content": completion.text},
            "logprobs": None, **finish_fields(completion)}


def solve_options(body: Mapping[str, Any], *, default_tir_protocol: str = "qwen-agent") -> dict[str, Any]:
    """Keyword arguments for ``qwen_math.solve.solve`` from a ``/v1/solve`` body (parsed by
    ``qwen_math.solve_request``, the one solve-request parser)."""
    from qwen_math.solve_request import parse_solve_request

    try:
        request = parse_solve_request(body, default_tir_protocol=default_tir_protocol)
    except UsageError as exc:
        raise ApiError(400, str(exc)) from None
    return {"problem": request.problem, **request.solve_kwargs()}


# --- the application ------------------------------------------------------------------------------
class App:
    """The endpoints, over one ``EngineLoop``. Each method answers one parsed request."""

    def __init__(self, backend: Backend, config: ServeConfig) -> None:
        self.config = config
        self.backend = backend
        self.engine = EngineLoop(backend, max_queue=config.max_queue)
        self.connections = threading.BoundedSemaphore(config.max_connections)
        self.sandbox_pool = sandbox_pool()  # /v1/solve's code runs here (driver started on first use)
        self._rng = random.Random()  # seeds for requests without one
        self._rng_lock = threading.Lock()
        self.get_routes: dict[str, Callable[[], dict[str, Any]]] = {
            "/v1/models": self.models, "/health": self.health,
        }
        self.post_routes: dict[str, Callable[[dict[str, Any]], Any]] = {
            "/v1/completions": self.completions,
            "/v1/chat/completions": self.chat_completions,
            "/v1/solve": self.solve,
        }

    def models(self) -> dict[str, Any]:
        card = {"id": self.config.model_name, "object": "model", "created": 0, "owned_by": "qwen-math",
                "max_model_len": self.backend.context_window}
        return {"object": "list", "data": [card]}

    def health(self) -> dict[str, Any]:
        failure = self.engine.failure
        if failure is not None:
            raise ApiError(503, f"engine failed: {failure}", kind="server_error")
        return {"status": "ok", "samples_admitted": self.engine.admitted, "max_queue": self.config.max_queue}

    def check_model(self, body: Mapping[str, Any]) -> None:
        model = body.get("model")
        if model is not None and model != self.config.model_name:
            raise ApiError(404, f"the model {model!r} does not exist; this server serves "
                                f"{self.config.model_name!r}", kind="not_found_error")

    def seeds(self, seed: int | None, n: int) -> list[int]:
        with self._rng_lock:
            return sample_seeds(seed, n, self._rng)

    # --- /v1/completions and /v1/chat/completions ---
    def completions(self, body: dict[str, Any]) -> Any:
        self.check_model(body)
        if "prompt" not in body:
            raise ApiError(400, "prompt is required")
        decode = self.decoder()
        prompts = parse_prompts(body["prompt"], decode)
        return self.sample(body, prompts, kind="text_completion", choice=completion_choice)

    def chat_completions(self, body: dict[str, Any]) -> Any:
        self.check_model(body)
        prompt = render_chat(parse_messages(body.get("messages")), self.backend.tokenizer)
        return self.sample(body, [prompt], kind="chat.completion", choice=chat_choice)

    def decoder(self) -> Callable[[list[int]], str] | None:
        tokenizer = self.backend.tokenizer
        if tokenizer is None:
            return None
        return lambda ids: tokenizer.decode(ids, skip_special_tokens=False)

    def sample(self, body: Mapping[str, Any], prompts: list[str], *, kind: str,
               choice: Callable[[int, Completion], dict[str, Any]]) -> Any:
        sampling, seed = parse_sampling(body)
        stream = get_field(body, "stream", bool, False)
        include_usage = bool((get_field(body, "stream_options", dict, {}) or {}).get("include_usage"))
        n = sampling.n
        seeds = self.seeds(seed, n)
        requests = [
            GenerationRequest(str(p * n + i), prompt, sampling, seed=seeds[i])
            for p, prompt in enumerate(prompts) for i in range(n)
        ]
        session = self.engine.open_session(len(requests))
        try:
            for request in requests:
                session.add_request(request)
        except BaseException:
            session.close()
            raise
        header = {"id": f"{'chatcmpl' if kind.startswith('chat') else 'cmpl'}-{uuid.uuid4().hex}",
                  "created": int(time.time()), "model": self.config.model_name}
        if stream:
            return self.stream(session, header, kind, choice, include_usage=include_usage, n=n)
        with session:
            done = {int(c.request_id): c for c in session.completions()}
        ordered = [done[index] for index in range(len(requests))]
        prompt_tokens = [ordered[p * n].prompt_tokens for p in range(len(prompts))]
        return {**header, "object": kind, "choices": [choice(i, c) for i, c in enumerate(ordered)],
                "usage": usage_of(ordered, prompt_tokens)}

    def stream(self, session: EngineSession, header: dict[str, Any], kind: str,
               choice: Callable[[int, Completion], dict[str, Any]], *, include_usage: bool,
               n: int) -> Iterator[dict[str, Any]]:
        """Server-sent events: one chunk per sample as it finishes, then usage (if asked)."""
        chunk_kind = "chat.completion.chunk" if kind.startswith("chat") else "text_completion"
        finished: list[Completion] = []
        with session:
            for completion in session.completions():
                finished.append(completion)
                item = choice(int(completion.request_id), completion)
                if "message" in item:  # chat: a delta instead of a message
                    item["delta"] = item.pop("message")
                yield {**header, "object": chunk_kind, "choices": [item]}
        if include_usage:
            per_prompt = {int(c.request_id) // n: c.prompt_tokens for c in finished}
            yield {**header, "object": chunk_kind, "choices": [],
                   "usage": usage_of(finished, list(per_prompt.values()))}

    # --- /v1/solve ---
    def solve(self, body: dict[str, Any]) -> dict[str, Any]:
        from qwen_math.solve import solve

        self.check_model(body)
        options = solve_options(body, default_tir_protocol=self.config.tir_protocol)
        started = time.monotonic()
        with self.engine.open_session(options["sampling"].n) as session:
            solution = solve(options.pop("problem"), backend=session, sandbox_pool=self.sandbox_pool, **options)
        return {"object": "solution", "model": self.config.model_name, **solution.to_json(),
                "duration_s": round(time.monotonic() - started, 3)}


# --- HTTP -----------------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    """Parses HTTP, calls the ``App``, writes JSON or server-sent events."""

    protocol_version = "HTTP/1.1"
    server_version = "qwen-math"
    server: Server

    def setup(self) -> None:
        self.timeout = self.server.app.config.idle_timeout_s
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        route = self.server.app.get_routes.get(self.path.split("?", 1)[0])
        self.answer(lambda: route() if route else self.not_found())

    def do_POST(self) -> None:
        route = self.server.app.post_routes.get(self.path.split("?", 1)[0])
        if route is None:
            self.close_connection = True  # the body was not read
            self.answer(self.not_found)
            return
        self.answer(lambda: route(self.read_json()))

    def not_found(self) -> Any:
        raise ApiError(404, f"no route {self.command} {self.path}", kind="not_found_error")

    def read_json(self) -> dict[str, Any]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            raise ApiError(411, "chunked bodies are not accepted; send Content-Length")
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            raise ApiError(411, "a Content-Length header is required")
        limit = self.server.app.config.max_body_bytes
        if int(length) > limit:
            self.close_connection = True
            raise ApiError(413, f"request body of {int(length):,} bytes exceeds the limit of {limit:,}")
        raw = self.rfile.read(int(length))
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the body must be a JSON object")
        return body

    def answer(self, call: Callable[[], Any]) -> None:
        try:
            result = call()
            if isinstance(result, Iterator):
                self.send_events(result)
            else:
                self.send_json(200, result)
        except ApiError as exc:
            self.send_json(exc.status, exc.body(), exc.headers)
        except UsageError as exc:
            self.send_json(400, ApiError(400, str(exc)).body())
        except EngineFailed as exc:
            self.send_json(503, ApiError(503, f"engine failed: {exc}", kind="server_error").body())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # answered as a 500, logged with its traceback
            log.exception("internal error on %s %s", self.command, self.path)
            self.send_json(500, ApiError(500, f"internal error: {type(exc).__name__}", kind="server_error").body())

    def send_json(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def send_events(self, events: Iterator[dict[str, Any]]) -> None:
        """Server-sent events; the connection closes after ``data: [DONE]``."""
        self.close_connection = True
        first = next(events, None)  # errors before the first event still get a JSON answer
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        try:
            for event in itertools.chain([first] if first is not None else [], events):
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
        except ApiError as exc:
            self.wfile.write(f"data: {json.dumps(exc.body())}\n\n".encode())
        except QwenMathError as exc:  # the engine failed, or a request was refused
            error = ApiError(503 if isinstance(exc, EngineFailed) else 400, str(exc))
            self.wfile.write(f"data: {json.dumps(error.body())}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


class Server(ThreadingHTTPServer):
    """A threading HTTP server that turns connections away (429) beyond ``max_connections``."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024  # the listen backlog: bursts of connects wait, not reset

    def __init__(self, app: App) -> None:
        self.app = app
        host = app.config.host
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, app.config.port), Handler)

    def server_bind(self) -> None:
        """Bind without ``HTTPServer``'s reverse DNS lookup of the host (slow offline)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/v1"

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.app.connections.acquire(blocking=False):
            reject_connection(request)
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.app.connections.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.app.connections.release()


TOO_MANY_CONNECTIONS = json.dumps(overloaded("too many connections; retry shortly").body()).encode()


def reject_connection(request: socket.socket) -> None:
    """Answer 429 on a connection we will not serve (without reading its request)."""
    head = (f"HTTP/1.1 429 {HTTPStatus.TOO_MANY_REQUESTS.phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(TOO_MANY_CONNECTIONS)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n")
    try:
        request.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            request.recv(1 << 16)  # what already arrived: unread data would turn close into a reset
        request.settimeout(1.0)
        request.sendall(head.encode() + TOO_MANY_CONNECTIONS)
    except OSError:
        pass


def check_listen_address(host: str, port: int) -> None:
    """Fail before a model loads when ``host:port`` cannot be listened on: a host that is no
    address of this machine is a ``UsageError``, a port in use (or refused) is unavailable."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
            probe.bind((host, port))
    except socket.gaierror as exc:
        raise UsageError(f"--host {host!r}: not a host name or address here ({exc.strerror})") from None
    except OSError as exc:
        if exc.errno == errno.EADDRNOTAVAIL:
            raise UsageError(f"--host {host}: not an address of this machine") from None
        raise EnvironmentUnavailable(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def make_server(backend: Backend, config: ServeConfig) -> Server:
    """A bound, not yet serving, server with its engine thread started."""
    app = App(backend, config)
    server = Server(app)
    app.engine.start()
    return server


def shutdown(server: Server) -> None:
    """Stop accepting, fail what is in flight, stop the engine thread, release the port."""
    server.shutdown()
    server.app.engine.stop()
    server.app.sandbox_pool.close()
    server.server_close()


def sandbox_pool():  # -> sandbox.SandboxPool
    from sandbox import SandboxPool

    return SandboxPool()
