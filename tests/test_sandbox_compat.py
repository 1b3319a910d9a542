"""Compatibility with real model programs: re-running them reproduces their recorded output.

ToRA trajectories (../shared/data/model_outputs) interleave ```python blocks with the
```output the original executor produced (stdout, or the error's last line). Each block runs
in a fresh session; the comparison ignores surrounding whitespace. The quick tests run a fixed
sample; the `slow` ones run everything and require >= 98 % (failures are listed on stdout).

The same trajectories also run through the TIR protocols ``notebook`` (one persistent session per
trajectory, stdout and error shown together) and ``math-eval`` (ToRA's own runtime family:
earlier successful blocks replayed, auto mode, 400-character truncation): the program each
protocol selects from the text so far, executed and shown its way, must reproduce >= 97 % of
the recorded outputs.
"""

from __future__ import annotations

import contextlib
import json
import re
import types
from concurrent.futures import ThreadPoolExecutor

import pytest

from sandbox import SandboxPool

BLOCK = re.compile(r"```python\n(.*?)```\n```output\n(.*?)```", re.S)
TORA_FILES = ("tora_code_34b_gsm8k_tir.jsonl", "tora_70b_gsm8k_tir.jsonl")
SAMPLE_EVERY = 25
REQUIRED = 0.98
REQUIRED_UNDER_PROTOCOL = 0.97
PROTOCOLS = ("notebook", "math-eval")


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


# -- through the TIR protocols
def tora_trajectories(path) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """(row idx, [(text up to the end of a python block, that turn's text, recorded output)])."""
    trajectories = []
    for line in path.read_text().splitlines():
        row = json.loads(line)
        text, steps, turn_start = row["code"][0], [], 0
        for match in BLOCK.finditer(text):
            code_end = match.start(1) + len(match.group(1)) + len("```")
            steps.append((text[:code_end], text[turn_start:code_end], match.group(2)))
            turn_start = match.end()
        if steps:
            trajectories.append((str(row["idx"]), steps))
    return trajectories


def protocol_mismatches(pool, trajectories, protocol_name) -> tuple[int, list[tuple[str, str, str, str]]]:
    """(blocks run, mismatches) when each trajectory's blocks run in turn under the protocol."""
    from qwen_math.strategies import make_strategy
    from qwen_math.strategies.runner import SandboxAccess

    strategy = make_strategy("tir", tir_protocol=protocol_name, tool_timeout=10.0)
    access = SandboxAccess(pool=pool)

    def check(item):
        traj_id, steps = item
        state = types.SimpleNamespace(session=None, resources=contextlib.ExitStack())
        failed = []
        with state.resources:
            for n, (text_so_far, turn_text, expected) in enumerate(steps):
                program = strategy.protocol.select_program(text_so_far, turn_text)
                shown = strategy.protocol.show(strategy.execute(state, program or "", access))
                if shown.strip() != expected.strip():
                    failed.append((f"{traj_id}.{n}", protocol_name, shown[:200], expected[:200]))
        return failed

    with ThreadPoolExecutor(4) as workers:
        results = list(workers.map(check, trajectories))
    return sum(len(steps) for _, steps in trajectories), [f for failed in results for f in failed]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tora_sample_reproduces_under_protocol(pool, shared_data, protocol):
    trajectories = tora_trajectories(shared_data / "model_outputs" / TORA_FILES[0])[::SAMPLE_EVERY]
    total, failed = protocol_mismatches(pool, trajectories, protocol)
    assert 1 - len(failed) / total >= REQUIRED_UNDER_PROTOCOL, failed


@pytest.mark.slow
@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("name", TORA_FILES)
def test_tora_full_reproduces_under_protocol(pool, shared_data, name, protocol):
    total, failed = protocol_mismatches(pool, tora_trajectories(shared_data / "model_outputs" / name), protocol)
    for failure in failed:
        print("MISMATCH", *failure)
    print(f"{name} under {protocol}: {total - len(failed)} of {total} reproduced "
          f"({100 * (1 - len(failed) / total):.2f} %)")
    assert 1 - len(failed) / total >= REQUIRED_UNDER_PROTOCOL, f"{len(failed)} of {total} differ"
