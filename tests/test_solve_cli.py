"""`qwen-math solve`: problem sources, output formats, and every bad-input case."""

from __future__ import annotations

import io
import json

import pytest

from qwen_math.cli import main

pytest.importorskip("eval.metrics")

TIR_SCRIPT = [
    "Let me compute.\n```python\nprint(6 * 7)\n```\n```output",
    "Now a check.\n```python\nprint(answer)\n```\n```output",
    "The product is 42, so the answer is \\boxed{42}.",
]


@pytest.fixture
def script(tmp_path):
    def write(*lines: list[str]) -> str:
        path = tmp_path / "script.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        return str(path)

    return write


def solve_json(capsys, *argv: str) -> dict:
    assert main(["-q", "solve", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


# --- the scripted TIR demonstration: two tool calls, one an error --------------------
def test_scripted_tir_json_shows_cells_and_final_answer(script, capsys):
    out = solve_json(capsys, "What is 6*7?", "--mode", "tir", "--backend", "scripted", "--script", script(TIR_SCRIPT))
    assert out["answer"] == "42" and out["votes"] == {"42": 1}
    [sample] = out["samples"]
    assert sample["finish_reason"] == "eos" and sample["answer"] == "42"
    first, second, last = sample["turns"]
    assert (first["status"], first["output"].strip()) == ("ok", "42")
    assert second["status"] == "error" and "NameError" in second["output"]
    assert "\\boxed{42}" in last["text"] and last["code"] is None
    assert sample["completion_tokens"] > 0 and sample["prompt_tokens"] > 0


def test_votes_over_n_samples(script, capsys):
    path = script(["\\boxed{4}"], ["\\boxed{5}"], ["\\boxed{4}"])
    out = solve_json(capsys, "2+2?", "-n", "3", "--backend", "scripted", "--script", path)
    assert out["answer"] == "4" and out["votes"] == {"4": 2, "5": 1}
    assert [s["sample"] for s in out["samples"]] == [0, 1, 2]


def test_text_output_answer_votes_and_trace(script, capsys):
    path = script(TIR_SCRIPT)
    code = main(["-q", "solve", "What is 6*7?", "--mode", "tir", "--backend", "scripted",
                 "--script", path, "--show-trace"])
    out = capsys.readouterr().out
    assert code == 0
    assert "answer: 42" in out and "[cell 1: ok" in out and "[cell 2: error" in out


# --- terminal safety: model text and program output cannot drive the terminal -------------------
def test_control_characters_are_escaped_in_text_output(script, capsys):
    evil = "```python\nprint('\\x1b]0;pwned\\x07\\x1b[2J')\n```\n```output"
    argv = ["-q", "solve", "What is 6*7?", "--mode", "tir", "--backend", "scripted",
            "--script", script([evil, "\x1b[31m\\boxed{42}"]), "--show-trace"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b]0;pwned\\x07" in out and "answer: 42" in out


# --- problem sources ---------------------------------------------------------------------------
def test_problem_from_at_file_and_file_flag(script, tmp_path, capsys):
    problem = tmp_path / "problem.txt"
    problem.write_text("What is 2+2?\n")
    path = script(["\\boxed{4}"])
    for source in (["@" + str(problem)], ["--file", str(problem)]):
        assert solve_json(capsys, *source, "--backend", "scripted", "--script", path)["answer"] == "4"


def test_problem_from_stdin(script, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("What is 2+2?"))
    assert solve_json(capsys, "-", "--backend", "scripted", "--script", script(["\\boxed{4}"]))["answer"] == "4"


# --- bad input: one line on stderr, non-zero exit ------------------------------------------------
def one_line_error(capsys, argv, code):
    try:
        got = main(argv)
    except SystemExit as exc:  # argparse errors
        got = exc.code
    err = capsys.readouterr().err.strip()
    assert got == code, err
    assert len(err.splitlines()) == 1 and "error" in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "argv,code,message",
    [
        # empty problem
        (["solve", ""], 2, "the problem is empty"),
        (["solve", "   \n"], 2, "the problem is empty"),
        # no problem at all, or two sources
        (["solve"], 2, "no problem given"),
        (["solve", "x", "--file", "f.txt"], 2, "not both"),
        # unreadable sources
        (["solve", "@/no/such/file.txt"], 2, "no such file"),
        # unknown mode, backend, model folder
        (["solve", "1+1", "--mode", "xyz"], 2, "invalid choice"),
        (["solve", "1+1", "--backend", "nope"], 2, "unknown backend 'nope'"),
        (["solve", "1+1", "--model", "./no/such/model"], 2, "no such folder"),
        # sampling values
        (["solve", "1+1", "--n", "0"], 2, "n must be an integer >= 1, got 0"),
        (["solve", "1+1", "--temperature", "-1"], 2, "temperature must be >= 0, got -1.0"),
        (["solve", "1+1", "--top-p", "1.5"], 2, "top_p must be in (0, 1], got 1.5"),
        (["solve", "1+1", "--max-tokens", "0"], 2, "max_tokens must be an integer >= 1"),
        (["solve", "1+1", "--max-tool-calls", "-1"], 2, "--max-tool-calls must be an integer >= 0"),
        (["solve", "1+1", "--prompt", "chat"], 2, "--prompt must be one of instruct, few-shot, got 'chat'"),
        # bad flags
        (["solve", "1+1", "--n", "many"], 2, "invalid int value"),
        # scripted backend without its script
        (["solve", "1+1", "--backend", "scripted"], 2, "needs --script FILE"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(capsys, argv, code, message):
    assert message in one_line_error(capsys, argv, code)


def test_one_megabyte_problem(tmp_path, capsys):
    big = tmp_path / "big.txt"
    big.write_text("x" * (1 << 20))
    assert "1,048,576 characters" in one_line_error(capsys, ["solve", "@" + str(big)], 2)


def test_prompt_longer_than_the_context(script, capsys):
    long_problem = " ".join(f"w{i}" for i in range(5000))  # ~10k tokens, well under the char cap
    err = one_line_error(capsys, ["solve", long_problem, "--backend", "scripted", "--script", script(["x"])], 2)
    assert "context window is 4,096 tokens" in err


def test_bad_script_line_names_file_and_line(script, capsys):
    path = script(["ok"])
    with open(path, "a") as handle:
        handle.write("{broken\n")
    err = one_line_error(capsys, ["solve", "1+1", "--backend", "scripted", "--script", path], 2)
    assert "script.jsonl:2: not valid JSON" in err


def test_unknown_model_id_offline(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    err = one_line_error(capsys, ["solve", "1+1", "--model", "no-such-org/no-such-model"], 4)
    assert "--model PATH" in err


# --- streaming: one sample on a terminal prints each turn as it completes ------------------------
def test_streams_turns_on_a_terminal(script, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert main(["-q", "solve", "What is 6*7?", "--mode", "tir", "--backend", "scripted",
                 "--script", script(TIR_SCRIPT)]) == 0
    out = capsys.readouterr().out
    transcript = out[: out.index("answer: 42")]
    assert transcript.index("print(6 * 7)") < transcript.index("```output\n42\n```") < transcript.index("[cell error]")
    assert "\\boxed{42}" in transcript
