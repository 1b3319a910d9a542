"""The one solve-request parser (CLI ``solve``, ``/v1/solve``): defaults, TIR fields, errors naming the field."""

from __future__ import annotations

import pytest

from qwen_math.errors import UsageError
from qwen_math.solve_request import SolveRequest, flag_name, parse_solve_request


# --- defaults and the TIR fields ---------------------------------------------------------------
def test_defaults():
    request = parse_solve_request({"problem": "1+1"})
    assert request == SolveRequest(problem="1+1")
    assert (request.mode, request.tir_protocol, request.max_tool_calls, request.extract_from) == (
        "cot", "qwen-agent", None, "full")
    assert request.sampling.n == 1 and request.sampling.greedy


def test_tir_fields_and_the_front_ends_default_protocol():
    request = parse_solve_request({"problem": "x", "mode": "tir", "max_tool_calls": 2, "tool_timeout": 1.5,
                                   "extract_from": "first-turn", "n": 4}, default_tir_protocol="math-eval")
    assert (request.tir_protocol, request.max_tool_calls, request.tool_timeout, request.extract_from) == (
        "math-eval", 2, 1.5, "first-turn")
    assert request.sampling.n == 4 and request.sampling.temperature == 0.7
    assert parse_solve_request({"problem": "x", "tir_protocol": "notebook"},
                               default_tir_protocol="math-eval").tir_protocol == "notebook"
    assert request.solve_kwargs()["tir_protocol"] == "math-eval"


# --- bad values: one message naming the field, in the front end's spelling -----------------------
@pytest.mark.parametrize("fields, message", [
    ({}, "problem (the question text) is required"),
    ({"problem": 3}, "problem must be a string, got 3"),
    ({"problem": "x", "mode": "guess"}, "mode must be one of cot, pot, tir, got 'guess'"),
    ({"problem": "x", "tir_protocol": "agent"}, "tir_protocol must be one of qwen-agent, math-eval, notebook"),
    ({"problem": "x", "max_tool_calls": -1}, "max_tool_calls must be an integer >= 0, got -1"),
    ({"problem": "x", "max_tool_calls": True}, "max_tool_calls must be an integer, got true"),
    ({"problem": "x", "tool_timeout": 0}, "tool_timeout must be a finite number of seconds > 0"),
    ({"problem": "x", "extract_from": "end"}, "extract_from must be one of full, first-turn"),
    ({"problem": "x", "n": 0}, "n must be an integer >= 1, got 0"),
    ({"problem": "x", "top_p": 2}, "top_p must be in (0, 1]"),
    ({"problem": "x", "stop": [1]}, "stop must be a string or a list of strings"),
    ({"problem": "x", "prompt_style": "chat"}, "prompt_style must be one of instruct, few-shot"),
])
def test_bad_fields_name_the_field(fields, message):
    with pytest.raises(UsageError) as caught:
        parse_solve_request(fields)
    assert message in str(caught.value)


def test_cli_spelling_of_a_bad_field():
    with pytest.raises(UsageError, match="--tool-timeout must be a finite number"):
        parse_solve_request({"problem": "x", "tool_timeout": -1.0}, spell=flag_name)


def test_serve_solve_options_use_the_servers_default_protocol():
    from qwen_math.serve import ApiError, solve_options

    options = solve_options({"problem": "1+1", "mode": "tir"}, default_tir_protocol="notebook")
    assert options["tir_protocol"] == "notebook" and options["problem"] == "1+1"
    with pytest.raises(ApiError, match="tir_protocol must be one of"):
        solve_options({"problem": "1+1", "tir_protocol": "x"})
