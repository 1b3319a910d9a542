"""The ``hf`` backend: a transformers Qwen2 checkpoint driven by the in-process decode engine.

``HFBackend.create(options)`` resolves ``options.model`` (a Hugging Face id or a local folder,
see ``qwen_math.model.resolve_checkpoint``), loads the tokenizer (chat template, EOS ids) and
the ``Qwen2ForCausalLM`` weights with dtype auto (bf16 on a GPU, fp32 on CPU) on device auto,
and hands them to ``qwen_math.engine.Engine``: prompts are prefilled once per distinct prefix
(the n samples of a problem share it; a TIR continuation with the same ``cache_key`` prefills
only its appended tokens), requests from many problems decode together with continuous
batching, each sample with its own seed. ``HFBackend.from_model`` wraps objects already in
memory (tests, benchmarks).

Determinism: a sample's tokens are a function of (model, prompt token ids, sampling, seed);
they do not depend on the rest of the batch. That is exact for the tiny shape in fp32 on CPU;
for larger shapes, other dtypes and GPUs the matrix kernels may round differently at different
batch sizes, so rare near-tie tokens can differ.

What it deliberately does not do: render prompts, run tools or grade (strategies do), or
support architectures other than Qwen2 (the engine's forward is Qwen2's).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from typing import Any

from qwen_math.backends.base import BackendOptions, Completion, GenerationRequest, run_to_completion
from qwen_math.errors import EnvironmentUnavailable, UsageError
from qwen_math.model import resolve_checkpoint

log = logging.getLogger(__name__)

#: --dtype values -> torch dtype names ("auto": bf16 on CUDA, fp32 elsewhere).
DTYPES: dict[str, str] = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
                          "float16": "float16", "fp16": "float16"}

#: special tokens that end a turn in Qwen2.5 chat models, when the tokenizer has them.
END_TOKENS = ("<|im_end|>", "<|endoftext|>")


class HFBackend:
    """In-process generation with a Qwen2 model (see the module docstring)."""

    name = "hf"

    def __init__(self, model: Any, tokenizer: Any, *, engine_config: Any = None) -> None:
        from qwen_math.engine.engine import Engine, EngineConfig

        config = engine_config or EngineConfig(context_window=model.config.max_position_embeddings)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.context_window = config.context_window
        self.eos_ids = eos_ids(model, tokenizer)
        self.engine = Engine(model, decode_text=self._decode_text, eos_ids=self.eos_ids, config=config)

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def create(cls, options: BackendOptions) -> HFBackend:
        folder = resolve_checkpoint(options.model)
        device = pick_device(options.device)
        dtype = pick_dtype(options.dtype, device)
        tokenizer = load_tokenizer(folder)
        model = load_model(folder, device=device, dtype=dtype)
        from qwen_math.engine.engine import EngineConfig

        config = EngineConfig(
            max_batch_size=options.max_batch_size, context_window=model.config.max_position_embeddings
        )
        log.info("hf backend: %s on %s (%s)", folder, device, dtype)
        return cls(model, tokenizer, engine_config=config)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, engine_config: Any = None) -> HFBackend:
        """Wrap a ``Qwen2ForCausalLM`` and a tokenizer already in memory."""
        return cls(model, tokenizer, engine_config=engine_config)

    # -- the Backend protocol --------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def add_request(self, request: GenerationRequest) -> None:
        from qwen_math.engine.engine import EngineRequest

        sampling = request.sampling
        self.engine.add(EngineRequest(
            request_id=request.request_id,
            prompt_ids=tuple(self.encode(request.prompt)),
            max_tokens=sampling.max_tokens,
            seed=request.seed,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            stop=sampling.stop,
            cache_key=request.cache_key,
        ))

    def step(self) -> list[Completion]:
        return [to_completion(result) for result in self.engine.step()]

    def has_unfinished(self) -> bool:
        return self.engine.has_unfinished()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return run_to_completion(self, requests)

    # -- streaming and cancellation (see qwen_math.backends.streaming) ---------------------

    def set_token_listener(self, listener: Any) -> None:
        """``listener(pairs)`` gets each step's ``(request_id, token_id)`` of unfinished requests."""
        self.engine.on_tokens = listener

    def abort(self, request_id: str) -> bool:
        """Stop a queued or running request now and free its slot (no completion comes)."""
        return self.engine.abort(request_id)

    def close(self) -> None:
        self.engine = None
        self.model = None
        gc.collect()

    # -- helpers ---------------------------------------------------------------------------

    @property
    def stats(self) -> Any:
        """Engine counters: prefill/reused/decoded tokens, peak KV-cache and process memory."""
        return self.engine.stats

    def _decode_text(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)


def to_completion(result: Any) -> Completion:
    finish = result.finish
    return Completion(
        request_id=result.request_id,
        text=finish.text,
        token_ids=finish.token_ids,
        finish_reason=finish.reason,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=len(finish.token_ids),
        stop_string=finish.stop_string,
    )


def eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """End-of-sequence ids: the generation config's, the tokenizer's, and its chat end tokens."""
    ids: set[int] = set()
    generation = getattr(model, "generation_config", None)
    configured = getattr(generation, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list | tuple) else [configured])
    ids.add(getattr(tokenizer, "eos_token_id", None))
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    ids.update(vocab.get(token) for token in END_TOKENS)
    return frozenset(i for i in ids if isinstance(i, int))


def pick_device(name: str) -> Any:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r} is not a device (use auto, cpu, cuda or cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EnvironmentUnavailable(f"--device {name}: CUDA is not available on this machine")
    return device


def pick_dtype(name: str, device: Any) -> Any:
    import torch

    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if name not in DTYPES:
        raise UsageError(f"--dtype {name!r}: choose auto or one of {', '.join(sorted(DTYPES))}")
    return getattr(torch, DTYPES[name])


def load_tokenizer(folder: Any) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--model {folder}: cannot load its tokenizer ({exc})") from None


def load_model(folder: Any, *, device: Any, dtype: Any) -> Any:
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise UsageError(f"--model {folder}: cannot read config.json ({exc})") from None
    if config.model_type != "qwen2":
        raise UsageError(f"--model {folder}: model_type {config.model_type!r} is not supported (only qwen2)")
    from safetensors import SafetensorError

    try:
        model, loading = AutoModelForCausalLM.from_pretrained(str(folder), dtype=dtype, output_loading_info=True)
    except SafetensorError as exc:
        raise UsageError(f"--model {folder}: a .safetensors file is damaged or truncated ({exc})") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--model {folder}: cannot load the weights ({exc})") from None
    except RuntimeError as exc:  # transformers: shapes in the file differ from config.json
        if "mismatched_sizes" not in str(exc):
            raise
        raise UsageError(f"--model {folder}: the weights' shapes do not match config.json "
                         "(see the load report above)") from None
    missing = sorted(loading.get("missing_keys") or ())
    if missing:  # transformers would run them as random weights
        raise UsageError(f"--model {folder}: the checkpoint lacks {len(missing)} weight tensor(s) "
                         f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); it is incomplete")
    return model.to(device).eval()
