"""Randomly initialised Qwen2 checkpoints at real (or tiny) shapes, written offline.

``write_tiny_model(path, shape="tiny", seed=0)`` writes what a Qwen2.5-Math-Instruct folder on
the hub holds: ``config.json`` (Qwen2ForCausalLM), ``generation_config.json``,
``model.safetensors`` with random weights, and the exact Qwen2.5 tokenizer files with the
Math-Instruct chat template (``qwen_math.tokenizer``). The ``tiny`` shape smoke-tests the whole
stack in seconds (the test fixture uses it); the real shapes let benchmarks run without a
download. Weights are drawn from one ``torch.Generator`` seeded with ``seed``, tensor by tensor
in name order, so the same (shape, seed) always gives the same checkpoint on a given torch.

What it deliberately does not do: train, or produce anything a real model would say (the
weights are noise: generated text is random tokens).
"""

from __future__ import annotations

import json
import logging
import stat
from dataclasses import dataclass
from pathlib import Path

from qwen_math.errors import UsageError
from qwen_math.paths import output_folder
from qwen_math.tokenizer import (
    ENDOFTEXT_ID,
    IM_END_ID,
    chat_template,
    copy_tokenizer_files,
)

log = logging.getLogger(__name__)

INITIALIZER_RANGE = 0.02
RMS_NORM_EPS = 1e-6
ROPE_THETA = 10000.0  # the Math models' value (general Qwen2.5 uses 1e6)
CONTEXT = 4096
#: file marking a folder this module wrote (random weights: safe to write over again).
TINY_MARKER = ".qwen-math-tiny-model"


@dataclass(frozen=True)
class Qwen2Shape:
    """The config.json fields that differ between Qwen2 sizes."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    vocab_size: int
    tie_word_embeddings: bool
    dtype: str  # what the checkpoint stores: fp32 for the test shape, bf16 like the releases

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


#: Qwen2 shapes (``tiny`` is a test shape; the others are the released sizes).
SHAPES: dict[str, Qwen2Shape] = {
    "tiny": Qwen2Shape(64, 128, 2, 4, 2, 151936, True, "float32"),
    "0.5b": Qwen2Shape(896, 4864, 24, 14, 2, 151936, True, "bfloat16"),
    "1.5b": Qwen2Shape(1536, 8960, 28, 12, 2, 151936, True, "bfloat16"),
    "7b": Qwen2Shape(3584, 18944, 28, 28, 4, 152064, False, "bfloat16"),
    "72b": Qwen2Shape(8192, 29568, 80, 64, 8, 152064, False, "bfloat16"),
}


#: checkpoint kind -> (architecture, outputs of the score head; 0 = none, an LM head instead).
#: ``rm``: Qwen2ForRewardModel (Qwen2.5-Math-RM-72B); ``prm``: Qwen2.5-Math-PRM-7B's layout.
KINDS: dict[str, tuple[str, int]] = {
    "policy": ("Qwen2ForCausalLM", 0),
    "rm": ("Qwen2ForRewardModel", 1),
    "prm": ("Qwen2ForProcessRewardModel", 2),
}
#: the PRM's step separator, one added token in its tokenizer.
PRM_SEPARATOR = "<extra_0>"


def write_tiny_model(path: str | Path, *, shape: str = "tiny", seed: int = 0, kind: str = "policy") -> Path:
    """Write a random Qwen2 checkpoint with the real tokenizer into ``path``: a causal LM
    (``policy``), or a reward model with the real score-head tensor names (``rm``, ``prm``)."""
    spec = SHAPES.get(shape)
    if spec is None:
        raise UsageError(f"unknown shape {shape!r}; choose one of: {', '.join(SHAPES)}")
    if kind not in KINDS:
        raise UsageError(f"unknown kind {kind!r}; choose one of: {', '.join(KINDS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise UsageError(f"--seed must be an integer in [0, 2**63), got {seed!r}")
    folder = Path(path)
    refuse_other_files(folder)
    output_folder(folder, what="tiny-model folder")
    (folder / TINY_MARKER).write_text(f"random weights: shape {shape}, seed {seed}\n")  # first: a torn write stays ours
    log.info("writing a random Qwen2 checkpoint (shape %s, seed %d, kind %s) to %s", shape, seed, kind, folder)
    architecture, labels = KINDS[kind]
    config = model_config(spec)
    write_json(folder / "config.json", {**config, "architectures": [architecture], "num_labels": labels}
               if labels else config)
    write_json(folder / "generation_config.json", generation_config())
    write_random_weights(folder / "model.safetensors", spec, seed=seed, labels=labels)
    same_mode_as(folder / "model.safetensors", folder / "config.json")  # safetensors writes 0600
    copy_tokenizer_files(folder)
    (folder / "chat_template.jinja").write_text(chat_template())
    if kind == "prm":
        add_separator_token(folder)
    return folder


def add_separator_token(folder: Path) -> None:
    """Give the checkpoint's tokenizer ``<extra_0>`` as one added token (as the PRM's has)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    tokenizer.add_tokens([PRM_SEPARATOR], special_tokens=False)
    tokenizer.save_pretrained(str(folder))


