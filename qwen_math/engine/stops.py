"""Stop conditions of one sequence: EOS ids, stop strings, max_tokens, the context window.

Stop strings are matched on decoded text, exactly: each new token triggers a decode of only
the last few tokens (enough to hold the longest stop string plus partial UTF-8 bytes), and a
hit there is confirmed on the full decoded text, where the text is cut before the earliest
stop string. Tokens are only inspected on the host after the step that produced them, once per
step for the whole batch.

What it deliberately does not do: stop on token-id sequences, or include the stop string in
the returned text (the contract is vLLM's: text ends before the stop).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: a stop string of n characters spans at most this many tokens per character (UTF-8 bytes).
TOKENS_PER_CHAR = 4


@dataclass(frozen=True)
class Finish:
    reason: str  # "stop" | "eos" | "length"
    text: str
    token_ids: tuple[int, ...]
    stop_string: str | None = None


def find_stop(text: str, stops: Sequence[str]) -> tuple[int, str] | None:
    """The earliest (index, stop string) in ``text``, or None."""
    hits = [(index, stop) for stop in stops if (index := text.find(stop)) >= 0]
    return min(hits) if hits else None


class StopChecker:
    """Decides, token by token, whether a sequence has finished and what its text is."""

    def __init__(
        self,
        *,
        decode: Callable[[Sequence[int]], str],
        stops: Sequence[str],
        eos_ids: frozenset[int],
        max_tokens: int,
    ) -> None:
        self.decode = decode
        self.stops = tuple(stops)
        self.eos_ids = eos_ids
        self.max_tokens = max_tokens
        self.window = TOKENS_PER_CHAR * max((len(s) for s in self.stops), default=0) + 2

    def check(self, generated: list[int], *, context_full: bool) -> Finish | None:
        """Called after each appended token; a ``Finish`` when the sequence is done."""
        if generated[-1] in self.eos_ids:
            return Finish("eos", self.decode(generated[:-1]), tuple(generated))
        if self.stops and find_stop(self.decode(generated[-self.window:]), self.stops):
            finish = self._cut_at_stop(generated)
            if finish is not None:
                return finish
        if len(generated) >= self.max_tokens or context_full:
            return Finish("length", self.decode(generated), tuple(generated))
        return None

    def _cut_at_stop(self, generated: list[int]) -> Finish | None:
        text = self.decode(generated)
        hit = find_stop(text, self.stops)
        if hit is None:  # the window decode saw a stop the full text does not hold
            return None
        index, stop = hit
        return Finish("stop", text[:index], tuple(generated), stop_string=stop)
