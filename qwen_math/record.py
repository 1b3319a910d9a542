"""The sample record: one JSON object per (dataset, problem, sample).

Written by ``eval`` runs (``samples.jsonl``), read by ``rescore``, ``report`` and ``compare``.
``(dataset, idx, sample)`` identifies a record. A record carries the whole trajectory as
turns: the text the model generated in that turn, the code it asked to run, the sandbox's
status and output, and the exact text appended to the transcript after the code ran, so the
full response is ``"".join(turn.text + turn.appended for turn in turns)``.

Every time-dependent value sits under a key whose name contains ``time``, ``duration`` or
``latency``; ``strip_time_dependent`` drops exactly those keys so two runs compare equal
when they produced the same samples.

What it deliberately does not do: grade, extract or write files (callers own I/O).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from qwen_math.errors import UsageError

SCHEMA_VERSION = 2
#: versions the reader accepts (2 added the optional ``reward`` / ``reward_steps``).
READABLE_VERSIONS = (1, 2)
#: the version a run's fingerprint records: v2 only adds optional fields, so a v1 run resumes.
RESUMABLE_SCHEMA_VERSION = 1
TIME_KEY = re.compile(r"time|duration|latency")

FINISH_REASONS = ("stop", "length", "tool", "eos", "tool_limit", "context", "error")


@dataclass(frozen=True)
class Turn:
    """One generation call of a trajectory, and the tool call that followed it (if any)."""

    text: str
    code: str | None = None
    status: str | None = None  # sandbox ExecResult.status when code ran
    output: str | None = None  # what the sandbox printed (or the error line)
    appended: str = ""  # the exact text spliced into the transcript after ``text``
    exec_duration_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def transcript(turns: Sequence[Turn]) -> str:
    """The text after the prompt: every turn's model text followed by what was appended to it."""
    return "".join(turn.text + turn.appended for turn in turns)


def count_tool_calls(turns: Sequence[Turn]) -> int:
    return sum(1 for turn in turns if turn.code is not None)


class TurnsView:
    """``response`` and ``tool_calls`` for any result that holds ``turns``."""

    turns: tuple[Turn, ...]

    @property
    def response(self) -> str:
        """The full transcript after the prompt, tool outputs included."""
        return transcript(self.turns)

    @property
    def tool_calls(self) -> int:
        return count_tool_calls(self.turns)


@dataclass(frozen=True)
class SampleRecord(TurnsView):
    """One sampled solution of one problem, with its grade."""

    dataset: str
    idx: int
    sample: int
    question_id: str
    question: str
    turns: tuple[Turn, ...]
    answer: str | None
    gold: str | None
    correct: bool | None
    finish_reason: str
    grade_status: str | None = None
    mode: str = "cot"
    seed: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    metadata: Mapping[str, Any] = field(default_factory=dict)  # level, subject, ...
    generation_time_s: float | None = None
    version: int = SCHEMA_VERSION
    reward: float | None = None  # reward model score (an ORM's, or a PRM's aggregated steps)
    reward_steps: tuple[float, ...] | None = None  # a PRM's per-step P(correct)

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.dataset, self.idx, self.sample)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["turns"] = [turn.to_json() for turn in self.turns]
        data["metadata"] = dict(self.metadata)
        if self.reward_steps is not None:
            data["reward_steps"] = list(self.reward_steps)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SampleRecord:
        """Build a record from its JSON object; a missing or mistyped field is a ``UsageError``."""
        if not isinstance(data, Mapping):
            raise UsageError(f"a sample record must be a JSON object, got {type(data).__name__}")
        version = data.get("version", SCHEMA_VERSION)
        if version not in READABLE_VERSIONS:
            raise UsageError(f"sample record version {version!r} is not supported "
                             f"(expected one of {', '.join(map(str, READABLE_VERSIONS))})")
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        missing = [name for name in required if name not in data]
        if missing:
            raise UsageError(
                f"sample record lacks field(s) {', '.join(missing)}; fields present: {', '.join(sorted(data))}"
            )
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        check_types("sample record", kwargs, RECORD_TYPES)
        if not isinstance(data["turns"], list):
            raise UsageError(f"sample record field 'turns' must be a list, got {type(data['turns']).__name__}")
        turns = []
        for number, turn in enumerate(data["turns"]):
            if not isinstance(turn, Mapping):
                raise UsageError(f"sample record turn {number} must be a JSON object, got {type(turn).__name__}")
            check_types(f"sample record turn {number}", turn, TURN_TYPES)
            try:
                turns.append(Turn(**turn))
            except TypeError as exc:
                raise UsageError(f"sample record has a malformed turn {number}: {exc}") from None
        kwargs["turns"] = tuple(turns)
        kwargs["reward_steps"] = reward_steps_of(data.get("reward_steps"))
        return cls(**kwargs)


#: JSON types of each field a record or turn may hold (``None`` allows null).
_TEXT, _INT, _NUMBER, _BOOL = (str,), (int,), (int, float), (bool,)
RECORD_TYPES: dict[str, tuple[type | None, ...]] = {
    "dataset": _TEXT, "idx": _INT, "sample": _INT, "question_id": _TEXT, "question": _TEXT,
    "answer": (str, None), "gold": (str, None), "correct": (bool, None), "finish_reason": _TEXT,
    "grade_status": (str, None), "mode": _TEXT, "seed": (int, None), "prompt_tokens": _INT,
    "completion_tokens": _INT, "metadata": (dict,), "generation_time_s": (int, float, None),
    "reward": (int, float, None), "reward_steps": (list, None),
}
TURN_TYPES: dict[str, tuple[type | None, ...]] = {
    "text": _TEXT, "code": (str, None), "status": (str, None), "output": (str, None),
    "appended": _TEXT, "exec_duration_s": (int, float, None),
}


def reward_steps_of(value: Any) -> tuple[float, ...] | None:
    """``reward_steps`` as a tuple of floats (``None`` stays ``None``); other items are a ``UsageError``."""
    if value is None:
        return None
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise UsageError(f"sample record field 'reward_steps' must be a list of numbers, got {json.dumps(value)[:60]}")
    return tuple(float(v) for v in value)


def check_types(what: str, data: Mapping[str, Any], types: Mapping[str, tuple[type | None, ...]]) -> None:
    """A ``UsageError`` naming the first field of ``data`` whose JSON type is not allowed."""
    for name, allowed in types.items():
        if name not in data:
            continue
        value = data[name]
        if value is None and None in allowed:
            continue
        classes = tuple(t for t in allowed if t is not None)
        if (isinstance(value, bool) and bool not in classes) or not isinstance(value, classes):
            names = " or ".join("null" if t is None else JSON_TYPE_NAMES[t] for t in allowed)
            raise UsageError(f"{what} field {name!r} must be {names}, got {json.dumps(value)[:60]}")


JSON_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false",
                   dict: "an object", list: "a list"}


def strip_time_dependent(value: Any) -> Any:
    """A copy of a JSON value without the keys whose names contain time/duration/latency."""
    if isinstance(value, Mapping):
        return {k: strip_time_dependent(v) for k, v in value.items() if not TIME_KEY.search(k)}
    if isinstance(value, list):
        return [strip_time_dependent(v) for v in value]
    return value
