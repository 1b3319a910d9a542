"""Streaming below the server: ``TextDeltas``, ``StreamingView`` over the engine, and what
`solve` shows on a terminal (``qwen_math.live_solve``): one sample's tokens as they come, or a
live line per sample with tokens, tokens/s and tool calls."""

from __future__ import annotations

import io

import pytest

from qwen_math.backends.base import Completion, GenerationRequest
from qwen_math.backends.streaming import StreamingView, TextDeltas, stop_prefix_length
from qwen_math.config import SamplingConfig
from qwen_math.live_solve import SampleLines, TraceStream, live_display, sample_of

CHAT = "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


# --- pure pieces ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, stops, held",
    [
        # a tail that could start a stop string waits; a full stop or no overlap does not
        ("abc ``", ("```output",), 2),
        ("abc `", ("```output",), 1),
        ("abc", ("```output",), 0),
        ("abc ```output", ("```output",), 0),
        ("xy", ("y!", "xy?"), 2),
        ("anything", (), 0),
    ],
)
def test_stop_prefix_length(text, stops, held):
    assert stop_prefix_length(text, stops) == held


def test_text_deltas_hold_back_stops_and_partial_characters():
    # ids are characters here; 0 decodes to a partial UTF-8 character
    decode = lambda ids: "".join("\ufffd" if i == 0 else chr(i) for i in ids)  # noqa: E731
    deltas = TextDeltas(decode, stops=("STOP",))
    pieces = [deltas.feed([ord(c)]) for c in "ab S"]
    assert pieces == ["a", "b", " ", ""]  # "S" could start STOP
    assert deltas.feed([0]) == "S"  # no stop after all; the partial character waits
    assert deltas.feed([ord("S")]) == ""  # "S" again could start STOP
    completion = Completion("r", "ab S\u00e9", (), "stop", 1, 6, stop_string="STOP")
    assert deltas.finish(completion) == "\u00e9"


@pytest.mark.parametrize("request_id, sample", [("problem#3#0", 3), ("gsm8k/12#0#2", 0), ("odd", 0)])
def test_sample_of(request_id, sample):
    assert sample_of(request_id) == sample


def test_sample_lines_show_tokens_rate_and_tool_calls():
    now = [0.0]
    out = Terminal()
    lines = SampleLines(out, 2, clock=lambda: now[0], interval_s=0.25)
    for step in range(1, 11):  # sample 1 samples 10 tokens over 0.9 s
        now[0] = step / 10
        lines.on_delta("p#1#0", 1, "x")
    lines.on_turn(type("T", (), {"sample": 1, "tool_calls": 2})(), None, executed=True)
    lines.close()
    final = lines.lines()
    assert "sample   1      10 tok" in final[1] and "11.1 tok/s" in final[1] and "tool calls 2" in final[1]
    assert "- tok/s" in final[0]
    assert out.getvalue().count("\x1b[2F") >= 2  # redrawn in place


def test_live_display_only_for_a_terminal():
    plain, tty = io.StringIO(), Terminal()
    assert live_display(1, json_output=False, quiet=False, stdout=plain, stderr=plain, safe=str) is None
    assert isinstance(live_display(1, json_output=False, quiet=False, stdout=tty, stderr=plain, safe=str), TraceStream)
    assert isinstance(live_display(4, json_output=False, quiet=False, stdout=plain, stderr=tty, safe=str), SampleLines)
    assert live_display(4, json_output=False, quiet=True, stdout=tty, stderr=tty, safe=str) is None
    assert live_display(1, json_output=True, quiet=False, stdout=tty, stderr=tty, safe=str) is None


# --- over the engine --------------------------------------------------------------------------------
def test_engine_streams_pieces_that_add_up_to_the_completion(hf_backend):
    pieces: dict[str, list[tuple[int, str]]] = {}
    view = StreamingView(hf_backend, lambda rid, tokens, text: pieces.setdefault(rid, []).append((tokens, text)))
    try:
        requests = [GenerationRequest(str(i), CHAT, SamplingConfig(max_tokens=40, temperature=1.0), seed=i)
                    for i in range(3)]
        completions = view.generate(requests)
    finally:
        view.close()
    for completion in completions:
        got = pieces[completion.request_id]
        assert len(got) == completion.completion_tokens  # one call per step, one at the end
        assert sum(tokens for tokens, _ in got) == completion.completion_tokens
        assert "".join(text for _, text in got) == completion.text
    assert hf_backend.engine.on_tokens is None  # detached


def test_solve_streams_one_sample_to_the_terminal(hf_backend):
    from qwen_math.solve import solve

    out = Terminal()
    display = TraceStream(out, safe=str)
    writes = []
    display.write = lambda text, write=display.write: (writes.append(text), write(text))  # type: ignore[method-assign]
    view = StreamingView(hf_backend, display.on_delta)
    try:
        solution = solve("What is 2+2?", mode="cot", sampling=SamplingConfig(max_tokens=32), backend=view,
                         on_turn=display.on_turn)
    finally:
        display.close()
        view.close()
    [sample] = solution.samples
    assert len([w for w in writes if w]) > 4  # token by token, not one block
    assert out.getvalue() == sample.turns[0].text + ("" if sample.turns[0].text.endswith("\n") else "\n")


def test_aborted_request_frees_its_slot(hf_backend):
    engine = hf_backend.engine
    hf_backend.add_request(GenerationRequest("a", CHAT, SamplingConfig(max_tokens=100), seed=0))
    hf_backend.step()
    assert engine.running and hf_backend.abort("a")
    assert not hf_backend.has_unfinished() and not hf_backend.abort("a")
    [done] = hf_backend.generate([GenerationRequest("b", CHAT, SamplingConfig(max_tokens=4), seed=0)])
    assert done.completion_tokens == 4 or done.finish_reason != "length"
