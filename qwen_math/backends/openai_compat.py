"""The ``openai`` backend: any OpenAI-compatible server (vLLM serve, SGLang, ``qwen-math serve``,
a hosted API in compatible mode).

Requests go to ``/v1/completions`` with the prompt the strategy rendered locally (chat template
included), so a TIR transcript continues exactly after a tool call. When a local tokenizer is
at hand (a checkpoint folder, the Hugging Face cache, else the offline Qwen2.5 tokenizer every
Qwen2.5 size shares) the prompt is sent as token ids, so the server does not re-tokenise it;
a server that refuses id prompts (a 400) gets text from then on. A server without
``/v1/completions`` (a 404) gets ``/v1/chat/completions`` for prompts that are a plain chat
(CoT); a TIR continuation cannot be expressed as chat messages and is refused clearly.

Every sampling parameter is sent explicitly, ``top_k``/``repetition_penalty``/``min_p`` in the
extra body: an unset field takes the server's default, and vLLM serve's defaults come from the
checkpoint's ``generation_config.json`` (sampling settings and a repetition penalty in the Qwen2.5
Instruct releases), never what this run asked for. One request is one sample with its own
``seed``. ``max_tokens`` is lowered to what fits after the prompt (vLLM rejects more).

Transport: the standard library (``urllib``; no ``openai`` package needed), one worker thread
per request in flight, at most ``max_concurrency``; each attempt has a timeout; 429, 5xx,
connection errors and timeouts are retried with exponential backoff and jitter (``Retry-After``
honoured), other 4xx never. The API key is read from the environment variable ``api_key_env``
(``OPENAI_API_KEY``), sent only in the ``Authorization`` header, never logged or shown in a
message.

``finish_reason`` ``stop`` is told apart from ``eos`` by vLLM's ``stop_reason`` (SGLang:
``matched_stop``): a string is the stop string that matched; a token id or null is the end of
the sequence. A server reporting neither is assumed to have stopped on a stop string whenever
the request had some (logged once).

What it deliberately does not do: stream tokens, batch several samples into one HTTP request
(``n > 1`` shares one seed on most servers; we want a seed per sample), or start a server.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import logging
import os
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_math.backends.base import BackendOptions, Completion, GenerationRequest, run_to_completion
from qwen_math.backends.limits import context_full, new_token_budget
from qwen_math.config import SamplingConfig
from qwen_math.errors import EnvironmentUnavailable, UsageError

log = logging.getLogger(__name__)

#: Qwen2.5-Math's context window, used when the server does not report ``max_model_len``.
DEFAULT_CONTEXT_WINDOW = 4096
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CHAT_TURN = re.compile(r"<\|im_start\|>(system|user|assistant)\n(.*?)<\|im_end\|>\n", re.S)
CHAT_GENERATION_PROMPT = "<|im_start|>assistant\n"
ERROR_SNIPPET_CHARS = 300
#: where vLLM (``stop_reason``) and SGLang (``matched_stop``) say which stop matched
STOP_REASON_KEYS = ("stop_reason", "matched_stop")


# --- errors ---------------------------------------------------------------------------------
class Retryable(Exception):
    """One attempt failed in a way worth retrying (429, 5xx, connection error, timeout)."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


class RequestRejected(UsageError):
    """The server refused the request with a 4xx other than 429 (never retried)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NotAuthorized(EnvironmentUnavailable):
    """401/403: the key in the environment is missing or wrong."""


# --- retry policy ----------------------------------------------------------------------------
@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: attempt k waits a random time in [cap/2, cap],
    cap = min(max_delay_s, base_delay_s * 2**k); a server's ``Retry-After`` is a floor."""

    max_retries: int = 6
    base_delay_s: float = 0.5
    max_delay_s: float = 30.0

    def delay(self, attempt: int, rng: random.Random, retry_after_s: float | None = None) -> float:
        cap = min(self.max_delay_s, self.base_delay_s * 2**attempt)
        jittered = cap / 2 + rng.uniform(0, cap / 2)
        if retry_after_s is None:
            return jittered
        return min(self.max_delay_s, max(jittered, retry_after_s))


def is_retryable_status(status: int) -> bool:
    return status == 429 or status >= 500


# --- request bodies (pure) --------------------------------------------------------------------
def sampling_fields(sampling: SamplingConfig, *, seed: int, max_tokens: int) -> dict[str, Any]:
    """Every sampling parameter, explicit; the non-OpenAI ones are the "extra body"."""
    return {
        "n": 1,
        "max_tokens": max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "stop": list(sampling.stop),
        "seed": seed,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "stream": False,
        # extra body (vLLM, SGLang, qwen-math serve): server defaults would differ
        "top_k": sampling.top_k,
        "repetition_penalty": 1.0,
        "min_p": 0.0,
        "skip_special_tokens": True,
        "include_stop_str_in_output": False,
        "return_token_ids": True,
    }


