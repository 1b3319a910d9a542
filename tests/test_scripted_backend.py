"""The scripted backend: script parsing errors, the backend contract, trajectories, cycling."""

from __future__ import annotations

import json

import pytest

from qwen_math.backends.base import Backend, BackendOptions, GenerationRequest, get_backend_class
from qwen_math.backends.scripted import ScriptedBackend, read_script
from qwen_math.config import SamplingConfig
from qwen_math.errors import UsageError


def write_script(tmp_path, *lines: str):
    path = tmp_path / "script.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def make_backend(tmp_path, qwen_tokenizer):
    def make(*lines: list[str], context_window: int = 4096) -> ScriptedBackend:
        path = write_script(tmp_path, *(json.dumps(line) for line in lines))
        return ScriptedBackend(read_script(path), tokenizer=qwen_tokenizer, context_window=context_window)

    return make


def request(rid: str, *, key: str | None = None, prompt: str = "Q: 1+1?\n", **sampling) -> GenerationRequest:
    return GenerationRequest(rid, prompt, SamplingConfig(**sampling), seed=0, cache_key=key)


# --- bad script files: one UsageError naming file:line -------------------------------------
@pytest.mark.parametrize(
    "lines,message",
    [
        # not JSON
        (['["ok"]', "{not json"], "script.jsonl:2: not valid JSON"),
        # JSON, but not a list of strings
        (['{"a": 1}'], "script.jsonl:1: expected a non-empty JSON list of strings"),
        (['["ok", 3]'], "script.jsonl:1: expected a non-empty JSON list of strings"),
        (["[]"], "script.jsonl:1: expected a non-empty JSON list of strings"),
        # blank lines are skipped, the numbering still counts them
        (['["ok"]', "", '"just a string"'], "script.jsonl:3: expected"),
        # nothing at all
        (["", "  "], "the file has no completions"),
    ],
)
def test_bad_script_lines_name_file_and_line(tmp_path, lines, message):
    with pytest.raises(UsageError, match=message):
        read_script(write_script(tmp_path, *lines))


def test_missing_script_file(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        read_script(tmp_path / "absent.jsonl")


def test_create_requires_script():
    with pytest.raises(UsageError, match="--backend scripted needs --script FILE"):
        ScriptedBackend.create(BackendOptions(script=None))


def test_registered_under_its_name():
    assert get_backend_class("scripted") is ScriptedBackend


# --- the backend contract ------------------------------------------------------------------
def test_is_a_backend(make_backend):
    assert isinstance(make_backend(["x"]), Backend)


@pytest.mark.parametrize(
    "scripted,stop,text,finish,stop_string",
    [
        # no stop string in the text: it ends as the model would (EOS)
        ("The answer is 2.", ("```output",), "The answer is 2.", "eos", None),
        # cut before the stop string, which is not included
        ("```python\nprint(2)\n```\n```output\n2\n```", ("```output",), "```python\nprint(2)\n```\n",
         "stop", "```output"),
        # the earliest of several stop strings wins
        ("a STOP2 b STOP1", ("STOP1", "STOP2"), "a ", "stop", "STOP2"),
        # EOS token text in the script ends the completion
        ("Done.<|im_end|>ignored", ("```output",), "Done.", "eos", None),
    ],
)
def test_stop_strings_and_eos(make_backend, scripted, stop, text, finish, stop_string):
    [completion] = make_backend([scripted]).generate([request("r", stop=stop)])
    assert (completion.text, completion.finish_reason, completion.stop_string) == (text, finish, stop_string)


def test_max_tokens_cuts_with_length(make_backend, qwen_tokenizer):
    long_text = " ".join(f"word{i}" for i in range(50))
    [completion] = make_backend([long_text]).generate([request("r", max_tokens=7)])
    assert completion.finish_reason == "length"
    assert completion.completion_tokens == 7 == len(completion.token_ids)
    assert long_text.startswith(completion.text)
    assert qwen_tokenizer.decode(list(completion.token_ids)) == completion.text


def test_context_window_cuts_with_length(make_backend):
    backend = make_backend([" ".join(["x"] * 100)], context_window=30)
    [completion] = backend.generate([request("r", prompt="one two three four five")])
    assert completion.finish_reason == "length"
    assert completion.prompt_tokens + completion.completion_tokens == 30


def test_token_counts_use_the_qwen_tokenizer(make_backend):
    backend = make_backend(["Hello world"])
    [completion] = backend.generate([request("r", prompt="<|im_start|>user\nHello<|im_end|>\n")])
    assert completion.token_ids == (9707, 1879)
    assert completion.prompt_tokens == 6  # <|im_start|> user \n Hello <|im_end|> \n
    assert backend.count_tokens("Hello world") == 2


# --- trajectories and cycling -----------------------------------------------------------------
def test_lines_cycle_over_trajectories(make_backend):
    backend = make_backend(["A"], ["B"])
    completions = backend.generate([request(f"r{i}") for i in range(5)])
    assert [c.text for c in completions] == ["A", "B", "A", "B", "A"]


def test_a_trajectory_walks_its_line(make_backend):
    backend = make_backend(["first", "second"], ["other"])
    assert backend.generate([request("a0", key="a"), request("b0", key="b")])[0].text == "first"
    assert backend.generate([request("a1", key="a")])[0].text == "second"


def test_exhausted_line_is_a_usage_error_naming_the_line(make_backend):
    backend = make_backend(["only"])
    backend.generate([request("a0", key="a")])
    with pytest.raises(UsageError, match=r"script.jsonl:1: trajectory asked for completion 2"):
        backend.generate([request("a1", key="a")])


def test_step_protocol(make_backend):
    backend = make_backend(["x"])
    assert not backend.has_unfinished() and backend.step() == []
    backend.add_request(request("r1"))
    backend.add_request(request("r2"))
    assert backend.has_unfinished()
    assert sorted(c.request_id for c in backend.step()) == ["r1", "r2"]
    assert not backend.has_unfinished()
