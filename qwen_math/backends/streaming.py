"""Token streaming over the backend protocol: sampled ids in, safe text deltas out.

A backend that can stream offers two optional methods besides the ``Backend`` protocol:

- ``set_token_listener(listener)``: ``listener(pairs)`` is called once per step with the
  ``(request_id, token_id)`` of every request that sampled a token in that step and is still
  running (the ids come from the engine's one device-to-host copy per step; a request's last
  token arrives with its ``Completion`` instead);
- ``abort(request_id) -> bool``: stop a queued or running request and free its slot; no
  completion comes for it.

``TextDeltas`` turns one request's ids into text pieces a client may be shown: decoded
incrementally, never ending in a partial UTF-8 character, and holding back any tail that could
be the start of a stop string, so a stop string is never streamed. ``finish(completion)`` sends
what remains, so the pieces concatenate to exactly the completion's text.

What it deliberately does not do: talk to the engine (the caller routes ids), or stream
backends without a token listener (their callers fall back to one piece per completion).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from qwen_math.backends.base import Completion

log = logging.getLogger(__name__)

#: a partial UTF-8 character decodes to this; such a tail waits for its next token.
REPLACEMENT = "\ufffd"


def can_stream(backend: Any) -> bool:
    """Whether ``backend`` offers the token listener (and so per-token streaming)."""
    return callable(getattr(backend, "set_token_listener", None))


def can_abort(backend: Any) -> bool:
    return callable(getattr(backend, "abort", None))


def stop_prefix_length(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of ``text`` that is a proper prefix of some stop string."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


class TextDeltas:
    """One request's streamed text (see the module docstring)."""

    def __init__(self, decode: Callable[[Sequence[int]], str], stops: Sequence[str] = ()) -> None:
        self.decode = decode
        self.stops = tuple(stop for stop in stops if stop)
        self.ids: list[int] = []
        self.sent = ""
        self.stopped = False  # a stop string showed up: nothing more until finish

    def feed(self, token_ids: Sequence[int]) -> str:
        """The new text that is safe to show after ``token_ids`` ("" when none is)."""
        self.ids.extend(token_ids)
        if self.stopped:
            return ""
        text = self.decode(self.ids)
        safe = len(text) - stop_prefix_length(text, self.stops)
        hits = [index for stop in self.stops if (index := text.find(stop)) >= 0]
        if hits:
            safe, self.stopped = min(hits), True
        while safe > 0 and text[safe - 1] == REPLACEMENT:
            safe -= 1
        if safe <= len(self.sent) or not text.startswith(self.sent):
            return ""
        delta, self.sent = text[len(self.sent):safe], text[:safe]
        return delta

    def finish(self, completion: Completion) -> str:
        """The rest of the completion's text after what was sent."""
        if not completion.text.startswith(self.sent):  # cannot happen with a prefix-stable decode
            log.warning("request %s: streamed text is not a prefix of its completion", completion.request_id)
            return ""
        delta, self.sent = completion.text[len(self.sent):], completion.text
        return delta


class StreamingView:
    """A ``Backend`` in front of another that reports text as it is sampled.

    ``on_delta(request_id, tokens, text)`` is called with each step's new token count and the
    text now safe to show (stop strings held back), and once more when the request completes
    with the rest of its text, so the pieces of a request add up to its completion. Backends
    without a token listener report each completion in one piece. Used by ``solve`` on a
    terminal; the strategies see an ordinary backend.
    """

    def __init__(self, backend: Any, on_delta: Callable[[str, int, str], None]) -> None:
        self.backend = backend
        self.on_delta = on_delta
        self.name = backend.name
        self.context_window = backend.context_window
        self.tokenizer = backend.tokenizer
        self._deltas: dict[str, TextDeltas] = {}
        tokenizer = backend.tokenizer
        self._decode = ((lambda ids: tokenizer.decode(list(ids), skip_special_tokens=False))
                        if tokenizer is not None else (lambda ids: ""))
        if can_stream(backend):
            backend.set_token_listener(self._on_tokens)

    def _on_tokens(self, pairs: list[tuple[str, int]]) -> None:
        for request_id, token in pairs:
            deltas = self._deltas.get(request_id)
            if deltas is not None:
                self.on_delta(request_id, 1, deltas.feed((token,)))

    def count_tokens(self, text: str) -> int:
        return self.backend.count_tokens(text)

    def add_request(self, request: Any) -> None:
        self._deltas[request.request_id] = TextDeltas(self._decode, request.sampling.stop)
        self.backend.add_request(request)

    def step(self) -> list[Completion]:
        finished = self.backend.step()
        for completion in finished:
            deltas = self._deltas.pop(completion.request_id, None)
            if deltas is not None:
                self.on_delta(completion.request_id, completion.completion_tokens - len(deltas.ids),
                              deltas.finish(completion))
        return finished

    def has_unfinished(self) -> bool:
        return self.backend.has_unfinished()

    def generate(self, requests: Sequence[Any]) -> list[Completion]:
        from qwen_math.backends.base import run_to_completion

        return run_to_completion(self, requests)

    def close(self) -> None:
        """Detach from the backend (which the caller still owns and closes)."""
        if can_stream(self.backend):
            self.backend.set_token_listener(None)
