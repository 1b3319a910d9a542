"""Locating and loading a Qwen2.5-Math checkpoint and its tokenizer.

``resolve_checkpoint`` turns a Hugging Face id or a local folder into a local folder: a folder
is used as is; an id is looked up in the Hugging Face cache and downloaded when the hub is
reachable. Offline without a cached copy it raises ``EnvironmentUnavailable`` with one sentence
naming ``--model PATH`` and the cache.

What it deliberately does not do: import torch or transformers at module import time.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from qwen_math.errors import EnvironmentUnavailable, UsageError

log = logging.getLogger(__name__)


def hf_cache_dir() -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return str(HF_HUB_CACHE)


def check_config_json(path: Path, model: str) -> None:
    """A checkpoint's ``config.json`` must be one JSON object (transformers fails obscurely)."""
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--model {model}: {path.name} is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        raise UsageError(f"--model {model}: {path.name} must be a JSON object, got {type(config).__name__}")


def resolve_checkpoint(model: str) -> Path:
    """A local folder holding ``config.json`` for ``model`` (an id or a path)."""
    path = Path(model).expanduser()
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"--model {model}: is a file; pass the checkpoint folder")
        if not (path / "config.json").is_file():
            raise UsageError(f"--model {model}: folder has no config.json (not a checkpoint)")
        check_config_json(path / "config.json", model)
        return path
    if model.startswith((".", "/", "~")) or os.sep in model.strip("/").split("/", 1)[-1]:
        raise UsageError(f"--model {model}: no such folder")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached: try the hub below
        pass
    try:
        return Path(snapshot_download(model, allow_patterns=["*.json", "*.safetensors", "*.txt", "*.jinja", "*.model"]))
    except Exception as exc:  # noqa: BLE001 - every hub failure means the same to the user
        log.debug("hub download of %s failed: %r", model, exc)
        raise EnvironmentUnavailable(
            f"model {model!r} is not in the Hugging Face cache ({hf_cache_dir()}) and could not "
            f"be downloaded ({type(exc).__name__}); pass --model PATH to a local checkpoint folder "
            "(`qwen-math dev tiny-model DIR` makes a small random one for offline testing)"
        ) from None
