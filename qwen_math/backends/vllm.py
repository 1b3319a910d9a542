"""The ``vllm`` backend: vLLM's offline engine, with tensor, pipeline and data parallelism.

One engine (``vllm.LLM``) spans one GPU group of ``tensor_parallel_size x
pipeline_parallel_size`` GPUs; ``data_parallel_size`` > 1 starts one engine per GPU group, each
in its own process with ``CUDA_VISIBLE_DEVICES`` set to its group, and routes requests between
them. Routing is sticky: every sample of one prompt, and every TIR continuation of one
trajectory (``cache_key``), goes to the same engine, so vLLM's automatic prefix caching
(``enable_prefix_caching``) makes a resume after a tool call cost only the new tokens.

The pieces that decide *what* vLLM is asked are pure functions, tested without vLLM:
``sampling_params_kwargs`` (``SamplingConfig`` -> ``vllm.SamplingParams`` keyword arguments,
one sample per request with its own seed), ``engine_kwargs`` (``BackendOptions`` ->
``vllm.LLM`` keyword arguments), ``gpu_groups``, ``engine_for`` and ``completion_from_output``
(vLLM's ``CompletionOutput`` -> our ``Completion``, with ``eos`` told apart from a stop string
by vLLM's ``stop_reason``).

Prompts are tokenized here with the checkpoint's tokenizer and handed to vLLM as token ids, so
every backend sees the same tokens for the same prompt text.

What it deliberately does not do: multi-node deployment (use vLLM's own Ray cluster:
``ray start`` on every node, then ``tensor_parallel_size``/``pipeline_parallel_size`` spanning
them with ``distributed_executor_backend="ray"``, or ``vllm serve`` + the ``openai`` backend),
or install vLLM (``pip install 'qwen-math[vllm]'``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_math.backends.base import (
    BackendOptions,
    Completion,
    GenerationRequest,
    run_to_completion,
)
from qwen_math.backends.limits import context_full, new_token_budget
from qwen_math.config import SamplingConfig
from qwen_math.errors import EnvironmentUnavailable, UsageError

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'qwen-math[vllm]'"
#: TIR trajectories whose engine is remembered (least recently used forgotten first).
MAX_TRACKED_TRAJECTORIES = 100_000
DTYPES = {"auto": "auto", "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


# --- pure mapping (tested without vLLM) ----------------------------------------------------
def sampling_params_kwargs(
    sampling: SamplingConfig,
    *,
    seed: int,
    max_tokens: int | None = None,
    stop_token_ids: Sequence[int] = (),
) -> dict[str, Any]:
    """Keyword arguments for ``vllm.SamplingParams`` describing one sample of ``sampling``.

    Every field is explicit (vLLM's defaults, e.g. ``max_tokens=16``, are wrong for us); ``n``
    is always 1 because one request is one sample with its own ``seed``; ``max_tokens`` may be
    lowered by the caller to what still fits the context window; stop strings are cut from
    the text (vLLM's ``include_stop_str_in_output=False``, our contract too).
    """
    return {
        "n": 1,
        "temperature": float(sampling.temperature),
        "top_p": float(sampling.top_p),
        "top_k": int(sampling.top_k),  # -1 disables top-k in every vLLM release
        "min_p": 0.0,
        "presence_penalty": 0.0,
        "frequency_penalty": 0.0,
        "repetition_penalty": 1.0,
        "max_tokens": int(sampling.max_tokens if max_tokens is None else max_tokens),
        "stop": list(sampling.stop),
        "stop_token_ids": [int(token) for token in stop_token_ids],
        "include_stop_str_in_output": False,
        "skip_special_tokens": True,
        "seed": int(seed),
    }


def engine_kwargs(options: BackendOptions, *, model_path: str) -> dict[str, Any]:
    """Keyword arguments for ``vllm.LLM`` (one engine = one GPU group)."""
    dtype = DTYPES.get(options.dtype)
    if dtype is None:
        raise UsageError(f"--dtype {options.dtype!r} is not one of: {', '.join(DTYPES)}")
    _check_positive("tensor_parallel_size", options.tensor_parallel_size)
    _check_positive("pipeline_parallel_size", options.pipeline_parallel_size)
    if not 0 < options.gpu_memory_utilization <= 1:
        raise UsageError(
            f"gpu_memory_utilization must be in (0, 1], got {options.gpu_memory_utilization!r}"
        )
    kwargs: dict[str, Any] = {
        "model": model_path,
        "tokenizer": model_path,
        "dtype": dtype,
        "seed": options.seed,
        "tensor_parallel_size": options.tensor_parallel_size,
        "pipeline_parallel_size": options.pipeline_parallel_size,
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "enable_prefix_caching": options.enable_prefix_caching,
    }
    if options.max_batch_size is not None:
        _check_positive("max_batch_size", options.max_batch_size)
        kwargs["max_num_seqs"] = options.max_batch_size
    return kwargs


def gpu_groups(devices: Sequence[str], *, group_size: int, groups: int) -> list[str]:
    """``CUDA_VISIBLE_DEVICES`` for each of ``groups`` engines of ``group_size`` GPUs each."""
    _check_positive("data_parallel_size", groups)
    needed = group_size * groups
    if len(devices) < needed:
        raise EnvironmentUnavailable(
            f"data_parallel_size {groups} x tensor_parallel_size*pipeline_parallel_size "
            f"{group_size} needs {needed} GPUs; {len(devices)} visible ({','.join(devices) or 'none'})"
        )
    return [",".join(devices[i * group_size:(i + 1) * group_size]) for i in range(groups)]


def engine_for(prompt: str, engines: int) -> int:
    """The engine a new trajectory starts on: a stable hash of its prompt.

    Every sample of one problem has the same first prompt, so they share the engine whose
    prefix cache already holds it; continuations then follow their trajectory (see
    ``VLLMBackend``), never this hash of a longer prompt.
    """
    digest = hashlib.blake2b(prompt.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % engines


def completion_from_output(request_id: str, output: Any, *, prompt_tokens: int) -> Completion:
    """Our ``Completion`` from a vLLM ``CompletionOutput`` (duck-typed: text, token_ids,
    finish_reason, stop_reason).

    vLLM reports both an end-of-sequence token and a stop string as ``finish_reason ==
    "stop"``; ``stop_reason`` is the stop string (a ``str``) for the latter and a token id or
    ``None`` for the former.
    """
    stop_reason = getattr(output, "stop_reason", None)
    token_ids = tuple(int(token) for token in output.token_ids)
    if output.finish_reason == "length":
        reason, stop_string = "length", None
    elif output.finish_reason == "stop" and isinstance(stop_reason, str):
        reason, stop_string = "stop", stop_reason
    elif output.finish_reason == "stop":
        reason, stop_string = "eos", None
    else:
        raise EnvironmentUnavailable(
            f"vLLM ended request {request_id} with finish_reason {output.finish_reason!r}"
        )
    return Completion(
        request_id=request_id,
        text=output.text,
        token_ids=token_ids,
        finish_reason=reason,
        prompt_tokens=prompt_tokens,
        completion_tokens=len(token_ids),
        stop_string=stop_string,
    )


def stop_token_ids(checkpoint: Path, tokenizer: Any) -> tuple[int, ...]:
    """End-of-sequence ids: ``generation_config.json``'s ``eos_token_id`` plus the tokenizer's."""
    ids: list[int] = []
    config_file = checkpoint / "generation_config.json"
    if config_file.is_file():
        eos = json.loads(config_file.read_text()).get("eos_token_id")
        ids.extend([eos] if isinstance(eos, int) else list(eos or ()))
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.append(tokenizer.eos_token_id)
    return tuple(dict.fromkeys(int(token) for token in ids))


def _check_positive(name: str, value: int) -> None:
    if not isinstance(value, int) or value < 1:
        raise UsageError(f"{name} must be an integer >= 1, got {value!r}")


# --- engines ------------------------------------------------------------------------------
@dataclass(frozen=True)
class EngineRequest:
    """What an engine needs for one request (picklable, crosses process boundaries)."""

    request_id: str
    prompt_token_ids: tuple[int, ...]
    params: dict[str, Any]


def import_vllm() -> Any:
    try:
        import vllm
    except ImportError as exc:
        raise EnvironmentUnavailable(
            f"the vllm backend needs vLLM, which is not importable here ({exc}); "
            f"install it with: {INSTALL_HINT}"
        ) from None
    return vllm


class LocalEngine:
    """One ``vllm.LLM`` in this process, driven request by request through its ``LLMEngine``."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        vllm = import_vllm()
        self._vllm = vllm
        self._llm = vllm.LLM(**kwargs)
        self._engine = self._llm.llm_engine
        self._prompt_tokens: dict[str, int] = {}
        self._streamed: dict[str, int] = {}  # tokens already handed to the listener
        self.token_listener: Callable[[list[tuple[str, int]]], None] | None = None

    @property
    def max_model_len(self) -> int:
        return int(self._engine.model_config.max_model_len)

    def add(self, request: EngineRequest) -> None:
        prompt = {"prompt_token_ids": list(request.prompt_token_ids)}
        params = self._vllm.SamplingParams(**request.params)
        self._engine.add_request(request.request_id, prompt, params)
        self._prompt_tokens[request.request_id] = len(request.prompt_token_ids)

    def has_unfinished(self) -> bool:
        return bool(self._engine.has_unfinished_requests())

    def step(self) -> list[Completion]:
        """One engine step; the requests that finished in it."""
        finished = []
        outputs = self._engine.step()
        for output in outputs:
            if output.finished:
                self._streamed.pop(output.request_id, None)
                prompt_tokens = self._prompt_tokens.pop(output.request_id)
                finished.append(
                    completion_from_output(output.request_id, output.outputs[0], prompt_tokens=prompt_tokens)
                )
        if self.token_listener is not None:
            self._emit_tokens(outputs)
        return finished

    def _emit_tokens(self, outputs: Sequence[Any]) -> None:
        """New token ids of unfinished requests (vLLM's outputs are cumulative) to the listener."""
        pairs = []
        for output in outputs:
            if output.finished or not output.outputs:
                continue
            ids = output.outputs[0].token_ids
            seen = self._streamed.get(output.request_id, 0)
            pairs.extend((output.request_id, int(token)) for token in ids[seen:])
            self._streamed[output.request_id] = len(ids)
        if pairs:
            self.token_listener(pairs)

    def abort(self, request_id: str) -> bool:
        if self._prompt_tokens.pop(request_id, None) is None:
            return False
        self._streamed.pop(request_id, None)
        self._engine.abort_request([request_id])
        return True


def serve_engine(devices: str, kwargs: dict[str, Any], conn: Any) -> None:
    """A data-parallel worker: one ``LocalEngine`` on ``devices``, fed through ``conn``.

    Messages in: ``("add", EngineRequest)`` and ``("close",)``. Messages out: ``("ready",
    max_model_len)`` once, then ``("done", [Completion, ...])`` after each step that finished
    something, or ``("error", message)`` before exiting on a failure. Results leave through a
    sender thread, so this loop keeps reading while the parent is busy sending (two processes
    each blocked writing to the other would deadlock).
    """
    os.environ["CUDA_VISIBLE_DEVICES"] = devices
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    sender = threading.Thread(target=send_all, args=(conn, outbox), daemon=True)
    sender.start()
    try:
        engine = LocalEngine(kwargs)
        outbox.put(("ready", engine.max_model_len))
        while True:
            # 1) take new work: block while idle, otherwise only drain what is waiting
            wait = 0 if engine.has_unfinished() else None
            while conn.poll(wait):
                message = conn.recv()
                if message[0] == "close":
                    return
                engine.add(message[1])
                wait = 0
            # 2) advance every running request by one step and report what finished
            finished = engine.step()
            if finished:
                outbox.put(("done", finished))
    except (EOFError, KeyboardInterrupt):
        return
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
        outbox.put(("error", f"{type(exc).__name__}: {exc}"))
    finally:
        outbox.put(None)
        sender.join(timeout=30)


def send_all(conn: Any, outbox: queue.SimpleQueue) -> None:
    """Send every message of ``outbox`` until ``None``."""
    while (message := outbox.get()) is not None:
        try:
            conn.send(message)
        except (BrokenPipeError, OSError):
            return


class WorkerEngine:
    """A ``serve_engine`` process seen from the parent."""

    def __init__(self, index: int, devices: str, kwargs: dict[str, Any]) -> None:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
        self.index = index
        self.devices = devices
        self.conn, child = context.Pipe()
        self.process = context.Process(
            target=serve_engine, args=(devices, kwargs, child), name=f"vllm-dp{index}", daemon=True
        )
        self.process.start()
        child.close()
        self.in_flight = 0
        self.max_model_len = int(self.receive("ready"))

    def add(self, request: EngineRequest) -> None:
        self.conn.send(("add", request))
        self.in_flight += 1

    def receive(self, expected: str) -> Any:
        try:
            kind, payload = self.conn.recv()
        except EOFError:
            raise EnvironmentUnavailable(
                f"vLLM engine {self.index} (GPUs {self.devices}) exited unexpectedly"
            ) from None
        if kind == "error":
            raise EnvironmentUnavailable(f"vLLM engine {self.index} (GPUs {self.devices}) failed: {payload}")
        if kind != expected:
            raise EnvironmentUnavailable(f"vLLM engine {self.index} sent {kind!r}, expected {expected!r}")
        return payload

    def close(self) -> None:
        try:
            self.conn.send(("close",))
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=30)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(timeout=5)
        self.conn.close()


def visible_gpus() -> list[str]:
    """The GPU ids this process may use (``CUDA_VISIBLE_DEVICES``, else every device torch sees)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [device for device in visible.split(",") if device.strip()]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


# --- the backend ----------------------------------------------------------------------------
class VLLMBackend:
    """The ``Backend`` protocol over one local vLLM engine or several data-parallel ones."""

    name = "vllm"

    def __init__(
        self,
        tokenizer: Any,
        context_window: int,
        stop_ids: tuple[int, ...],
        *,
        local: LocalEngine | None = None,
        workers: Sequence[WorkerEngine] = (),
    ) -> None:
        self.tokenizer = tokenizer
        self.context_window = context_window
        self.stop_ids = stop_ids
        self.local = local
        self.workers = list(workers)
        self._ready: list[Completion] = []  # finished without reaching an engine
        self._trajectories: OrderedDict[str, int] = OrderedDict()  # cache_key -> engine

    @classmethod
    def create(cls, options: BackendOptions) -> VLLMBackend:
        from transformers import AutoTokenizer

        from qwen_math.model import resolve_checkpoint

        _check_positive("data_parallel_size", options.data_parallel_size)
        engine_kwargs(options, model_path=options.model)  # every flag checked before anything loads
        import_vllm()  # fail early, with the install hint, before loading anything
        checkpoint = resolve_checkpoint(options.model)
        kwargs = engine_kwargs(options, model_path=str(checkpoint))
        tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
        stop_ids = stop_token_ids(checkpoint, tokenizer)
        if options.data_parallel_size == 1:
            local = LocalEngine(kwargs)
            return cls(tokenizer, local.max_model_len, stop_ids, local=local)
        group_size = options.tensor_parallel_size * options.pipeline_parallel_size
        groups = gpu_groups(visible_gpus(), group_size=group_size, groups=options.data_parallel_size)
        log.info("starting %d vLLM engines on GPU groups %s", len(groups), groups)
        workers: list[WorkerEngine] = []
        try:
            for index, devices in enumerate(groups):
                workers.append(WorkerEngine(index, devices, kwargs))
        except BaseException:
            for worker in workers:
                worker.close()
            raise
        context = min(worker.max_model_len for worker in workers)
        return cls(tokenizer, context, stop_ids, workers=workers)

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def add_request(self, request: GenerationRequest) -> None:
        prompt_ids = tuple(self.encode(request.prompt))
        budget = new_token_budget(
            request.sampling, prompt_tokens=len(prompt_ids), context_window=self.context_window
        )
        if budget == 0:
            self._ready.append(context_full(request.request_id, len(prompt_ids)))
            return
        params = sampling_params_kwargs(
            request.sampling, seed=request.seed, max_tokens=budget, stop_token_ids=self.stop_ids
        )
        engine_request = EngineRequest(request.request_id, prompt_ids, params)
        if self.local is not None:
            self.local.add(engine_request)
        else:
            self.workers[self._engine_index(request)].add(engine_request)

    def _engine_index(self, request: GenerationRequest) -> int:
        """Sticky routing: a trajectory stays on the engine it started on (its prefix cache)."""
        key = request.cache_key
        if key is None:
            return engine_for(request.prompt, len(self.workers))
        index = self._trajectories.pop(key, None)
        if index is None:
            index = engine_for(request.prompt, len(self.workers))
        self._trajectories[key] = index  # most recently used last
        while len(self._trajectories) > MAX_TRACKED_TRAJECTORIES:
            self._trajectories.popitem(last=False)
        return index

    def has_unfinished(self) -> bool:
        if self._ready:
            return True
        if self.local is not None:
            return self.local.has_unfinished()
        return any(worker.in_flight for worker in self.workers)

    def step(self) -> list[Completion]:
        finished, self._ready = self._ready, []
        if self.local is not None:
            if self.local.has_unfinished():
                finished.extend(self.local.step())
        elif not finished and any(worker.in_flight for worker in self.workers):
            finished.extend(self._receive_from_workers())
        return finished

    def _receive_from_workers(self) -> list[Completion]:
        """Block until at least one data-parallel engine reports finished requests."""
        from multiprocessing.connection import wait

        busy = {worker.conn: worker for worker in self.workers if worker.in_flight}
        finished: list[Completion] = []
        for conn in wait(list(busy)):
            worker = busy[conn]
            done = worker.receive("done")
            worker.in_flight -= len(done)
            finished.extend(done)
        return finished

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return run_to_completion(self, requests)

    # -- streaming and cancellation (one local engine; data-parallel workers report whole
    # completions and run aborted requests to the end) -------------------------------------

    def set_token_listener(self, listener: Callable[[list[tuple[str, int]]], None] | None) -> None:
        if self.local is not None:
            self.local.token_listener = listener

    def abort(self, request_id: str) -> bool:
        return self.local.abort(request_id) if self.local is not None else False

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.workers = []
        self.local = None