def completion_body(
    model: str, prompt: str | Sequence[int], sampling: SamplingConfig, *, seed: int, max_tokens: int
) -> dict[str, Any]:
    """The JSON body of a ``/v1/completions`` request for one sample."""
    prompt_value = prompt if isinstance(prompt, str) else list(prompt)
    return {"model": model, "prompt": prompt_value, "echo": False, "logprobs": None,
            **sampling_fields(sampling, seed=seed, max_tokens=max_tokens)}


def chat_body(
    model: str, messages: list[dict[str, str]], sampling: SamplingConfig, *, seed: int, max_tokens: int
) -> dict[str, Any]:
    """The JSON body of a ``/v1/chat/completions`` request for one sample."""
    return {"model": model, "messages": messages,
            **sampling_fields(sampling, seed=seed, max_tokens=max_tokens)}


def chat_messages(prompt: str) -> list[dict[str, str]] | None:
    """The chat messages a ChatML prompt spells, when it is exactly a chat awaiting the
    assistant's first word; ``None`` otherwise (a TIR continuation, a few-shot prompt)."""
    if not prompt.endswith(CHAT_GENERATION_PROMPT):
        return None
    body = prompt[: -len(CHAT_GENERATION_PROMPT)]
    turns = list(CHAT_TURN.finditer(body))
    if not turns or "".join(turn.group(0) for turn in turns) != body:
        return None
    return [{"role": turn.group(1), "content": turn.group(2)} for turn in turns]


# --- responses (pure) ----------------------------------------------------------------------------
def completion_from_choice(
    request_id: str,
    choice: Mapping[str, Any],
    usage: Mapping[str, Any] | None,
    *,
    text: str,
    stop: Sequence[str],
    prompt_tokens: int,
    encode: Any = None,
) -> Completion:
    """Our ``Completion`` from one response choice (completions or chat)."""
    reason, stop_string = finish_of(choice, stop)
    token_ids = choice.get("token_ids")
    if token_ids is None and encode is not None:
        token_ids = encode(text)  # the server does not return ids: the text's own tokens
    token_ids = tuple(int(token) for token in token_ids or ())
    usage = usage or {}
    return Completion(
        request_id=request_id,
        text=text,
        token_ids=token_ids,
        finish_reason=reason,
        prompt_tokens=int(usage.get("prompt_tokens") or prompt_tokens),
        completion_tokens=int(usage.get("completion_tokens") or len(token_ids)),
        stop_string=stop_string,
    )


def finish_of(choice: Mapping[str, Any], stop: Sequence[str]) -> tuple[str, str | None]:
    """(finish_reason, stop_string) in our vocabulary from an OpenAI-style choice."""
    finish = choice.get("finish_reason")
    if finish == "length":
        return "length", None
    if finish != "stop":
        raise EnvironmentUnavailable(f"server ended a completion with finish_reason {finish!r}")
    for key in STOP_REASON_KEYS:
        if key in choice:
            matched = choice[key]
            return ("stop", matched) if isinstance(matched, str) else ("eos", None)
    if not stop:
        return "eos", None
    return "stop", stop[0] if len(stop) == 1 else None


def reports_stop(choice: Mapping[str, Any]) -> bool:
    """Whether the server says which stop (string or token) ended this choice."""
    return any(key in choice for key in STOP_REASON_KEYS)


def retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_message(raw: bytes) -> str:
    """The server's error text (``{"error": {"message": ...}}`` or the body), shortened."""
    text = raw.decode("utf-8", "replace")
    try:
        data = json.loads(text)
        error = data.get("error", data) if isinstance(data, dict) else data
        text = error.get("message", text) if isinstance(error, dict) else str(error)
    except ValueError:
        pass
    text = " ".join(str(text).split())
    return text[:ERROR_SNIPPET_CHARS] + ("..." if len(text) > ERROR_SNIPPET_CHARS else "")


