"""What `solve` shows on a terminal while it samples: tokens as they come, or one line per sample.

- One sample (``TraceStream``, stdout): the model's text as it is sampled (stop strings held
  back, see ``qwen_math.backends.streaming``), each program's output when it has run, and a
  final newline.
- Several samples (``SampleLines``, stderr): one line per sample, redrawn a few times a second,
  with the tokens sampled so far, tokens/s since the sample's first token, and tool calls.

Both take ``on_delta`` from a ``StreamingView`` over the backend and ``on_turn`` from ``solve``.
What it deliberately does not do: progress of a whole run (``qwen_math.runs.progress``), or
anything when the output is not a terminal (``live_display`` returns ``None`` then).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

#: at most this many sample lines are drawn; the rest are summed in one line.
MAX_SAMPLE_LINES = 16


def sample_of(request_id: str) -> int:
    """The sample index in a strategy runner's request id (``problem#sample#call``)."""
    parts = request_id.rsplit("#", 2)
    return int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else 0


class TraceStream:
    """One sample's trace, streamed to a terminal (see the module docstring)."""

    def __init__(self, out: TextIO, safe: Callable[[str], str]) -> None:
        self.out = out
        self.safe = safe  # shows control characters escaped
        self.last = "\n"

    def write(self, text: str) -> None:
        if text:
            self.out.write(self.safe(text))
            self.out.flush()
            self.last = text[-1]

    def on_delta(self, request_id: str, tokens: int, text: str) -> None:
        self.write(text)

    def on_turn(self, trajectory: Any, turn: Any, executed: bool) -> None:
        if executed:
            self.write(turn.appended)
            if turn.status and turn.status != "ok":
                self.write(f"[cell {turn.status}]\n")

    def close(self) -> None:
        if self.last != "\n":
            self.write("\n")


@dataclass
class SampleState:
    tokens: int = 0
    tool_calls: int = 0
    first_token_s: float | None = None
    last_token_s: float = 0.0

    def line(self, index: int) -> str:
        elapsed = self.last_token_s - self.first_token_s if self.first_token_s is not None else 0.0
        rate = f"{self.tokens / elapsed:7.1f} tok/s" if elapsed > 0 else "      - tok/s"
        return f"  sample {index:>3}  {self.tokens:>6} tok  {rate}  tool calls {self.tool_calls}"


class SampleLines:
    """Live per-sample lines on a terminal (see the module docstring)."""

    def __init__(self, out: TextIO, n: int, *, clock: Callable[[], float] = time.monotonic,
                 interval_s: float = 0.25) -> None:
        self.out = out
        self.clock = clock
        self.interval_s = interval_s
        self.samples = [SampleState() for _ in range(n)]
        self.drawn = 0  # lines on screen from the last redraw
        self.drawn_at: float | None = None

    def on_delta(self, request_id: str, tokens: int, text: str) -> None:
        index = sample_of(request_id)
        if not 0 <= index < len(self.samples) or tokens <= 0:
            return
        state, now = self.samples[index], self.clock()
        if state.first_token_s is None:
            state.first_token_s = now
        state.tokens += tokens
        state.last_token_s = now
        self.redraw()

    def on_turn(self, trajectory: Any, turn: Any, executed: bool) -> None:
        index = getattr(trajectory, "sample", 0)
        if executed and 0 <= index < len(self.samples):
            self.samples[index].tool_calls = trajectory.tool_calls
            self.redraw()

    def lines(self) -> list[str]:
        shown = [state.line(i) for i, state in enumerate(self.samples[:MAX_SAMPLE_LINES])]
        rest = self.samples[MAX_SAMPLE_LINES:]
        if rest:
            shown.append(f"  ... {len(rest)} more samples: {sum(s.tokens for s in rest)} tok, "
                         f"tool calls {sum(s.tool_calls for s in rest)}")
        return shown

    def redraw(self, *, force: bool = False) -> None:
        now = self.clock()
        if not force and self.drawn_at is not None and now - self.drawn_at < self.interval_s:
            return
        up = f"\x1b[{self.drawn}F" if self.drawn else ""  # back to the first line drawn
        lines = self.lines()
        self.out.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
        self.out.flush()
        self.drawn, self.drawn_at = len(lines), now

    def close(self) -> None:
        self.redraw(force=True)


def live_display(n: int, *, json_output: bool, quiet: bool, stdout: TextIO, stderr: TextIO,
                 safe: Callable[[str], str]) -> TraceStream | SampleLines | None:
    """The display for a solve of ``n`` samples, or ``None`` when nobody watches a terminal."""
    if json_output:
        return None
    if n == 1 and stdout.isatty():
        return TraceStream(stdout, safe)
    if n > 1 and not quiet and stderr.isatty():
        return SampleLines(stderr, n)
    return None
