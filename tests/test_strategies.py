"""CoT, PoT and TIR driven by the scripted backend, with code run in the real sandbox.

Each TIR path of the state machine has a case: code that errors, times out or prints nothing;
several tool calls sharing state; the tool-call limit; context overflow; a final answer
without code; a boxed answer before the ```output request; fences in program output. PoT:
``solution()`` and print. And execution overlapping generation.
"""

from __future__ import annotations

import json
import time

import pytest

from qwen_math import prompts
from qwen_math.backends.scripted import ScriptedBackend, read_script
from qwen_math.config import SamplingConfig
from qwen_math.errors import UsageError
from qwen_math.strategies import make_strategy
from qwen_math.strategies.runner import Problem, SandboxAccess, run_trajectories

pytest.importorskip("sandbox.session")

QUESTION = "What is 6 times 7?"
FAST_SANDBOX = SandboxAccess(timeout=2.0)


def cell(code: str) -> str:
    """A TIR turn that writes ``code`` and asks for its output (the model's own format)."""
    return f"Let me compute.\n```python\n{code}\n```\n```output"


@pytest.fixture
def backend(tmp_path, qwen_tokenizer):
    def make(*lines: list[str], context_window: int = 4096) -> ScriptedBackend:
        path = tmp_path / "script.jsonl"
        path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        return ScriptedBackend(read_script(path), tokenizer=qwen_tokenizer, context_window=context_window)

    return make


def run(backend, mode="tir", *, n=1, max_tool_calls=4, sandbox=FAST_SANDBOX, style="instruct",
        tir_protocol="notebook", tool_timeout=2.0, **kw):
    """These cases pin this project's own protocol (``notebook``); the Qwen protocols are in
    tests/test_tir_protocols.py."""
    strategy = make_strategy(mode, max_tool_calls=max_tool_calls, tir_protocol=tir_protocol,
                             tool_timeout=tool_timeout)
    trajectories = run_trajectories(
        [Problem("p", QUESTION)], strategy=strategy, sampling=SamplingConfig(n=n),
        backend=backend, prompt_style=style, sandbox=sandbox, **kw,
    )
    return sorted(trajectories, key=lambda t: t.sample)


# --- TIR: the state machine, path by path ---------------------------------------------------
def test_two_tool_calls_one_error_then_final_answer(backend):
    [t] = run(backend([cell("print(6 * 7)"), cell("print(undefined_name)"), "So the answer is \\boxed{42}."]))
    assert t.finish_reason == "eos" and t.answer == "42" and t.tool_calls == 2
    first, second, last = t.turns
    assert (first.status, first.output.strip()) == ("ok", "42")
    assert first.appended == "```output\n42\n```\n"
    assert second.status == "error" and "NameError" in second.output
    assert last.code is None and last.text == "So the answer is \\boxed{42}."
    assert "```output\n42\n```\n" in t.next_prompt


def test_state_persists_between_cells(backend):
    [t] = run(backend([cell("x = 6"), cell("print(x * 7)"), "\\boxed{42}"]))
    assert [turn.output.strip() for turn in t.turns[:2]] == ["", "42"]


def test_code_that_prints_nothing_gets_an_empty_output_block(backend):
    [t] = run(backend([cell("y = 1"), "\\boxed{1}"]))
    assert t.turns[0].status == "ok"
    assert t.turns[0].appended == "```output\n\n```\n"


def test_timeout_is_reported_and_the_trajectory_continues(backend):
    start = time.perf_counter()
    [t] = run(backend([cell("while True:\n    pass"), "\\boxed{0}"]), tool_timeout=0.5)
    assert t.turns[0].status == "timeout"
    assert t.answer == "0" and t.finish_reason == "eos"
    assert time.perf_counter() - start < 10


def test_tool_limit_stops_before_running_more_code(backend):
    [t] = run(backend([cell("print(1)"), cell("print(2)"), "\\boxed{2}"]), max_tool_calls=1)
    assert t.finish_reason == "tool_limit" and t.tool_calls == 1
    assert t.turns[1].code is None  # the second program was never run


def test_context_overflow_is_counted(backend, qwen_tokenizer):
    prompt_tokens = len(qwen_tokenizer.encode(prompts.chat_prompt(prompts.TIR_SYSTEM, QUESTION)))
    b = backend([cell("print('word ' * 400)"), "\\boxed{1}"], context_window=prompt_tokens + 60)
    [t] = run(b)
    assert t.finish_reason == "context" and t.tool_calls == 1
    assert len(t.turns) == 1


def test_generation_filling_the_window_is_context(backend, qwen_tokenizer):
    prompt_tokens = len(qwen_tokenizer.encode(prompts.chat_prompt(prompts.TIR_SYSTEM, QUESTION)))
    [t] = run(backend([" ".join(["step"] * 200)], context_window=prompt_tokens + 20))
    assert t.finish_reason == "context" and t.completion_tokens == 20


def test_final_answer_without_code(backend):
    [t] = run(backend(["6 * 7 = 42, so the answer is \\boxed{42}."]))
    assert (t.finish_reason, t.answer, t.tool_calls, len(t.turns)) == ("eos", "42", 0, 1)


