"""Progress in tokens: tokens/s from the backend's live counters, a token-based ETA.

The done-when case runs the hf backend on the tiny checkpoint (the engine's real
``decoded_tokens`` counter) with a fake clock: after a few decode steps, before any sample
has finished, the eval progress line shows tokens/s > 0 and an ETA.
"""

from __future__ import annotations

import io
import re

from qwen_math.backends.base import GenerationRequest
from qwen_math.config import SamplingConfig
from qwen_math.runs.progress import RunProgress, SampleProgress, TokenMeter, live_token_counter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def tokens_per_second(line: str) -> float:
    return float(re.search(r"([0-9.]+) tok/s", line).group(1))


# --- the real counters: hf backend on the tiny checkpoint ----------------------------------
def test_eval_progress_shows_tokens_per_second_before_any_sample_finishes(hf_backend):
    clock, stream = FakeClock(), io.StringIO()
    counter = live_token_counter(hf_backend)
    assert counter is not None
    sampling = SamplingConfig(temperature=0.7, top_p=0.8, max_tokens=64)
    with RunProgress("gsm8k", total_samples=4, n=4, stream=stream, interval_s=10.0, tokens=counter,
                     max_tokens_per_sample=64, clock=clock) as progress:
        for sample in range(4):
            hf_backend.add_request(GenerationRequest(f"p#{sample}", "What is 6*7?", sampling, seed=sample))
        finished = []
        for _ in range(6):
            finished += hf_backend.step()
        clock.advance(10.0)
        progress.refresh()
        line = stream.getvalue().splitlines()[-1]
        assert progress.samples_done == 0 and len(finished) < 4
        assert line.startswith("gsm8k: samples 0/4 | problems 0/1")
        assert tokens_per_second(line) > 0
        assert "ETA ?" not in line  # max tokens x open samples bounds it before any finished
        while hf_backend.has_unfinished():
            hf_backend.step()


def test_backend_without_counters_counts_finished_samples():
    assert live_token_counter(object()) is None
    meter = TokenMeter(clock=FakeClock())
    assert meter.generated() == 0 and meter.eta_s(4) is None
    meter.sample_done(30)
    assert meter.generated() == 30


# --- the ETA: an upper bound first, refined as samples finish ------------------------------
def test_eta_upper_bound_then_mean_of_finished_samples():
    clock, tokens = FakeClock(), [0]
    meter = TokenMeter(counter=lambda: tokens[0], max_tokens_per_sample=100, clock=clock)
    tokens[0] = 40  # 4 samples under way, none finished
    clock.advance(2.0)
    assert meter.rate() == 20.0
    assert meter.remaining_tokens(4) == 4 * 100 - 40  # the bound: max tokens x open samples
    assert meter.eta_s(4) == (400 - 40) / 20.0
    meter.sample_done(20)  # a short sample finished: the rest are expected to be as short
    tokens[0] = 60
    assert meter.remaining_tokens(3) == 3 * 20 - 40
    assert meter.eta_s(0) == 0.0


def test_plain_lines_every_interval_terminal_bar_every_second():
    clock, stream = FakeClock(), io.StringIO()
    with SampleProgress("solve", total_samples=2, stream=stream, interval_s=10.0, clock=clock) as progress:
        progress.refresh()
        assert stream.getvalue() == ""  # not yet 10 s
        clock.advance(10.0)
        progress.refresh()
        progress.sample_done(12)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("solve: samples 0/2 | tokens 0")
    assert lines[-1].startswith("solve: samples 1/2 | tokens 12")
