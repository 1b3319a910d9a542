"""An OpenAI-compatible HTTP server over any ``Backend`` (in practice the in-process engine).

Endpoints:

- ``GET /v1/models``: the one served model, with ``max_model_len`` (its context window);
- ``POST /v1/completions``: text or token-id prompts (one or a batch), ``n`` samples each,
  every ``SamplingConfig`` field (``top_k``, ``seed`` included); ``stream: true`` answers with
  server-sent events carrying text deltas as tokens are sampled; each choice carries vLLM's
  ``stop_reason`` (the stop string that matched, ``null`` at end of sequence) and its
  ``token_ids``;
- ``POST /v1/chat/completions``: messages rendered with the model's chat template;
- ``POST /v1/solve``: a whole CoT/PoT/TIR solve (``qwen_math.solve.solve``) with the sandbox
  running server-side; the answer, the vote table and every trace come back; ``stream: true``
  sends each generated turn and each program output as it happens, then the solution;
- ``GET /health``: liveness and queue occupancy.

Layers: Starlette routes over uvicorn (HTTP/1.1 keep-alive, SSE) run in one asyncio thread;
one *engine thread* owns the backend and is the only one to call it; each request opens an
``EngineSession`` (itself a ``Backend``, so ``solve`` runs over it unchanged in a worker
thread, its sandbox calls there while other requests decode). A streaming backend (the ``hf``
engine, see ``qwen_math.backends.streaming``) hands each step's sampled ids to the engine
thread, which routes them to streaming sessions; ``TextDeltas`` turns them into text (a stop
string is never streamed). A client that disconnects closes its session: its requests are
aborted in the engine and their slots freed at once. Sample ``i`` of a request with ``seed s``
uses seed ``s + i``; without a seed each sample gets a fresh random one, as OpenAI servers do.
Unset sampling fields take the project's defaults (greedy for one sample, temperature 0.7 /
top-p 0.8 for several, 2048 new tokens), not OpenAI's (temperature 1, 16 tokens).

Limits: binds to 127.0.0.1 unless told otherwise (``/v1/solve`` runs code: expose it only
behind your own authentication); bodies over ``max_body_bytes`` get 413; samples admitted
(queued or decoding) are bounded by ``max_queue`` and a request that would exceed it gets 429
with ``Retry-After``; beyond ``max_connections`` concurrent connections uvicorn answers 503.

What it deliberately does not do: authentication, TLS, logprobs, penalties, or serving several
models. Starlette and uvicorn are the optional ``serve`` extra, imported only when a server is
made.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import json
import logging
import queue
import random
import signal
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from qwen_math.backends.base import Backend, Completion, GenerationRequest, run_to_completion
from qwen_math.backends.streaming import TextDeltas, can_abort, can_stream
from qwen_math.config import (
    DEFAULT_MAX_TOKENS,
    SamplingConfig,
    default_sampling,
)
from qwen_math.errors import EnvironmentUnavailable, QwenMathError, UsageError

log = logging.getLogger(__name__)

MAX_SEED = 2**63 - 1
DISCONNECT_POLL_S = 0.25  # how often a waiting request checks that its client is still there

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
@dataclass(frozen=True)
class Tokens:
    """Token ids a request sampled in one step (streaming sessions only)."""

    request_id: str
    token_ids: tuple[int, ...]


class Cancelled(QwenMathError):
    """The session was closed while a caller still waited on it (the client went away)."""


class EngineLoop:
    """Owns the backend: admits sessions, feeds their requests to it, routes tokens and
    completions back, and aborts the requests of a session closed early."""

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
        if can_stream(backend):
            backend.set_token_listener(self._route_tokens)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.request_stop()
        self._thread.join(timeout=30)

    def request_stop(self) -> None:
        """Ask the engine thread to fail what is in flight and end (without waiting for it)."""
        self._inbox.put(None)

    @property
    def admitted(self) -> int:
        return self._admitted

    @property
    def failure(self) -> str | None:
        return self._failure

    def open_session(self, samples: int, *, stream_tokens: bool = False,
                     notify: Callable[[], None] | None = None) -> EngineSession:
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
        return EngineSession(self, samples, stream_tokens=stream_tokens, notify=notify)

    def release(self, samples: int) -> None:
        with self._lock:
            self._admitted -= samples

    def submit(self, session: EngineSession, request: GenerationRequest) -> None:
        internal = replace(request, request_id=f"q{next(self._ids)}")
        self._inbox.put((session, request.request_id, internal))

    def abort(self, session: EngineSession) -> None:
        """Stop ``session``'s requests still in the backend (the engine thread frees their slots)."""
        self._inbox.put((session, None, None))

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
        """Move waiting requests into the backend (and aborts); False when asked to stop."""
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
            if request is None:
                self._abort_session(session)
                continue
            self._owners[request.request_id] = (session, client_id)
            try:
                self.backend.add_request(request)
            except Exception as exc:  # noqa: BLE001 - a bad request fails alone
                del self._owners[request.request_id]
                session.deliver(exc)
            block = False

    def _abort_session(self, session: EngineSession) -> None:
        if not can_abort(self.backend):
            return  # its requests run to the end; each frees its slot on delivery
        for request_id in [rid for rid, (owner, _) in self._owners.items() if owner is session]:
            if self.backend.abort(request_id):
                del self._owners[request_id]
                self.release(1)

    def _route_tokens(self, pairs: list[tuple[str, int]]) -> None:
        """The backend's per-step token listener: ids to the streaming sessions that own them."""
        for request_id, token in pairs:
            owner = self._owners.get(request_id)
            if owner is not None and owner[0].stream_tokens:
                owner[0].deliver(Tokens(owner[1], (token,)))

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
    refused halfway. ``close`` gives the slots back and aborts what still runs. A synchronous
    caller waits in ``step``; an asynchronous one passes ``notify`` (called from the engine
    thread after each delivery) and takes items with ``take_ready``. With ``stream_tokens``
    the session also receives ``Tokens`` items.
    """

    name = "session"

    def __init__(self, loop: EngineLoop, samples: int, *, stream_tokens: bool = False,
                 notify: Callable[[], None] | None = None) -> None:
        self._loop = loop
        self._slots = samples
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._in_flight = 0
        self._closed = False
        self._lock = threading.Lock()
        self._notify = notify
        self.stream_tokens = stream_tokens
        self.tokenizer = loop.backend.tokenizer
        self.context_window = loop.backend.context_window

    def __enter__(self) -> EngineSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def count_tokens(self, text: str) -> int:
        return self._loop.backend.count_tokens(text)

    def add_request(self, request: GenerationRequest) -> None:
        with self._lock:
            if self._closed:
                raise Cancelled("the request was cancelled")
            if self._in_flight >= self._slots:
                raise UsageError(f"a session of {self._slots} slots cannot run more requests at once")
            self._in_flight += 1
        self._loop.submit(self, request)

    def has_unfinished(self) -> bool:
        return self._in_flight > 0

    def step(self) -> list[Completion]:
        """Wait for this session's next completion (and take any others already done)."""
        finished = [self._count(self._results.get())]
        finished.extend(item for item in self.take_ready() if not isinstance(item, Tokens))
        return finished

    def take_ready(self) -> list[Completion | Tokens]:
        """Every item delivered so far (without waiting); an error delivered is raised."""
        items = []
        while True:
            try:
                item = self._results.get_nowait()
            except queue.Empty:
                return items
            items.append(self._count(item))

    def _count(self, item: Any) -> Any:
        if isinstance(item, Tokens):
            return item
        with self._lock:
            self._in_flight -= 1
        if isinstance(item, BaseException):
            raise item
        return item

    def deliver(self, item: Completion | Tokens | BaseException) -> None:
        """Called by the engine thread; after ``close`` a completion only frees its slot."""
        with self._lock:
            if not self._closed:
                self._results.put(item)
                if self._notify is not None:
                    self._notify()
                return
        if not isinstance(item, Tokens):
            self._loop.release(1)

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return run_to_completion(self, requests)

    def completions(self) -> Iterator[Completion]:
        """Each completion as it finishes, until none is in flight."""
        while self.has_unfinished():
            yield from self.step()

    def close(self) -> None:
        """Give back the slots: now for what is done; what still runs is aborted (or frees its
        slot on delivery); a thread waiting in ``step`` wakes with ``Cancelled``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            while True:
                try:
                    item = self._results.get_nowait()
                except queue.Empty:
                    break
                if not isinstance(item, Tokens):
                    self._in_flight -= 1
            running = self._in_flight
            self._loop.release(self._slots - running)
        if running:
            self._results.put(Cancelled("the request was cancelled"))
            self._loop.abort(self)


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
class Waiter:
    """Wakes an asyncio task from the engine thread (a session's ``notify``)."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.event = asyncio.Event()

    def notify(self) -> None:
        with contextlib.suppress(RuntimeError):  # the event loop already closed (shutdown)
            self.loop.call_soon_threadsafe(self.event.set)

    async def wait(self, timeout: float) -> bool:
        """Until notified or ``timeout`` seconds; whether it was notified."""
        try:
            await asyncio.wait_for(self.event.wait(), timeout)
        except TimeoutError:
            return False
        self.event.clear()
        return True


async def session_items(session: EngineSession, waiter: Waiter,
                        disconnected: Callable[[], Awaitable[bool]] | None = None) -> AsyncIterator[Any]:
    """Tokens and completions as the engine delivers them, until none is in flight; stops
    early (``Cancelled``) when ``disconnected()`` says the client went away."""
    while session.has_unfinished():
        items = session.take_ready()
        if items:
            for item in items:
                yield item
            continue
        woken = await waiter.wait(DISCONNECT_POLL_S)
        if not woken and disconnected is not None and await disconnected():
            raise Cancelled("the client disconnected")


class App:
    """The endpoints, over one ``EngineLoop``. Each handler takes the parsed JSON body (and the
    request, to notice a client that goes away) and returns a JSON dict or an async iterator of
    server-sent events."""

    def __init__(self, backend: Backend, config: ServeConfig) -> None:
        self.config = config
        self.backend = backend
        self.engine = EngineLoop(backend, max_queue=config.max_queue)
        self.sandbox_pool = sandbox_pool()  # /v1/solve's code runs here (driver started on first use)
        self.solve_threads = ThreadPoolExecutor(max_workers=config.max_queue, thread_name_prefix="solve")
        self._rng = random.Random()  # seeds for requests without one
        self._rng_lock = threading.Lock()
        tokenizer = backend.tokenizer
        self.decode = (None if tokenizer is None
                       else lambda ids: tokenizer.decode(list(ids), skip_special_tokens=False))
        self.get_routes: dict[str, Callable[[], Any]] = {"/v1/models": self.models, "/health": self.health}
        self.post_routes: dict[str, Callable[[dict[str, Any], Any], Awaitable[Any]]] = {
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
    async def completions(self, body: dict[str, Any], disconnected: Any) -> Any:
        self.check_model(body)
        if "prompt" not in body:
            raise ApiError(400, "prompt is required")
        prompts = parse_prompts(body["prompt"], self.decode)
        return await self.sample(body, prompts, COMPLETION, disconnected)

    async def chat_completions(self, body: dict[str, Any], disconnected: Any) -> Any:
        self.check_model(body)
        prompt = render_chat(parse_messages(body.get("messages")), self.backend.tokenizer)
        return await self.sample(body, [prompt], CHAT, disconnected)

    async def sample(self, body: Mapping[str, Any], prompts: list[str], kind: ResponseKind,
                     disconnected: Any) -> Any:
        sampling, seed = parse_sampling(body)
        stream = get_field(body, "stream", bool, False)
        include_usage = bool((get_field(body, "stream_options", dict, {}) or {}).get("include_usage"))
        n = sampling.n
        seeds = self.seeds(seed, n)
        requests = [
            GenerationRequest(str(p * n + i), prompt, sampling, seed=seeds[i])
            for p, prompt in enumerate(prompts) for i in range(n)
        ]
        waiter = Waiter()
        session = self.engine.open_session(len(requests), stream_tokens=stream, notify=waiter.notify)
        try:
            for request in requests:
                session.add_request(request)
        except BaseException:
            session.close()
            raise
        header = {"id": f"{kind.id_prefix}-{uuid.uuid4().hex}", "created": int(time.time()),
                  "model": self.config.model_name}
        if stream:
            deltas = {int(r.request_id): TextDeltas(self.decode, sampling.stop) if self.decode else None
                      for r in requests}
            return self.stream(session, waiter, header, kind, deltas, include_usage=include_usage, n=n)
        with session:
            done = {int(c.request_id): c async for c in session_items(session, waiter, disconnected)}
        ordered = [done[index] for index in range(len(requests))]
        prompt_tokens = [ordered[p * n].prompt_tokens for p in range(len(prompts))]
        return {**header, "object": kind.name, "choices": [kind.choice(i, c) for i, c in enumerate(ordered)],
                "usage": usage_of(ordered, prompt_tokens)}

    async def stream(self, session: EngineSession, waiter: Waiter, header: dict[str, Any], kind: ResponseKind,
                     deltas: dict[int, TextDeltas | None], *, include_usage: bool,
                     n: int) -> AsyncIterator[dict[str, Any]]:
        """Server-sent events: text deltas per sample as tokens are sampled (a stop string is
        never sent), each sample's last chunk with its finish reason, then usage (if asked).
        A client that goes away cancels this generator; closing the session aborts its samples."""
        finished: list[Completion] = []
        started: set[int] = set()

        def chunk(index: int, text: str, completion: Completion | None = None) -> dict[str, Any]:
            choice = kind.delta(index, text, first=index not in started, completion=completion)
            started.add(index)
            return {**header, "object": kind.chunk_name, "choices": [choice]}

        with session:
            async for item in session_items(session, waiter):
                index = int(item.request_id)
                if isinstance(item, Tokens):
                    text = deltas[index].feed(item.token_ids) if deltas[index] else ""
                    if text:
                        yield chunk(index, text)
                    continue
                finished.append(item)
                rest = deltas[index].finish(item) if deltas[index] else item.text
                yield chunk(index, rest, item)
        if include_usage:
            per_prompt = {int(c.request_id) // n: c.prompt_tokens for c in finished}
            yield {**header, "object": kind.chunk_name, "choices": [],
                   "usage": usage_of(finished, list(per_prompt.values()))}

    # --- /v1/solve ---
    async def solve(self, body: dict[str, Any], disconnected: Any) -> Any:
        self.check_model(body)
        options = solve_options(body, default_tir_protocol=self.config.tir_protocol)
        stream = get_field(body, "stream", bool, False)
        session = self.engine.open_session(options["sampling"].n)
        if stream:
            return self.solve_stream(session, options)
        worker = self.solve_in_thread(session, options, None)
        try:
            while not worker.done():
                await asyncio.wait({worker}, timeout=DISCONNECT_POLL_S)
                if not worker.done() and await disconnected():
                    raise Cancelled("the client disconnected")
        finally:
            session.close()  # a solve still running wakes with Cancelled and ends
        return worker.result()

    async def solve_stream(self, session: EngineSession, options: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Events as the solve goes: each generated turn, each program's output, then the solution."""
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def on_turn(trajectory: Any, turn: Any, executed: bool) -> None:
            event = turn_event(trajectory, turn, executed)
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(events.put_nowait, event)

        worker = self.solve_in_thread(session, options, on_turn)
        worker.add_done_callback(lambda _: events.put_nowait(None))
        try:
            while (event := await events.get()) is not None:
                yield event
            yield worker.result()
        finally:
            session.close()

    def solve_in_thread(self, session: EngineSession, options: dict[str, Any], on_turn: Any) -> asyncio.Future:
        """``run_solve`` on a solve thread (one per admitted solve at most, so none waits on
        another's sandbox calls); a solve cancelled by its client ends with ``Cancelled``."""
        worker = asyncio.get_running_loop().run_in_executor(self.solve_threads, self.run_solve,
                                                             session, options, on_turn)
        worker.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved
        return worker

    def run_solve(self, session: EngineSession, options: dict[str, Any], on_turn: Any) -> dict[str, Any]:
        from qwen_math.solve import solve

        started = time.monotonic()
        options = dict(options)
        with session:
            solution = solve(options.pop("problem"), backend=session, sandbox_pool=self.sandbox_pool,
                             on_turn=on_turn, **options)
        return {"object": "solution", "model": self.config.model_name, **solution.to_json(),
                "duration_s": round(time.monotonic() - started, 3)}


def turn_event(trajectory: Any, turn: Any, executed: bool) -> dict[str, Any]:
    """A ``/v1/solve`` stream event: a turn's generated text, or its program's output."""
    sample = getattr(trajectory, "sample", None)
    if executed:
        return {"object": "solve.output", "sample": sample, "code": turn.code, "output": turn.appended,
                "status": turn.status}
    return {"object": "solve.turn", "sample": sample, "text": turn.text}


@dataclass(frozen=True)
class ResponseKind:
    """What differs between text and chat completions: names and the shape of a choice."""

    name: str
    chunk_name: str
    id_prefix: str
    choice: Callable[[int, Completion], dict[str, Any]]
    delta: Callable[..., dict[str, Any]]


def completion_delta(index: int, text: str, *, first: bool, completion: Completion | None) -> dict[str, Any]:
    choice = {"index": index, "text": text, "logprobs": None, "finish_reason": None}
    if completion is not None:
        choice.update(finish_fields(completion), token_ids=list(completion.token_ids))
    return choice


def chat_delta(index: int, text: str, *, first: bool, completion: Completion | None) -> dict[str, Any]:
    delta = {"role": "assistant", "content": text} if first else {"content": text}
    choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": None}
    if completion is not None:
        choice.update(finish_fields(completion))
    return choice


COMPLETION = ResponseKind("text_completion", "text_completion", "cmpl", completion_choice, completion_delta)
CHAT = ResponseKind("chat.completion", "chat.completion.chunk", "chatcmpl", chat_choice, chat_delta)


# --- HTTP (Starlette over uvicorn) ------------------------------------------------------------------
def error_response(exc: ApiError) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def as_api_error(exc: Exception) -> ApiError:
    """The answer for an exception raised by a handler (a bug becomes a logged 500)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, UsageError):
        return ApiError(400, str(exc))
    if isinstance(exc, EngineFailed):
        return ApiError(503, f"engine failed: {exc}", kind="server_error")
    if isinstance(exc, QwenMathError):
        return ApiError(400, str(exc))
    log.error("internal error", exc_info=exc)
    return ApiError(500, f"internal error: {type(exc).__name__}", kind="server_error")


async def read_json(request: Any, limit: int) -> dict[str, Any]:
    """The request body as a JSON object, refused (413) as soon as it passes ``limit`` bytes."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise ApiError(413, f"request body of {int(length):,} bytes exceeds the limit of {limit:,}")
    raw = bytearray()
    async for piece in request.stream():
        raw += piece
        if len(raw) > limit:
            raise ApiError(413, f"request body exceeds the limit of {limit:,} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


async def sse(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Server-sent events; an error mid-stream is sent as an event; always ends with [DONE]."""
    try:
        async for event in events:
            yield f"data: {json.dumps(event)}\n\n".encode()
    except Exception as exc:  # noqa: BLE001 - the status line is already sent: report in band
        yield f"data: {json.dumps(as_api_error(exc).body())}\n\n".encode()
    finally:
        await events.aclose()  # closes the session (aborting its samples) on a disconnect too
    yield b"data: [DONE]\n\n"


def asgi_app(app: App) -> Any:
    """The Starlette application: routes, JSON errors, SSE."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    def get(handler: Callable[[], Any]) -> Callable[[Any], Awaitable[Any]]:
        async def endpoint(request: Any) -> Any:
            try:
                return JSONResponse(handler())
            except Exception as exc:  # noqa: BLE001 - every error is answered as JSON
                return error_response(as_api_error(exc))
        return endpoint

    def post(handler: Callable[[dict[str, Any], Any], Awaitable[Any]]) -> Callable[[Any], Awaitable[Any]]:
        async def endpoint(request: Any) -> Any:
            try:
                result = await handler(await read_json(request, app.config.max_body_bytes),
                                       request.is_disconnected)
            except Cancelled:
                return JSONResponse({}, status_code=499)  # nobody is listening any more
            except Exception as exc:  # noqa: BLE001 - every error is answered as JSON
                return error_response(as_api_error(exc))
            if isinstance(result, dict):
                return JSONResponse(result)
            return StreamingResponse(sse(result), headers={"Content-Type": "text/event-stream",
                                                           "Cache-Control": "no-cache"})
        return endpoint

    async def not_found(request: Any, exc: Exception) -> Any:
        status = getattr(exc, "status_code", 404)
        message = (f"no route {request.method} {request.url.path}" if status == 404
                   else f"{request.method} is not allowed on {request.url.path}")
        return error_response(ApiError(status, message, kind="not_found_error"))

    routes = [Route(path, get(handler), methods=["GET"]) for path, handler in app.get_routes.items()]
    routes += [Route(path, post(handler), methods=["POST"]) for path, handler in app.post_routes.items()]
    return Starlette(routes=routes, exception_handlers={HTTPException: not_found})


class Server:
    """A bound server: the engine thread, the ASGI app and uvicorn on one listening socket.

    ``serve_forever`` runs uvicorn in the calling thread until ``stop`` (from any thread) or,
    when called on the main thread, SIGINT/SIGTERM; then it returns (no signal is re-raised).
    """

    def __init__(self, app: App) -> None:
        import uvicorn

        self.app = app
        host = app.config.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, app.config.port), family=family, backlog=2048)
        self.server_address = self.socket.getsockname()
        config = uvicorn.Config(
            asgi_app(app), http="h11", lifespan="off", log_level=logging.WARNING,
            limit_concurrency=app.config.max_connections, timeout_keep_alive=int(app.config.idle_timeout_s),
            timeout_graceful_shutdown=5,
        )
        self.uvicorn = uvicorn_server_class()(config)
        self.uvicorn.on_exit = app.engine.request_stop  # open streams end at once, then uvicorn stops
        self._serving = threading.Event()
        self._stopped = threading.Event()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/v1"

    def serve_forever(self) -> None:
        self._serving.set()
        try:
            self.uvicorn.run(sockets=[self.socket])
        finally:
            self._stopped.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to stop and wait until it has (when it is serving)."""
        self.app.engine.request_stop()
        self.uvicorn.should_exit = True
        if self._serving.is_set():
            self._stopped.wait(timeout)


def uvicorn_server_class() -> type:
    import uvicorn

    class QuietSignalsServer(uvicorn.Server):
        """uvicorn, but a SIGINT/SIGTERM only asks it to stop: ``on_exit`` runs first (the engine
        ends open streams), and the signal is not re-raised after shutdown (uvicorn's default), so
        ``qwen-math serve`` can exit 0 after a clean stop."""

        on_exit: Callable[[], None] | None = None

        def handle_exit(self, sig: int, frame: Any) -> None:
            if self.on_exit is not None:
                self.on_exit()
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    return QuietSignalsServer


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


def check_server_installed() -> None:
    """The ``serve`` extra (Starlette, uvicorn) is importable, or an environment error."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise EnvironmentUnavailable(f"serve needs Starlette and uvicorn ({exc}); install them with: "
                                     "pip install 'qwen-math[serve]'") from None


def make_server(backend: Backend, config: ServeConfig) -> Server:
    """A bound, not yet serving, server with its engine thread started."""
    check_server_installed()
    app = App(backend, config)
    server = Server(app)
    app.engine.start()
    return server


def shutdown(server: Server) -> None:
    """Stop serving (if it still is), fail what is in flight, stop the engine, release the port."""
    server.stop()
    server.app.engine.stop()
    server.app.solve_threads.shutdown(wait=False, cancel_futures=True)
    server.app.sandbox_pool.close()
    server.socket.close()


def sandbox_pool():  # -> sandbox.SandboxPool
    from sandbox import SandboxPool

    return SandboxPool()
