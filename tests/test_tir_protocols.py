"""The three TIR protocols, rule by rule, on hand-written completions (scripted backend, real sandbox).

Each case names the rule of the protocol table (``qwen_math.strategies.tir_protocols``) it
pins: truncation, silent cells, errors, math-eval's auto mode, round limits, state between
cells, timeouts, refusals, program selection, extraction. The CLI cases check that
``solve --backend scripted --json --tir-protocol P`` shows the exact text appended after each
program. Run-directory cases: the protocol is in the manifest and fingerprint, a run without
one resumes as ``notebook``, another protocol is refused (exit 5) naming it.
"""

from __future__ import annotations

import json
import time

import pytest

from qwen_math.config import SamplingConfig
from qwen_math.errors import UsageError
from qwen_math.strategies import MODES, MODES_WITH_CODE, STRATEGIES, make_strategy
from qwen_math.strategies.runner import Problem, SandboxAccess, run_trajectories
from qwen_math.strategies.tir_protocols import (
    PROTOCOLS,
    first_turn_text,
    get_protocol,
    last_complete_block_linewise,
    replay_program,
    truncate_middle,
)

pytest.importorskip("sandbox.session")

QUESTION = "What is 6*7?"
ALL = ("qwen-agent", "math-eval", "notebook")
LIMIT_MARKER = "\nReach max function call limit."


def cell(code: str) -> str:
    """A turn that writes ``code`` and asks for its output, as the model does."""
    return f"Let me compute.\n```python\n{code}\n```\n```output"


def block(shown: str, protocol: str) -> str:
    """What follows a ``cell()`` turn: math-eval right-strips the turn, so its block opens a line."""
    return ("\n" if protocol == "math-eval" else "") + f"```output\n{shown}\n```\n"


def run(backend, protocol, **options):
    strategy = make_strategy("tir", tir_protocol=protocol, **options)
    [trajectory] = run_trajectories([Problem("p", QUESTION)], strategy=strategy, sampling=SamplingConfig(),
                                    backend=backend, sandbox=SandboxAccess())
    return trajectory


# --- what is shown: truncation, silent cells, errors, auto mode --------------------------------
THOUSAND = "print('a' * 500 + 'b' * 500)"


@pytest.mark.parametrize("protocol, code, shown", [
    # a cell printing 1,000 characters
    ("qwen-agent", THOUSAND, "a" * 128 + "..." + "b" * 128),
    ("math-eval", THOUSAND, "a" * 200 + "..." + "b" * 200),
    ("notebook", THOUSAND, "a" * 500 + "b" * 500),
    # a silent cell whose last line prints nothing
    ("qwen-agent", "x = 5\nprint(end='')", ""),
    ("math-eval", "x = 5\nprint(end='')", "Done"),
    ("notebook", "x = 5\nprint(end='')", ""),
    # a cell that raises after printing: the Qwen runtimes show only the last traceback line
    ("qwen-agent", "print('partial')\nprint(1 / 0)", "ZeroDivisionError: division by zero"),
    ("math-eval", "print('partial')\nprint(1 / 0)", "ZeroDivisionError: division by zero"),
    ("notebook", "print('partial')\nprint(1 / 0)", "partial\nZeroDivisionError: division by zero"),
    # math-eval's auto mode: a last line without print( is evaluated, earlier stdout is dropped
    ("math-eval", "print('lost')\nx = 6 * 7\nx", "42"),
    ("math-eval", "x = 6 * 7\n(x, x + 1)", "(42, 43)"),
    ("qwen-agent", "print('kept')\nx = 6 * 7\nx", "kept"),
    ("qwen-agent", "x = 6 * 7\nx", ""),  # exec shows no value; only the notebook echoes one
    ("notebook", "x = 6 * 7\nx", "42"),
    ("math-eval", "x = 6 * 7\nx  # print(x)", "Done"),  # "print(" in the last line: stdout only
    # ... and a statement there is not an expression
    ("math-eval", "x = 1\ny = 2", "SyntaxError: invalid syntax"),
    # both Qwen runtimes refuse input( with a bare RuntimeError; Qwen-Agent also os.system(
    ("qwen-agent", "x = input('?')", "RuntimeError"),
    ("math-eval", "x = input('?')\nprint(x)", "RuntimeError"),
    ("qwen-agent", "import os\nos.system('true')", "RuntimeError"),
])
def test_what_a_cell_shows(scripted, protocol, code, shown):
    t = run(scripted([cell(code), "\\boxed{1}"]), protocol)
    assert t.turns[0].appended == block(shown, protocol)
    assert t.tool_calls == 1 and t.answer == "1"


