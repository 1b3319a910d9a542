"""Compatibility with real model programs: re-running them reproduces their recorded output.

ToRA trajectories (../shared/data/model_outputs) interleave ```python blocks with the
```output the original executor produced (stdout, or the error's last line). Each block runs
in a fresh session; the comparison ignores surrounding whitespace. The quick tests run a fixed
sample; the `slow` ones run everything and require >= 98 % (failures are listed on stdout).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from sandbox import SandboxPool

BLOCK = re.compile(r"```python\n(.*?)```\n```output\n(.*?)```", re.S)
TORA_FILES = ("tora_code_34b_gsm8k_tir.jsonl", "tora_70b_gsm8k_tir.jsonl")
SAMPLE_EVERY = 25
REQUIRED = 0.98


def tora_blocks(path) -> list[tuple[str, str, str]]:
    """(block id, code, recorded output) for every python block of every trajectory."""
    blocks = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        for n, (code, output) in enumerate(BLOCK.findall(row["code"][0])):
            blocks.append((f"{row['idx']}.{n}", code, output))
    return blocks


def model_visible_output(result) -> str:
    return result.stdout if result.status == "ok" else (result.error or result.status)


def mismatches(pool, cases) -> list[tuple[str, str, str, str]]:
    """(id, status, got, expected) for each case whose output differs."""

    def check(case):
        case_id, code, expected = case
        result = pool.run_code(code)
        got = model_visible_output(result)
        return None if got.strip() == expected.strip() else (case_id, result.status, got[:200], expected[:200])

    with ThreadPoolExecutor(4) as workers:
        return [m for m in workers.map(check, cases) if m is not None]


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(timeout=10.0) as sandbox_pool:
        yield sandbox_pool


def tir_programs(shared_data):
    rows = [json.loads(line) for line in (shared_data / "sandbox/tir_programs_200.jsonl").read_text().splitlines()]
    return [(row["id"], row["code"], row["expected_stdout"]) for row in rows]


# -- quick samples (default run)
def test_tora_sample_reproduces_recorded_output(pool, shared_data):
    blocks = tora_blocks(shared_data / "model_outputs" / TORA_FILES[0])[::SAMPLE_EVERY]
    assert mismatches(pool, blocks) == []


def test_tir_programs_sample_reproduce_expected_stdout(pool, shared_data):
    assert mismatches(pool, tir_programs(shared_data)[::10]) == []


# -- full runs
@pytest.mark.slow
@pytest.mark.parametrize("name", TORA_FILES)
def test_tora_full_reproduces_recorded_output(pool, shared_data, name):
    blocks = tora_blocks(shared_data / "model_outputs" / name)
    failed = mismatches(pool, blocks)
    for failure in failed:
        print("MISMATCH", *failure)
    assert 1 - len(failed) / len(blocks) >= REQUIRED, f"{len(failed)} of {len(blocks)} differ"


@pytest.mark.slow
def test_tir_programs_all_reproduce_expected_stdout(pool, shared_data):
    assert mismatches(pool, tir_programs(shared_data)) == []