def refuse_other_files(folder: Path) -> None:
    """Only an empty folder or an earlier tiny checkpoint is written over (never real weights)."""
    if not folder.is_dir() or not any(folder.iterdir()):
        return
    if is_tiny_checkpoint(folder):
        return
    raise UsageError(f"tiny-model folder {folder} is not empty and holds no tiny checkpoint; "
                     "choose an empty or new folder (its files would be overwritten)")


def is_tiny_checkpoint(folder: Path) -> bool:
    """Whether ``folder`` holds the marker file ``write_tiny_model`` leaves next to its weights."""
    return (Path(folder) / TINY_MARKER).is_file()


def model_config(spec: Qwen2Shape) -> dict:
    """``config.json`` in the released Qwen2.5-Math format."""
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "attention_dropout": 0.0,
        "bos_token_id": ENDOFTEXT_ID,
        "eos_token_id": IM_END_ID,
        "hidden_act": "silu",
        "hidden_size": spec.hidden_size,
        "initializer_range": INITIALIZER_RANGE,
        "intermediate_size": spec.intermediate_size,
        "max_position_embeddings": CONTEXT,
        "max_window_layers": spec.num_hidden_layers,
        "num_attention_heads": spec.num_attention_heads,
        "num_hidden_layers": spec.num_hidden_layers,
        "num_key_value_heads": spec.num_key_value_heads,
        "rms_norm_eps": RMS_NORM_EPS,
        "rope_theta": ROPE_THETA,
        "sliding_window": CONTEXT,
        "tie_word_embeddings": spec.tie_word_embeddings,
        "torch_dtype": spec.dtype,
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": spec.vocab_size,
    }


def generation_config() -> dict:
    """``generation_config.json``: both stop ids, pad = ``<|endoftext|>``; sampling left to callers."""
    return {
        "bos_token_id": ENDOFTEXT_ID,
        "eos_token_id": [IM_END_ID, ENDOFTEXT_ID],
        "pad_token_id": ENDOFTEXT_ID,
    }


def weight_shapes(spec: Qwen2Shape, labels: int = 0) -> dict[str, tuple[int, ...]]:
    """Every tensor of Qwen2ForCausalLM at ``spec`` by its safetensors name; with ``labels``
    the score head ``score.0`` (h -> h), ``score.2`` (h -> labels) instead of the LM head."""
    h, i, d = spec.hidden_size, spec.intermediate_size, spec.head_dim
    q, kv = spec.num_attention_heads * d, spec.num_key_value_heads * d
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (spec.vocab_size, h)}
    for layer in range(spec.num_hidden_layers):
        p = f"model.layers.{layer}."
        shapes.update({
            p + "input_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (q, h), p + "self_attn.q_proj.bias": (q,),
            p + "self_attn.k_proj.weight": (kv, h), p + "self_attn.k_proj.bias": (kv,),
            p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.v_proj.bias": (kv,),
            p + "self_attn.o_proj.weight": (h, q),
            p + "post_attention_layernorm.weight": (h,),
            p + "mlp.gate_proj.weight": (i, h),
            p + "mlp.up_proj.weight": (i, h),
            p + "mlp.down_proj.weight": (h, i),
        })
    shapes["model.norm.weight"] = (h,)
    if labels:
        shapes.update({"score.0.weight": (h, h), "score.0.bias": (h,),
                       "score.2.weight": (labels, h), "score.2.bias": (labels,)})
    elif not spec.tie_word_embeddings:
        shapes["lm_head.weight"] = (spec.vocab_size, h)
    return shapes


def write_random_weights(file: Path, spec: Qwen2Shape, *, seed: int, labels: int = 0) -> None:
    """Norm weights 1; matrices and biases N(0, 0.02) (random biases keep the bias path tested)."""
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, spec.dtype)
    tensors = {}
    for name, shape in sorted(weight_shapes(spec, labels).items()):
        tensors[name] = random_tensor(name, shape, generator).to(dtype)
    save_file(tensors, str(file), metadata={"format": "pt"})


def random_tensor(name: str, shape: tuple[int, ...], generator) -> object:
    import torch

    if name.endswith("norm.weight"):
        return torch.ones(shape)
    if name.startswith("score.") and name.endswith("weight"):  # 1/sqrt(fan-in): rewards of order 1
        return torch.randn(shape, generator=generator) / shape[-1] ** 0.5
    return torch.randn(shape, generator=generator) * INITIALIZER_RANGE


def same_mode_as(file: Path, reference: Path) -> None:
    """Give ``file`` the permission bits of ``reference`` (a file written under the umask)."""
    file.chmod(stat.S_IMODE(reference.stat().st_mode))


def write_json(file: Path, data: dict) -> None:
    file.write_text(json.dumps(data, indent=2) + "\n")