# --- rounds ---------------------------------------------------------------------------------
def five_cells_then_answer():
    return [cell(f"print({i})") for i in range(1, 6)] + ["\\boxed{5}"]


def test_math_eval_stops_after_the_fourth_program_with_its_marker(scripted):
    t = run(scripted(five_cells_then_answer()), "math-eval")
    assert (t.tool_calls, len(t.turns), t.finish_reason) == (4, 4, "tool_limit")
    assert t.turns[-1].appended == block("4", "math-eval") + LIMIT_MARKER
    assert t.transcript.endswith("```output\n4\n```\n" + LIMIT_MARKER)


def test_qwen_agent_runs_five_programs_then_takes_the_answer(scripted):
    t = run(scripted(five_cells_then_answer()), "qwen-agent")
    assert (t.tool_calls, len(t.turns), t.finish_reason, t.answer) == (5, 6, "eos", "5")
    assert [turn.appended for turn in t.turns[:5]] == [block(str(i), "qwen-agent") for i in range(1, 6)]


def test_qwen_agent_ends_after_its_tenth_program(scripted):
    t = run(scripted([cell(f"print({i})") for i in range(1, 13)]), "qwen-agent")
    assert (t.tool_calls, t.calls, t.finish_reason) == (10, 10, "tool_limit")
    assert t.turns[-1].appended == block("10", "qwen-agent")  # no marker: the agent just stops


def test_notebook_runs_four_then_refuses_the_fifth_unrun(scripted):
    t = run(scripted(five_cells_then_answer()), "notebook")
    assert (t.tool_calls, len(t.turns), t.finish_reason) == (4, 5, "tool_limit")
    assert t.turns[-1].code is None


@pytest.mark.parametrize("protocol, finish, turns", [
    ("qwen-agent", "tool_limit", 2), ("math-eval", "tool_limit", 2), ("notebook", "tool_limit", 3)])
def test_max_tool_calls_caps_executions_under_every_protocol(scripted, protocol, finish, turns):
    t = run(scripted(five_cells_then_answer()), protocol, max_tool_calls=2)
    assert (t.tool_calls, t.finish_reason, len(t.turns)) == (2, finish, turns)


# --- state between cells ----------------------------------------------------------------------
@pytest.mark.parametrize("protocol, second", [
    ("math-eval", "42"),  # the first (successful) block is replayed, its print( lines dropped
    ("notebook", "42"),  # one persistent session
    ("qwen-agent", "NameError: name 'x' is not defined"),  # fresh state per program
])
def test_a_variable_of_an_earlier_successful_cell(scripted, protocol, second):
    t = run(scripted([cell("x = 6\nprint(x)"), cell("print(x * 7)"), "\\boxed{42}"]), protocol)
    assert t.turns[0].appended == block("6", protocol)
    assert t.turns[1].appended == block(second, protocol)


def test_math_eval_replays_only_successful_blocks_and_imports_of_failed_ones(scripted):
    t = run(scripted([cell("import math\nprint(undefined)"), cell("y = 7\nprint(y)"),
                      cell("print(math.factorial(3) * y)"), "\\boxed{42}"]), "math-eval")
    assert t.turns[0].appended == block("NameError: name 'undefined' is not defined", "math-eval")
    assert t.turns[2].appended == block("42", "math-eval")
    assert t.turns[2].code == "import math\ny = 7\n\nprint(math.factorial(3) * y)\n"


# --- timeouts -------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol, code", [
    ("qwen-agent", "import time\ntime.sleep(30)\nprint(1)"),
    ("math-eval", "import time\ntime.sleep(30)"),  # the evaluated last line sleeps
    ("math-eval", "import time\ntime.sleep(30)\nprint(1)"),
])
def test_a_cell_past_its_timeout_shows_timeout_error_in_time(scripted, protocol, code):
    start = time.monotonic()
    t = run(scripted([cell(code), "\\boxed{0}"]), protocol, tool_timeout=1.0)
    assert t.turns[0].appended == block("Timeout Error", protocol)
    assert t.turns[0].exec_duration_s < 2.0 and time.monotonic() - start < 10


def test_math_eval_own_timeout_is_five_seconds(scripted):
    t = run(scripted([cell("import time\ntime.sleep(30)"), "\\boxed{0}"]), "math-eval")
    assert t.turns[0].appended == block("Timeout Error", "math-eval")
    assert 5.0 <= t.turns[0].exec_duration_s < 6.0


def test_protocol_timeouts():
    assert {name: p.timeout_s for name, p in PROTOCOLS.items()} == {
        "qwen-agent": 20.0, "math-eval": 5.0, "notebook": 5.0}
    assert make_strategy("tir", tir_protocol="math-eval", tool_timeout=2.5).timeout_s == 2.5


