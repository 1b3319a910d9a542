"""What a reward-model checkpoint is, read from its files before any weight is loaded.

``inspect_reward_model(path)`` reads ``config.json`` and the safetensors headers (no tensor
data) and returns a ``RewardModelInfo``: the kind (``orm``: a ``score.2`` head with one output,
the ``Qwen2ForRewardModel`` layout of Qwen2.5-Math-RM-72B; ``prm``: two outputs, the
Qwen2.5-Math-PRM-7B layout), the head's tensor names and the total weight bytes. A checkpoint
without ``score.*`` tensors (a policy model) and a ``--kind`` that contradicts the head are
``UsageError``s naming the checkpoint. ``check_fits`` refuses (``EnvironmentUnavailable``)
when the weights are larger than the memory the device has free, before loading.

What it deliberately does not do: load weights, or import torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_math.errors import EnvironmentUnavailable, UsageError

#: head tensor names of both layouts: score.0 Linear(h, h) -> ReLU -> score.2 Linear(h, labels).
HEAD_TENSORS = ("score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias")
#: number of ``score.2`` outputs -> kind.
KIND_BY_LABELS = {1: "orm", 2: "prm"}
KINDS = ("orm", "prm")
#: PRM step separator (one added token in the PRM's tokenizer).
STEP_SEPARATOR = "<extra_0>"
#: transformers loads a checkpoint into about this multiple of its weight bytes (activations).
LOAD_OVERHEAD = 1.2


@dataclass(frozen=True)
class RewardModelInfo:
    """A reward checkpoint on disk: where, which kind, and how big."""

    path: Path
    model_id: str  # what the user passed (a hub id or a folder)
    kind: str
    hidden_size: int
    weight_bytes: int
    revision: str  # the hub snapshot's commit, or a digest of config + head shapes for a folder

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model_id, "path": str(self.path), "kind": self.kind,
                "revision": self.revision, "weight_bytes": self.weight_bytes}


def safetensors_header(file: Path) -> dict[str, Any]:
    """The JSON header of one safetensors file (tensor names -> dtype, shape, offsets)."""
    with file.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        return json.loads(handle.read(length))


def weight_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.safetensors"))


def tensor_shapes(path: Path) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for file in weight_files(path):
        try:
            header = safetensors_header(file)
        except (OSError, ValueError, struct.error) as exc:
            raise UsageError(f"--reward-model {path}: {file.name} is not a safetensors file ({exc})") from None
        shapes.update({name: meta["shape"] for name, meta in header.items() if name != "__metadata__"})
    return shapes


def inspect_reward_model(model_id: str, path: Path, *, kind: str | None = None) -> RewardModelInfo:
    """The kind and size of the reward checkpoint in ``path``; refuses a checkpoint that is
    not one, and a ``kind`` that contradicts its head."""
    if not weight_files(path):
        raise UsageError(f"--reward-model {model_id}: no *.safetensors weights in {path}")
    shapes = tensor_shapes(path)
    missing = [name for name in HEAD_TENSORS if name not in shapes]
    if missing:
        raise UsageError(f"--reward-model {model_id}: not a reward model (no score head: "
                         f"{', '.join(missing)} missing; a policy checkpoint goes to --model)")
    labels = shapes["score.2.weight"][0]
    found = KIND_BY_LABELS.get(labels)
    if found is None:
        raise UsageError(f"--reward-model {model_id}: score.2 has {labels} outputs; "
                         "expected 1 (ORM) or 2 (PRM)")
    if kind is not None and kind != found:
        raise UsageError(f"--reward-model {model_id}: --kind {kind} but the checkpoint is a {found} "
                         f"(score.2 has {labels} output{'s' if labels > 1 else ''})")
    weight_bytes = sum(f.stat().st_size for f in weight_files(path))
    return RewardModelInfo(path, model_id, found, shapes["score.0.weight"][1], weight_bytes,
                           checkpoint_revision(path, shapes))


def checkpoint_revision(path: Path, shapes: dict[str, list[int]]) -> str:
    """The hub commit of a cached snapshot (its folder name), else a digest of config.json,
    the tensor shapes and the weight files' sizes and edges."""
    if path.parent.name == "snapshots":
        return path.name
    digest = hashlib.sha256((path / "config.json").read_bytes())
    digest.update(json.dumps(shapes, sort_keys=True).encode())
    for file in weight_files(path):
        with file.open("rb") as handle:
            digest.update(handle.read(1 << 16))
        digest.update(str(file.stat().st_size).encode())
    return "sha256:" + digest.hexdigest()[:16]


def available_bytes(device: str) -> int | None:
    """Free memory on ``device`` (CUDA: free device memory; CPU: MemAvailable), or ``None``."""
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return None
        index = int(device.split(":")[1]) if ":" in device else 0
        free, _total = torch.cuda.mem_get_info(index)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def loaded_bytes(info: RewardModelInfo, dtype_bytes: int, stored_bytes: int) -> int:
    """Bytes the weights take once loaded in a dtype of ``dtype_bytes`` per value."""
    return int(info.weight_bytes * dtype_bytes / stored_bytes * LOAD_OVERHEAD)


def check_fits(info: RewardModelInfo, *, device: str, dtype_bytes: int, stored_bytes: int) -> None:
    """Refuse, before loading, weights that do not fit the device's free memory."""
    need = loaded_bytes(info, dtype_bytes, stored_bytes)
    free = available_bytes(device)
    if free is not None and need > free:
        raise EnvironmentUnavailable(
            f"--reward-model {info.model_id}: needs ~{need / 2**30:.1f} GiB on {device} but "
            f"{free / 2**30:.1f} GiB are free; score with --backend vllm -tp N (tensor parallel) "
            "or a smaller reward model")