def test_boxed_answer_before_output_request_finishes(backend):
    [t] = run(backend(["The answer is \\boxed{42}.\n```python\nprint(42)\n```\n```output"]))
    assert t.finish_reason == "stop" and t.tool_calls == 0 and t.answer == "42"


def test_code_block_then_eos_runs_the_code(backend):
    # the official evaluation runs a response that ends right after a ```python block
    [t] = run(backend(["Let me compute.\n```python\nprint(6 * 7)\n```", "\\boxed{42}"]))
    assert t.tool_calls == 1 and t.turns[0].status == "ok" and t.answer == "42"
    assert t.turns[0].appended == "\n```output\n42\n```\n"


def test_output_request_without_code_finishes(backend):
    [t] = run(backend(["no code here\n```output"]))
    assert t.finish_reason == "stop" and t.tool_calls == 0


def test_fences_in_program_output_are_escaped(backend):
    [t] = run(backend([cell("print('```python')"), "\\boxed{1}"]))
    assert t.turns[0].appended.count("```") == 2  # only the block's own fences
    assert t.answer == "1"


def test_prompt_longer_than_the_window_finishes_with_context(backend):
    [t] = run(backend(["\\boxed{1}"], context_window=10))
    assert t.finish_reason == "context" and t.turns == []


def test_samples_have_their_own_trajectories_and_sessions(backend):
    b = backend([cell("x = 1"), cell("print(x)"), "\\boxed{1}"], [cell("print(x)"), "\\boxed{2}"])
    first, second = run(b, n=2)
    assert first.turns[1].output.strip() == "1"
    assert second.turns[0].status == "error"  # x is not defined in the second sample's session


def test_turn_callback_sees_generation_then_execution(backend):
    events = []
    run(backend([cell("print(5)"), "\\boxed{5}"]), on_turn=lambda t, turn, executed: events.append(executed))
    assert events == [False, True, False]


# --- execution overlaps generation ----------------------------------------------------------
class OneAtATime(ScriptedBackend):
    """Test backend: finishes one queued request per step, each step taking 20 ms."""

    def step(self):
        time.sleep(0.02)
        if not self._queue:
            return []
        return [self.complete(self._queue.popleft())]


def test_other_trajectories_decode_while_code_runs(tmp_path, qwen_tokenizer):
    path = tmp_path / "script.jsonl"
    slow = [cell("import time\ntime.sleep(1.0)\nprint(1)"), "\\boxed{1}"]
    quick = [cell("print(2)"), "\\boxed{2}"]
    path.write_text(json.dumps(slow) + "\n" + json.dumps(quick) + "\n")
    b = OneAtATime(read_script(path), tokenizer=qwen_tokenizer)
    strategy = make_strategy("tir", max_tool_calls=4)
    order = [t.sample for t in run_trajectories(
        [Problem("p", QUESTION)], strategy=strategy, sampling=SamplingConfig(n=2),
        backend=b, sandbox=SandboxAccess(timeout=5.0),
    )]
    assert order == [1, 0]  # sample 1 ran its code and finished while sample 0's code slept


# --- PoT -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "program,answer",
    [
        # solution() returns the answer
        ("def solution():\n    return 6 * 7", "42"),
        # the last printed line is the answer
        ("print('working')\nprint(6 * 7)", "42"),
        # an error gives no answer
        ("print(1 / 0)", None),
        # nothing printed, no solution(): no answer
        ("x = 42", None),
    ],
)
def test_pot_answer_is_the_program_result(backend, program, answer):
    [t] = run(backend([f"```python\n{program}\n```\n```output"]), mode="pot")
    assert t.answer == answer
    assert t.turns[0].code.strip() == program and t.turns[0].appended == ""


def test_pot_without_a_program_has_no_answer(backend):
    [t] = run(backend(["The answer is \\boxed{42}."]), mode="pot")
    assert t.answer is None and t.turns[0].code is None


# --- CoT --------------------------------------------------------------------------------------
def test_cot_answer_from_boxed(backend):
    [t] = run(backend(["6 * 7 = 42. \\boxed{42}"]), mode="cot")
    assert (t.answer, t.finish_reason) == ("42", "eos")


def test_cot_few_shot_stops_at_next_question(backend):
    [t] = run(backend([" 6 * 7 = 42. The answer is $\\boxed{42}$.\n\nQuestion: next"]), mode="cot", style="few-shot")
    assert t.finish_reason == "stop" and t.answer == "42"
    assert t.prompt.startswith("Question: ") and t.prompt.endswith(f"Question: {QUESTION}\nAnswer:")


@pytest.mark.parametrize("mode", ["pot", "tir"])
def test_few_shot_is_for_cot_only(backend, mode):
    with pytest.raises(UsageError, match="--prompt few-shot exists for --mode cot only"):
        run(backend(["x"]), mode=mode, style="few-shot")


def test_unknown_mode_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown mode 'xyz'; choose one of: cot, pot, tir"):
        make_strategy("xyz", max_tool_calls=4)