# --- when a turn runs code ------------------------------------------------------------------
@pytest.mark.parametrize("protocol, ran", [("qwen-agent", 1), ("math-eval", 0), ("notebook", 0)])
def test_a_closed_block_then_a_boxed_answer(scripted, protocol, ran):
    # Qwen-Agent runs any complete block, even one followed by the answer (and asks again)
    t = run(scripted(["```python\nprint(42)\n```\nSo \\boxed{42}.", "Indeed \\boxed{42}."]), protocol)
    assert t.tool_calls == ran and t.answer == "42"


@pytest.mark.parametrize("protocol, ran", [("qwen-agent", 1), ("math-eval", 1), ("notebook", 1)])
def test_a_block_closed_at_the_end_of_the_answer(scripted, protocol, ran):
    t = run(scripted(["Compute.\n```python\nprint(6 * 7)\n```", "\\boxed{42}"]), protocol)
    assert t.tool_calls == ran and t.answer == "42"


def test_math_eval_stops_on_its_separator(scripted):
    t = run(scripted(["Reasoning.\n\n---\nMore text \\boxed{1}"]), "math-eval")
    assert t.turns[0].text == "Reasoning." and t.finish_reason == "stop"


# --- program selection, table-driven ------------------------------------------------------------
@pytest.mark.parametrize("turn, program", [
    # qwen-agent: the last block; a line ending with ```python opens one; an unclosed last block: none
    ("a\n```python\nx = 1\n```\nb\n```python\nprint(2)\n```\n", "print(2)\n"),
    ("see: ```python\nprint(3)\n```", "print(3)\n"),
    ("```python\nprint(1)\n```\n```python\nprint(2)", None),
    ("no code", None),
])
def test_qwen_agent_program_selection(turn, program):
    assert last_complete_block_linewise("", turn) == program


@pytest.mark.parametrize("text, program", [
    # the last program only
    ("Q\n```python\nprint(1)\n```", "print(1)\n"),
    # a successful earlier program is replayed without its print( lines
    ("```python\na = 1\nprint(a)\n```\n```output\n1\n```\nok\n```python\nprint(a)\n```",
     "a = 1\n\nprint(a)\n"),
    # an output with an error word marks the block failed: only its imports come first
    ("```python\nimport sympy\nz = 1/0\n```\n```output\nZeroDivisionError\n```\n```python\nprint(2)\n```",
     "import sympy\nprint(2)\n"),
    ("```python\nx = 1\n```\n```output\nnan\n```\n```python\nprint(2)\n```", "print(2)\n"),
    # a second ```python line before the first block's output: the official parser gives up
    ("```python\nx = 1\n```\n```python\nprint(2)\n```", "raise ValueError('Invalid trajectory')"),
])
def test_math_eval_replay_program(text, program):
    assert replay_program(text) == program


# --- extraction: --extract-from ---------------------------------------------------------------
def test_first_turn_extraction_reads_before_the_first_stop_string(scripted):
    lines = [cell("print(41 + 1)"), "So the answer is \\boxed{42}."]
    full = run(scripted(lines), "math-eval")
    first = run(scripted(lines), "math-eval", extract_from="first-turn")
    assert full.answer == "42"
    assert first.answer != "42"  # the boxed answer is after the first "```output"
    assert first_turn_text("a \\boxed{1}\n```output\n2\n```\n\\boxed{2}", ("```output",)) == "a \\boxed{1}"


def test_truncate_middle():
    assert truncate_middle("x" * 256, 256) == "x" * 256
    assert truncate_middle("abcdef", 4) == "ab...ef"
    assert truncate_middle("abcdef", None) == "abcdef"


# --- one list of modes, unknown names -----------------------------------------------------------
def test_modes_derive_from_the_strategies_registry():
    from qwen_math.commands import flags
    from qwen_math.runs import run as runs

    assert MODES == tuple(STRATEGIES) == flags.MODES == ("cot", "pot", "tir")
    assert runs.MODES_WITH_CODE is MODES_WITH_CODE == frozenset({"pot", "tir"})


@pytest.mark.parametrize("options, message", [
    ({"tir_protocol": "agent"}, "unknown TIR protocol 'agent'; choose one of: qwen-agent, math-eval, notebook"),
    ({"max_tool_calls": -1}, "max_tool_calls must be an integer >= 0"),
    ({"tool_timeout": 0}, "tool_timeout must be a finite number of seconds > 0"),
    ({"extract_from": "last"}, "extract_from must be one of full, first-turn"),
])
def test_bad_tir_options(options, message):
    with pytest.raises(UsageError, match=message):
        make_strategy("tir", **options)