# --- HTTP client ------------------------------------------------------------------------------------
class OpenAIClient:
    """JSON over HTTP to one OpenAI-compatible server, with timeouts and retries. Thread-safe."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        retry: RetryPolicy = RetryPolicy(),
        rng: random.Random | None = None,
    ) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise UsageError(f"--base-url must be an http(s) URL like http://127.0.0.1:8000/v1, got {base_url!r}")
        if timeout_s <= 0:
            raise UsageError(f"request timeout must be > 0 seconds, got {timeout_s!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retry = retry
        self._api_key = api_key
        self._rng = rng or random.Random()
        self._rng_lock = threading.Lock()
        handlers = [urllib.request.ProxyHandler({})] if parsed.hostname in LOOPBACK_HOSTS else []
        self._opener = urllib.request.build_opener(*handlers)

    def __repr__(self) -> str:  # the key stays out of every repr
        return f"OpenAIClient({getattr(self, 'base_url', '?')!r})"

    def get(self, path: str) -> dict[str, Any]:
        return self.request("GET", path)

    def post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body)

    def request(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One call, retried on 429/5xx/connection errors/timeouts; raises after the last try."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        for attempt in range(self.retry.max_retries + 1):
            try:
                return self._attempt(method, url, body)
            except Retryable as exc:
                if attempt == self.retry.max_retries:
                    raise EnvironmentUnavailable(
                        f"{method} {url} failed {attempt + 1} times; last: {exc}"
                    ) from None
                with self._rng_lock:
                    pause = self.retry.delay(attempt, self._rng, exc.retry_after_s)
                log.info("%s %s: %s; retry %d/%d in %.2fs", method, url, exc, attempt + 1,
                         self.retry.max_retries, pause)
                time.sleep(pause)
        raise AssertionError("unreachable")

    def _attempt(self, method: str, url: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, method=method, headers=self._headers())
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise self._status_error(method, url, exc) from None
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Retryable(f"connection error: {type(reason).__name__}: {reason}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise Retryable(f"unreadable JSON response ({len(raw)} bytes)") from None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _status_error(self, method: str, url: str, exc: urllib.error.HTTPError) -> Exception:
        status = exc.code
        try:
            message = error_message(exc.read())
        except (OSError, http.client.HTTPException):
            message = exc.reason or ""
        finally:
            exc.close()
        if is_retryable_status(status):
            return Retryable(f"HTTP {status}: {message}", retry_after_seconds(exc.headers.get("Retry-After")))
        if status in (401, 403):
            return NotAuthorized(f"{method} {url}: HTTP {status} ({message}); check the API key "
                                 "in the environment variable named by api_key_env")
        return RequestRejected(f"{method} {url}: HTTP {status}: {message}", status)


# --- tokenizer --------------------------------------------------------------------------------------
def local_tokenizer(model: str) -> Any:
    """The model's tokenizer without a download: a checkpoint folder, the Hugging Face cache,
    else the offline Qwen2.5 tokenizer (shared by every Qwen2.5(-Math) size)."""
    from transformers import AutoTokenizer

    folder = Path(model).expanduser()
    if (folder / "tokenizer_config.json").is_file():
        return AutoTokenizer.from_pretrained(str(folder))
    try:
        from huggingface_hub import snapshot_download

        cached = snapshot_download(model, local_files_only=True)
        return AutoTokenizer.from_pretrained(cached)
    except Exception as exc:  # noqa: BLE001 - any miss means: use the offline tokenizer
        log.debug("no cached tokenizer for %s (%s); using the offline Qwen2.5 tokenizer", model, exc)
    from qwen_math.tokenizer import load_offline_tokenizer

    return load_offline_tokenizer()


# --- the backend ------------------------------------------------------------------------------------
class OpenAIBackend:
    """The ``Backend`` protocol over an OpenAI-compatible server."""

    name = "openai"

    def __init__(
        self,
        client: OpenAIClient,
        *,
        model: str,
        tokenizer: Any,
        context_window: int,
        max_concurrency: int = 32,
        send_token_ids: bool = True,
    ) -> None:
        if max_concurrency < 1:
            raise UsageError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        self.client = client
        self.model = model
        self.tokenizer = tokenizer
        self.context_window = context_window
        self._send_ids = send_token_ids and tokenizer is not None
        self._use_chat = False
        self._warned_no_stop_reason = False
        self._mode_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_concurrency, thread_name_prefix="openai")
        self._pending: dict[Future, str] = {}
        self._ready: list[Completion] = []

    @classmethod
    def create(cls, options: BackendOptions) -> OpenAIBackend:
        if not options.base_url:
            raise UsageError("--backend openai needs --base-url, e.g. http://127.0.0.1:8000/v1")
        client = OpenAIClient(
            options.base_url,
            api_key=os.environ.get(options.api_key_env) or None,
            timeout_s=options.request_timeout_s,
            retry=RetryPolicy(max_retries=options.max_retries),
            rng=random.Random(options.seed),
        )
        served = served_models(client)
        if served and options.model not in served:
            raise UsageError(
                f"the server at {options.base_url} does not serve model {options.model!r}; it serves: "
                f"{', '.join(served)} (pass --model with one of them)"
            )
        context = served.get(options.model) or DEFAULT_CONTEXT_WINDOW
        return cls(client, model=options.model, tokenizer=local_tokenizer(options.model),
                   context_window=context, max_concurrency=options.max_concurrency)

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def add_request(self, request: GenerationRequest) -> None:
        prompt_ids = self.encode(request.prompt)
        budget = new_token_budget(request.sampling, prompt_tokens=len(prompt_ids),
                                  context_window=self.context_window)
        if budget == 0:
            self._ready.append(context_full(request.request_id, len(prompt_ids)))
            return
        future = self._pool.submit(self.complete, request, prompt_ids, budget)
        self._pending[future] = request.request_id

    def has_unfinished(self) -> bool:
        return bool(self._ready or self._pending)

    def step(self) -> list[Completion]:
        """The completions that are done; waits for at least one when none is."""
        finished, self._ready = self._ready, []
        if not finished and self._pending:
            wait(list(self._pending), return_when=FIRST_COMPLETED)
        for future in [future for future in self._pending if future.done()]:
            del self._pending[future]
            finished.append(future.result())  # re-raises a request that failed for good
        return finished

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return run_to_completion(self, requests)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._pending.clear()

    # --- one request (runs on a pool thread) ---
    def complete(self, request: GenerationRequest, prompt_ids: list[int], max_tokens: int) -> Completion:
        """Send one request; adapt once to a server without id prompts or without completions
        (the switch is kept only when the other form then succeeds)."""
        if self._use_chat:
            return self._complete_chat(request, prompt_ids, max_tokens)
        send_ids = self._send_ids
        body = completion_body(self.model, prompt_ids if send_ids else request.prompt,
                               request.sampling, seed=request.seed, max_tokens=max_tokens)
        try:
            response = self.client.post("completions", body)
        except RequestRejected as exc:
            if exc.status == 404:
                completion = self._complete_chat(request, prompt_ids, max_tokens, cause=exc)
                self._switch("_use_chat", True, f"no /completions at {self.client.base_url} "
                             "(HTTP 404): using /chat/completions for chat prompts")
                return completion
            if exc.status != 400 or not send_ids:
                raise
            try:
                response = self.client.post("completions", {**body, "prompt": request.prompt})
            except RequestRejected:
                raise exc from None
            self._switch("_send_ids", False, f"the server refused a token-id prompt ({exc}); "
                         "sending prompts as text")
        choice = first_choice(response)
        return self._completion(request, choice, response, str(choice.get("text", "")), prompt_ids)

    def _complete_chat(
        self,
        request: GenerationRequest,
        prompt_ids: list[int],
        max_tokens: int,
        *,
        cause: Exception | None = None,
    ) -> Completion:
        messages = chat_messages(request.prompt)
        if messages is None:
            raise UsageError(
                f"the server at {self.client.base_url} offers no /completions endpoint "
                f"({cause or 'HTTP 404'}), and this prompt (a TIR continuation or a few-shot "
                "prompt) cannot be sent as chat messages"
            )
        body = chat_body(self.model, messages, request.sampling, seed=request.seed, max_tokens=max_tokens)
        try:
            response = self.client.post("chat/completions", body)
        except RequestRejected:
            if cause is not None:
                raise cause from None
            raise
        choice = first_choice(response)
        text = str((choice.get("message") or {}).get("content") or "")
        return self._completion(request, choice, response, text, prompt_ids)

    def _completion(self, request: GenerationRequest, choice: Mapping[str, Any],
                    response: Mapping[str, Any], text: str, prompt_ids: list[int]) -> Completion:
        if request.sampling.stop and not reports_stop(choice):
            self._switch("_warned_no_stop_reason", True,
                         "the server does not report which stop ended a completion (no "
                         "stop_reason); assuming a stop string whenever the request had any")
        return completion_from_choice(request.request_id, choice, response.get("usage"), text=text,
                                      stop=request.sampling.stop, prompt_tokens=len(prompt_ids),
                                      encode=self.encode)

    def _switch(self, attribute: str, value: bool, message: str) -> None:
        with self._mode_lock:
            if getattr(self, attribute) != value:
                setattr(self, attribute, value)
                log.warning(message)


def first_choice(response: Mapping[str, Any]) -> Mapping[str, Any]:
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        raise EnvironmentUnavailable(f"server response has no choices: {str(response)[:ERROR_SNIPPET_CHARS]}")
    return choices[0]


def served_models(client: OpenAIClient) -> dict[str, int | None]:
    """Model id -> context window (``max_model_len`` when the server reports it)."""
    try:
        listing = client.get("models")
    except RequestRejected as exc:  # some gateways have no /models: skip the check
        log.info("GET /models refused (%s); not checking the model name", exc)
        return {}
    served: dict[str, int | None] = {}
    for entry in listing.get("data") or []:
        if isinstance(entry, Mapping) and "id" in entry:
            length = entry.get("max_model_len")
            served[str(entry["id"])] = int(length) if isinstance(length, int) else None
    return served
