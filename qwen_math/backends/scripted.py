"""The scripted backend: completions read from a JSONL file instead of sampled from a model.

``--backend scripted --script FILE``: each non-empty line of FILE is a JSON list of strings,
the successive completions one trajectory returns (a CoT sample has one; a TIR trajectory has
one per generation call). Trajectories take lines in turn, in the order they first appear, and
reuse the file cyclically when there are more trajectories than lines. A trajectory is named
by the request's ``cache_key`` (a TIR trajectory keeps one key across its calls); a request
without a key is a trajectory of its own.

It keeps the backend contract exactly, so strategies cannot tell it from a model:
- the text is cut before the earliest stop string (``finish_reason`` ``stop``) or
  end-of-sequence token text (``<|im_end|>``, ``<|endoftext|>``: ``eos``), then at
  ``max_tokens`` tokens or at the context window (``length``); a completion that reaches its
  end uncut ends as the model would end it (``eos``);
- tokens are counted with the real Qwen2.5 tokenizer (``qwen_math.tokenizer``), so context
  accounting matches the real model's.

What it deliberately does not do: sample, look at seeds, or invent text when a trajectory asks
for more completions than its line holds (that is a ``UsageError`` naming the line).
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_math.backends.base import (
    BackendOptions,
    Completion,
    GenerationRequest,
    run_to_completion,
)
from qwen_math.errors import UsageError
from qwen_math.paths import read_input_text

log = logging.getLogger(__name__)

CONTEXT_WINDOW = 4096
#: Text of the end-of-sequence tokens: a script copied from real output may still hold them.
EOS_TEXTS = ("<|im_end|>", "<|endoftext|>")


@dataclass(frozen=True)
class ScriptLine:
    """One line of the script: where it came from and the completions it returns."""

    location: str  # "FILE:LINE"
    completions: tuple[str, ...]


def read_script(path: str | Path) -> tuple[ScriptLine, ...]:
    """Parse a script file; any malformed line is a ``UsageError`` naming ``file:line``."""
    file = Path(path)
    text = read_input_text(file, what="--script")
    lines = tuple(
        parse_script_line(raw, f"{file}:{number}")
        for number, raw in enumerate(text.splitlines(), start=1)
        if raw.strip()
    )
    if not lines:
        raise UsageError(f"--script {path}: the file has no completions (expected JSON lists of strings, one per line)")
    return lines


def parse_script_line(raw: str, location: str) -> ScriptLine:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{location}: not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise UsageError(f"{location}: expected a non-empty JSON list of strings, got {raw.strip()[:60]}")
    return ScriptLine(location, tuple(value))


class ScriptedBackend:
    """A ``Backend`` replaying scripted completions; see the module docstring."""

    name = "scripted"

    def __init__(self, script: Sequence[ScriptLine], *, tokenizer: Any, context_window: int = CONTEXT_WINDOW):
        if not script:
            raise UsageError("the scripted backend needs at least one script line")
        self.script = tuple(script)
        self.tokenizer = tokenizer
        self.context_window = context_window
        self._queue: deque[GenerationRequest] = deque()
        self._line_of: dict[str, ScriptLine] = {}  # trajectory key -> its script line
        self._calls: dict[str, int] = {}  # trajectory key -> completions already returned
        self._anonymous = 0

    @classmethod
    def create(cls, options: BackendOptions) -> ScriptedBackend:
        if not options.script:
            raise UsageError("--backend scripted needs --script FILE (a JSONL file of completion lists)")
        from qwen_math.tokenizer import load_offline_tokenizer

        return cls(read_script(options.script), tokenizer=load_offline_tokenizer())

    # --- the Backend protocol ---------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return len(self.encode(text))

    def add_request(self, request: GenerationRequest) -> None:
        self._queue.append(request)

    def has_unfinished(self) -> bool:
        return bool(self._queue)

    def step(self) -> list[Completion]:
        """Finish every queued request (a script has no decoding steps to interleave)."""
        finished = [self.complete(request) for request in self._queue]
        self._queue.clear()
        return finished

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Completion]:
        return run_to_completion(self, requests)

    def close(self) -> None:
        self._queue.clear()

    # --- replaying --------------------------------------------------------------------------
    def complete(self, request: GenerationRequest) -> Completion:
        scripted = self.next_completion(request)
        prompt_ids = self.encode(request.prompt)
        text, finish_reason, stop_string = cut_at_stop(scripted, request.sampling.stop)
        budget = min(request.sampling.max_tokens, self.context_window - len(prompt_ids))
        token_ids = self.encode(text)
        if len(token_ids) > max(budget, 0):
            token_ids = token_ids[: max(budget, 0)]
            text, finish_reason, stop_string = self.tokenizer.decode(token_ids), "length", None
        return Completion(
            request_id=request.request_id, text=text, token_ids=tuple(token_ids),
            finish_reason=finish_reason, prompt_tokens=len(prompt_ids),
            completion_tokens=len(token_ids), stop_string=stop_string,
        )

    def next_completion(self, request: GenerationRequest) -> str:
        key = self.trajectory_key(request)
        line = self._line_of.get(key)
        if line is None:
            line = self.script[len(self._line_of) % len(self.script)]
            self._line_of[key] = line
        call = self._calls.get(key, 0)
        if call >= len(line.completions):
            raise UsageError(
                f"{line.location}: trajectory asked for completion {call + 1} but the line "
                f"has only {len(line.completions)}"
            )
        self._calls[key] = call + 1
        return line.completions[call]

    def trajectory_key(self, request: GenerationRequest) -> str:
        if request.cache_key is not None:
            return request.cache_key
        self._anonymous += 1
        return f"\x00anonymous-{self._anonymous}"

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, str, str | None]:
    """Cut ``text`` at the earliest stop string or EOS text: ``(text, finish_reason, stop)``."""
    hits = [(text.find(stop), "stop", stop) for stop in stops if stop in text]
    hits += [(text.find(eos), "eos", None) for eos in EOS_TEXTS if eos in text]
    if not hits:
        return text, "eos", None
    position, reason, stop = min(hits, key=lambda hit: hit[0])
    return text[:position], reason, stop