def test_protocol_values_are_recorded():
    settings = make_strategy("tir", tir_protocol="math-eval", max_tool_calls=3).settings()
    assert settings["protocol"] == "math-eval" and settings["max_tool_calls"] == 3
    assert settings["stop"] == ["</s>", "<|im_end|>", "<|endoftext|>", "\n\n---", "```output"]
    assert settings["limit_marker"] == LIMIT_MARKER and settings["truncate_chars"] == 400
    assert get_protocol("qwen-agent").max_tool_calls == 10


# --- the CLI shows the exact text appended after each program ------------------------------------
@pytest.mark.parametrize("protocol", ALL)
def test_cli_solve_json_shows_each_appended_block(tmp_path, capsys, protocol):
    from qwen_math.cli import main

    script = tmp_path / "script.jsonl"
    script.write_text(json.dumps([cell(THOUSAND), cell("x = 5\nprint(end='')"), "\\boxed{42}"]) + "\n")
    argv = ["-q", "solve", QUESTION, "--mode", "tir", "--backend", "scripted", "--script", str(script),
            "--json", "--tir-protocol", protocol]
    assert main(argv) == 0
    [sample] = json.loads(capsys.readouterr().out)["samples"]
    shown = {"qwen-agent": ["a" * 128 + "..." + "b" * 128, ""],
             "math-eval": ["a" * 200 + "..." + "b" * 200, "Done"],
             "notebook": ["a" * 500 + "b" * 500, ""]}[protocol]
    assert [turn["appended"] for turn in sample["turns"]] == [block(s, protocol) for s in shown] + [""]


# --- runs: recorded, resumed, refused -----------------------------------------------------------
@pytest.fixture
def tir_eval(shared_data, tmp_path):
    script = tmp_path / "tir.jsonl"
    script.write_text(json.dumps([cell("print(18)"), "The answer is \\boxed{18}."]) + "\n")

    def argv(run_dir, *extra):
        return ["-q", "eval", "--datasets", "gsm8k", "--data-dir", str(shared_data / "benchmarks"),
                "--limit", "1", "--mode", "tir", "--backend", "scripted", "--script", str(script),
                "--output-dir", str(run_dir), "--no-progress", "--grader-workers", "1", *extra]

    return argv


def test_run_records_the_protocol_and_refuses_another(tir_eval, tmp_path, capsys):
    from qwen_math.cli import main

    run_dir = tmp_path / "run"
    assert main(tir_eval(run_dir, "--tir-protocol", "math-eval")) == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config"]["tir"]["protocol"] == "math-eval"
    fields = manifest["fingerprint"]["fields"]
    assert fields["tir.protocol"] == "math-eval" and fields["max_tool_calls"] == 4
    assert fields["tir.timeout_s"] == 5.0 and fields["tir.extract_from"] == "full"
    assert main(tir_eval(run_dir)) == 0  # no flag: the run keeps its own protocol
    capsys.readouterr()
    assert main(tir_eval(run_dir, "--tir-protocol", "qwen-agent")) == 5
    assert 'tir.protocol: "math-eval" -> "qwen-agent"' in capsys.readouterr().err


def test_a_run_without_a_recorded_protocol_resumes_as_notebook(tir_eval, tmp_path, capsys):
    from qwen_math.cli import main

    run_dir = tmp_path / "run"
    assert main(tir_eval(run_dir, "--tir-protocol", "notebook")) == 0
    # make it look like a run from before protocols: no tir.* fields, no tir config
    path = run_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["fingerprint"]["fields"] = {k: v for k, v in manifest["fingerprint"]["fields"].items()
                                         if not k.startswith("tir.")}
    manifest["config"].pop("tir")
    path.write_text(json.dumps(manifest))
    assert main(tir_eval(run_dir)) == 0
    capsys.readouterr()
    assert main(tir_eval(run_dir, "--tir-protocol", "qwen-agent")) == 5
    assert 'tir.protocol: "notebook" -> "qwen-agent"' in capsys.readouterr().err


def test_compare_shows_the_protocol_difference_first(tir_eval, tmp_path, capsys):
    from qwen_math.cli import main

    runs = {p: tmp_path / p for p in ("math-eval", "notebook")}
    for protocol, run_dir in runs.items():
        assert main(tir_eval(run_dir, "--tir-protocol", protocol, "--seed", "3")) == 0
    capsys.readouterr()
    assert main(["-q", "compare", str(runs["math-eval"]), str(runs["notebook"])]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = lines[lines.index("configuration differences (A -> B):") + 1]
    assert first.strip() == 'tir.protocol: "math-eval" -> "notebook"'
