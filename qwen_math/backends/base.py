"""The backend protocol: requests in, completions out, one step at a time.

A backend turns ``GenerationRequest`` objects (one per sample, each with its own seed) into
``Completion`` objects. It is driven like vLLM's engine: ``add_request`` queues work,
``step`` advances it and returns the requests that finished during that step, so a caller can
add new requests (a TIR continuation after a tool call) while others are still decoding, and
execution overlaps generation. ``generate`` is the blocking convenience over both.

Contract every backend keeps:
- one request = one sample; requests with the same prompt may share their prefill;
- the completion text is cut *before* the first stop string (the stop string is not included,
  as in vLLM), and ``finish_reason`` is ``stop`` (a stop string), ``eos`` (an end-of-sequence
  token), or ``length`` (``max_tokens`` reached or the context window is full);
- a request's tokens depend only on (model, prompt, sampling, seed), never on what else is in
  the batch (exact for small shapes in fp32 on CPU);
- ``cache_key`` names a trajectory: a later request with the same key whose prompt extends an
  earlier one may reuse that prompt's KV (a TIR resume); it never changes the result.

What it deliberately does not do: prompts, tools or grading (strategies own those).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from qwen_math.config import SamplingConfig, at_least, positive_seconds
from qwen_math.errors import EnvironmentUnavailable, UsageError

#: backend name -> "module:Class"; the module is imported only when the backend is chosen.
BACKENDS: dict[str, str] = {
    "hf": "qwen_math.backends.hf:HFBackend",
    "scripted": "qwen_math.backends.scripted:ScriptedBackend",
    "vllm": "qwen_math.backends.vllm:VLLMBackend",
    "openai": "qwen_math.backends.openai_compat:OpenAIBackend",
}

#: optional backends -> the extra that installs them (for the error message).
EXTRAS: dict[str, str] = {"vllm": "qwen-math[vllm]", "openai": "qwen-math[openai]"}


@dataclass(frozen=True)
class GenerationRequest:
    """One sample to generate: a fully rendered prompt (text) and how to sample it.

    ``sampling.n`` is ignored (one request is one sample); ``seed`` is this sample's own seed
    (see ``qwen_math.config.sample_seed``).
    """

    request_id: str
    prompt: str
    sampling: SamplingConfig
    seed: int
    cache_key: str | None = None


@dataclass(frozen=True)
class Completion:
    """What one request produced."""

    request_id: str
    text: str
    token_ids: tuple[int, ...]
    finish_reason: str  # "stop" | "eos" | "length"
    prompt_tokens: int
    completion_tokens: int
    stop_string: str | None = None  # the stop string that ended it, when finish_reason == "stop"


@dataclass(frozen=True)
class BackendOptions:
    """Everything a backend may need to start; each backend reads the fields it uses."""

    model: str = "Qwen/Qwen2.5-Math-1.5B-Instruct"
    device: str = "auto"
    dtype: str = "auto"
    script: str | None = None  # scripted backend: JSONL file of completions
    base_url: str | None = None  # openai backend
    max_batch_size: int | None = None
    seed: int = 0
    # vllm backend: one engine spans tensor x pipeline GPUs; data_parallel_size engines
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    enable_prefix_caching: bool = True
    # openai backend: the key is read from this environment variable (never logged)
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 32  # requests in flight to the server
    request_timeout_s: float = 600.0  # one HTTP attempt
    max_retries: int = 6  # on 429, 5xx, connection errors and timeouts

    def __post_init__(self) -> None:
        if self.max_batch_size is not None:
            at_least("max_batch_size", self.max_batch_size, 1)
        # (the vllm backend checks its own fields before it imports vLLM: vllm.engine_kwargs)
        at_least("--max-concurrency", self.max_concurrency, 1)
        positive_seconds("--request-timeout", self.request_timeout_s)
        at_least("--max-retries", self.max_retries, 0)


@runtime_checkable
class Backend(Protocol):
    """Created with ``cls.create(options: BackendOptions)``."""

    name: str
    context_window: int  # prompt + completion tokens that fit (4096 for Qwen2.5-Math)
    tokenizer: Any  # a Hugging Face tokenizer, or None for backends that have none

    def count_tokens(self, text: str) -> int: ...

    def add_request(self, request: GenerationRequest) -> None: ...

    def step(self) -> list[Completion]: ...

    def has_unfinished(self) -> bool: ...

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]: ...

    def close(self) -> None: ...


def run_to_completion(backend: Backend, requests: Sequence[GenerationRequest]) -> list[Completion]:
    """``generate`` for any backend: add every request, step until done, keep request order."""
    return drain(requests, add=backend.add_request, step=backend.step,
                 has_unfinished=backend.has_unfinished)


def drain(requests: Sequence[Any], *, add: Callable[[Any], None], step: Callable[[], Sequence[Any]],
          has_unfinished: Callable[[], bool]) -> list[Any]:
    """Add every request, step until nothing is unfinished; the results in request order.

    Shared by backends and the engine: anything with a ``request_id`` on both sides.
    """
    for request in requests:
        add(request)
    done: dict[str, Any] = {}
    while has_unfinished():
        for result in step():
            done[result.request_id] = result
    return [done[request.request_id] for request in requests]


def get_backend_class(name: str) -> Any:
    """The class registered under ``name``; unknown or uninstalled backends raise clearly."""
    target = BACKENDS.get(name)
    if target is None:
        known = ", ".join(sorted(BACKENDS))
        raise UsageError(f"unknown backend {name!r}; choose one of: {known}")
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        extra = EXTRAS.get(name)
        hint = f"; install it with: pip install '{extra}'" if extra else ""
        raise EnvironmentUnavailable(f"backend {name!r} cannot be imported ({exc}){hint}") from None
    return getattr(module, class_name)
