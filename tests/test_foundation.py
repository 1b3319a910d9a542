"""The frame: imports stay light, the CLI table, flags, exit codes, sample record schema."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from qwen_math.cli import SUBCOMMANDS, main
from qwen_math.config import SamplingConfig, default_sampling, sample_seed
from qwen_math.errors import UsageError
from qwen_math.record import SampleRecord, Turn, strip_time_dependent


# --- imports: fast, and no torch ---------------------------------------------------------
def test_imports_are_fast_and_torch_free():
    code = (
        "import time, sys; t = time.perf_counter();"
        "import qwen_math, sandbox, eval, qwen_math.cli;"
        "dt = time.perf_counter() - t;"
        "bad = [m for m in ('torch', 'transformers', 'sympy') if m in sys.modules];"
        "print(dt, bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, bad = out.stdout.split(" ", 1)
    assert float(seconds) < 1.0
    assert bad.strip() == "[]"


# --- CLI: help for every subcommand, usage errors -----------------------------------------
@pytest.mark.parametrize("command", [[], *([name] for name in SUBCOMMANDS)])
def test_help_exits_zero(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "qwen_math", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "solve" in out.stdout


@pytest.mark.parametrize(
    "argv",
    [
        ["solve", "1+1", "--bogus"],  # unknown flag
        ["solve", "1+1", "--temp", "0.5"],  # prefix abbreviation is off
        ["solve", "1+1", "--mode", "xyz"],  # bad choice
        ["nonsense"],  # unknown subcommand
    ],
)
def test_usage_errors_exit_2_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "error" in err


def test_offline_model_error_names_model_flag(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    code = main(["solve", "What is 1+1?", "--model", "no-such-org/no-such-model"])
    assert code == 4
    err = capsys.readouterr().err
    assert "--model PATH" in err and "Traceback" not in err


# --- SamplingConfig: validation and defaults ----------------------------------------------
@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"top_p": 1.5}, "top_p must be in (0, 1], got 1.5"),
        ({"top_p": 0.0}, "top_p must be in (0, 1], got 0.0"),
        ({"temperature": -1.0}, "temperature must be >= 0, got -1.0"),
        ({"n": 0}, "n must be an integer >= 1, got 0"),
        ({"max_tokens": 0}, "max_tokens must be an integer >= 1, got 0"),
        ({"top_k": -5}, "top_k must be -1 (disabled) or >= 0, got -5"),
    ],
)
def test_sampling_config_rejects(kwargs, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        SamplingConfig(**kwargs)


def test_sampling_config_normalises():
    config = SamplingConfig(temperature=0.0, top_p=0.5, top_k=20, stop="```output")
    assert config.greedy and config.top_p == 1.0 and config.top_k == -1
    assert config.stop == ("```output",)
    assert config.with_stop("```output", "x").stop == ("```output", "x")


@pytest.mark.parametrize(
    "n,temperature,expected",
    [
        (1, None, (0.0, 1.0)),  # one sample: greedy
        (8, None, (0.7, 0.8)),  # several: the model card's sampling
        (1, 0.7, (0.7, 0.8)),  # explicit temperature: sampling top_p
        (8, 0.0, (0.0, 1.0)),  # explicit greedy
    ],
)
def test_default_sampling(n, temperature, expected):
    config = default_sampling(n=n, temperature=temperature)
    assert (config.temperature, config.top_p) == expected


def test_sample_seed_is_pure_and_distinct():
    assert sample_seed(0, "gsm8k/1", 3) == sample_seed(0, "gsm8k/1", 3)
    seeds = {sample_seed(s, p, i) for s in (0, 1) for p in ("a", "b") for i in range(4)}
    assert len(seeds) == 16 and all(0 <= s < 2**63 for s in seeds)


# --- sample record: round trip, schema errors, time keys -----------------------------------
def _record() -> SampleRecord:
    return SampleRecord(
        dataset="gsm8k", idx=3, sample=1, question_id="gsm8k/3", question="1+1?",
        turns=(
            Turn(text="```python\nprint(1+1)\n```\n", code="print(1+1)", status="ok",
                 output="2", appended="```output\n2\n```\n", exec_duration_s=0.01),
            Turn(text="The answer is \\boxed{2}."),
        ),
        answer="2", gold="2", correct=True, finish_reason="stop", grade_status="correct",
        mode="tir", seed=7, prompt_tokens=10, completion_tokens=20,
        metadata={"level": 1}, generation_time_s=1.5,
    )


def test_record_round_trip():
    record = _record()
    data = json.loads(json.dumps(record.to_json()))
    assert SampleRecord.from_json(data) == record
    assert record.response.endswith("\\boxed{2}.") and "```output\n2\n```" in record.response
    assert record.tool_calls == 1


def test_record_time_keys_are_the_only_difference():
    a = _record().to_json()
    b = json.loads(json.dumps(a))
    b["generation_time_s"] = 99.0
    b["turns"][0]["exec_duration_s"] = 42.0
    assert a != b and strip_time_dependent(a) == strip_time_dependent(b)


def test_record_missing_fields_are_named():
    data = _record().to_json()
    del data["gold"], data["turns"]
    with pytest.raises(UsageError, match=r"lacks field\(s\) turns, gold; fields present: .*answer"):
        SampleRecord.from_json(data)


# --- official flag spellings ----------------------------------------------------------------
@pytest.mark.parametrize(
    "spelling,mode",
    [("tir", "tir"), ("tool-integrated", "tir"), ("qwen25-math-cot", "cot"), ("pal", "pot")],
)
def test_official_prompt_type_names_select_a_mode(spelling, mode):
    from qwen_math.cli import build_parser

    args = build_parser().parse_args(["solve", "1+1", "--prompt_type", spelling])
    assert args.mode == mode
