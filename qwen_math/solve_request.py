"""One solve request, parsed in one place for every front end (CLI ``solve``, ``/v1/solve``).

``parse_solve_request(fields)`` turns a flat mapping of field names to values (a JSON body,
or the CLI's parsed flags) into a frozen ``SolveRequest``; an unset field (absent or None)
takes its default. Every bad value is a ``UsageError`` whose message names the field, spelled
the way the front end's user wrote it (``spell``: ``max_tool_calls`` in JSON,
``--max-tool-calls`` on the command line).

Fields: ``problem`` (required), ``mode`` (cot | pot | tir), ``n``, ``temperature``, ``top_p``,
``top_k``, ``max_tokens``, ``seed``, ``stop``, ``prompt_style``, and for TIR ``tir_protocol``
(qwen-agent | math-eval | notebook; the front end's default otherwise), ``max_tool_calls``
(None: the protocol's own limit), ``tool_timeout`` (seconds; None: the protocol's),
``extract_from`` (full | first-turn).

What it deliberately does not do: read files or stdin, load models, or answer HTTP (the
front ends do); a server maps ``UsageError`` to its own 400 answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qwen_math.config import (
    DEFAULT_MAX_TOKENS,
    SamplingConfig,
    at_least,
    default_sampling,
    positive_seconds,
)
from qwen_math.errors import UsageError
from qwen_math.prompts import PROMPT_STYLES
from qwen_math.strategies import MODES
from qwen_math.strategies.tir_protocols import DEFAULT_PROTOCOL, EXTRACT_FROM, PROTOCOLS

_INT, _NUMBER, _TEXT = (int,), (int, float), (str,)


@dataclass(frozen=True)
class SolveRequest:
    """Everything ``qwen_math.solve.solve`` needs besides a backend and a sandbox."""

    problem: str
    mode: str = "cot"
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    prompt_style: str = "instruct"
    tir_protocol: str = DEFAULT_PROTOCOL
    max_tool_calls: int | None = None
    tool_timeout: float | None = None
    extract_from: str = "full"

    def solve_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``solve(problem, backend=..., sandbox_pool=..., **these)``."""
        return {"mode": self.mode, "sampling": self.sampling, "prompt_style": self.prompt_style,
                "tir_protocol": self.tir_protocol, "max_tool_calls": self.max_tool_calls,
                "tool_timeout": self.tool_timeout, "extract_from": self.extract_from}


def json_field_name(name: str) -> str:
    return name


def flag_name(name: str) -> str:
    """``max_tool_calls`` -> ``--max-tool-calls`` (the CLI's spelling)."""
    return "--" + name.replace("_", "-")


def parse_solve_request(fields: Mapping[str, Any], *, default_tir_protocol: str = DEFAULT_PROTOCOL,
                        spell: Callable[[str], str] = json_field_name) -> SolveRequest:
    """The ``SolveRequest`` that ``fields`` describe; a bad field is a ``UsageError`` naming it."""
    if not isinstance(fields, Mapping):
        raise UsageError(f"a solve request must be a JSON object, got {type(fields).__name__}")
    reader = _Fields(fields, spell)
    problem = reader.get("problem", _TEXT, None)
    if problem is None:
        raise UsageError(f"{spell('problem')} (the question text) is required")
    return SolveRequest(
        problem=problem,
        mode=reader.choice("mode", MODES, "cot"),
        sampling=parse_sampling(reader),
        prompt_style=reader.choice("prompt_style", tuple(PROMPT_STYLES), "instruct"),
        tir_protocol=reader.choice("tir_protocol", tuple(PROTOCOLS), default_tir_protocol),
        max_tool_calls=reader.count("max_tool_calls", minimum=0),
        tool_timeout=reader.seconds("tool_timeout"),
        extract_from=reader.choice("extract_from", EXTRACT_FROM, "full"),
    )


def parse_sampling(reader: _Fields) -> SamplingConfig:
    """The request's sampling, with the project's defaults for unset fields."""
    stop = reader.get("stop", (str, list), [])
    stop = [stop] if isinstance(stop, str) else stop
    if not all(isinstance(item, str) for item in stop):
        raise UsageError(f"{reader.spell('stop')} must be a string or a list of strings")
    n = reader.count("n", minimum=1)
    # SamplingConfig names a bad value by its field (top_p, ...): the JSON name, a flag alias
    return default_sampling(
        n=1 if n is None else n,
        temperature=reader.get("temperature", _NUMBER, None),
        top_p=reader.get("top_p", _NUMBER, None),
        top_k=reader.get("top_k", _INT, -1),
        max_tokens=reader.get("max_tokens", _INT, DEFAULT_MAX_TOKENS),
        seed=reader.get("seed", _INT, 0),
        stop=tuple(item for item in stop if item),
    )


class _Fields:
    """Typed reads of a request mapping; each error names the field in the front end's spelling."""

    def __init__(self, fields: Mapping[str, Any], spell: Callable[[str], str]) -> None:
        self.fields, self.spell = fields, spell

    def get(self, name: str, types: tuple[type, ...], default: Any) -> Any:
        value = self.fields.get(name)
        if value is None:
            return default
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            raise UsageError(f"{self.spell(name)} must be {type_names(types)}, got {json.dumps(value)[:60]}")
        return value

    def choice(self, name: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(name, _TEXT, default)
        if value not in choices:
            raise UsageError(f"{self.spell(name)} must be one of {', '.join(choices)}, got {value!r}")
        return value

    def count(self, name: str, *, minimum: int) -> int | None:
        value = self.get(name, _INT, None)
        return None if value is None else at_least(self.spell(name), value, minimum)

    def seconds(self, name: str) -> float | None:
        value = self.get(name, _NUMBER, None)
        return None if value is None else positive_seconds(self.spell(name), value)


def type_names(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "an object"}
    return " or ".join(dict.fromkeys(names.get(t, t.__name__) for t in types))


__all__ = ["SolveRequest", "flag_name", "json_field_name", "parse_solve_request"]
