"""Sampling configuration (vLLM's vocabulary) and per-sample seed derivation.

``SamplingConfig`` is a frozen dataclass with vLLM's field names (``n, temperature, top_p,
top_k, max_tokens, stop, seed``), validated and normalised in ``__post_init__``: a ``str``
stop becomes a one-element tuple, greedy decoding (temperature 0) forces ``top_p = 1`` and
disables top-k. ``default_sampling`` applies the project's CLI defaults (greedy for one
sample, the model card's 0.7 / 0.8 for several).

What it deliberately does not do: hold model, backend or strategy settings (those are the
caller's), or touch any global random state (``sample_seed`` is a pure function).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace

from qwen_math.errors import UsageError

#: Defaults of the model card: greedy for accuracy, 0.7 / 0.8 for majority voting.
SAMPLING_TEMPERATURE = 0.7
SAMPLING_TOP_P = 0.8
DEFAULT_MAX_TOKENS = 2048
DEFAULT_MAX_TOOL_CALLS = 4
DEFAULT_MODEL = "Qwen/Qwen2.5-Math-1.5B-Instruct"


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample completions; field names and meanings follow vLLM's ``SamplingParams``.

    ``top_k = -1`` (or 0) disables top-k; ``temperature = 0`` means greedy.
    """

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = DEFAULT_MAX_TOKENS
    stop: tuple[str, ...] = field(default_factory=tuple)
    seed: int = 0

    def __post_init__(self) -> None:
        stop = (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())
        object.__setattr__(self, "stop", stop)
        _check(isinstance(self.n, int) and self.n >= 1, f"n must be an integer >= 1, got {self.n!r}")
        _check(
            self.temperature >= 0, f"temperature must be >= 0, got {self.temperature!r}"
        )
        _check(math.isfinite(self.temperature), f"temperature must be finite, got {self.temperature!r}")
        _check(0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p!r}")
        _check(
            isinstance(self.top_k, int) and (self.top_k == -1 or self.top_k >= 0),
            f"top_k must be -1 (disabled) or >= 0, got {self.top_k!r}",
        )
        _check(
            isinstance(self.max_tokens, int) and self.max_tokens >= 1,
            f"max_tokens must be an integer >= 1, got {self.max_tokens!r}",
        )
        _check(isinstance(self.seed, int), f"seed must be an integer, got {self.seed!r}")
        _check(all(isinstance(s, str) and s for s in stop), "stop strings must be non-empty strings")
        if self.top_k == 0:
            object.__setattr__(self, "top_k", -1)
        if self.greedy:
            object.__setattr__(self, "top_p", 1.0)
            object.__setattr__(self, "top_k", -1)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def with_stop(self, *stop: str) -> SamplingConfig:
        """A copy whose stop strings also include ``stop`` (order kept, no repeats)."""
        merged = tuple(dict.fromkeys((*self.stop, *stop)))
        return replace(self, stop=merged)


def default_sampling(
    *,
    n: int = 1,
    temperature: float | None = None,
    top_p: float | None = None,
    top_k: int = -1,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    seed: int = 0,
    stop: tuple[str, ...] = (),
) -> SamplingConfig:
    """The CLI's defaults: temperature 0 when n = 1 else 0.7; top_p 1.0 when greedy else 0.8."""
    if temperature is None:
        temperature = 0.0 if n == 1 else SAMPLING_TEMPERATURE
    if top_p is None:
        top_p = 1.0 if temperature == 0 else SAMPLING_TOP_P
    return SamplingConfig(
        n=n, temperature=temperature, top_p=top_p, top_k=top_k,
        max_tokens=max_tokens, seed=seed, stop=stop,
    )


def sample_seed(run_seed: int, problem_id: str | int, sample_index: int) -> int:
    """A 63-bit seed for one sample, a pure function of (run seed, problem id, sample index).

    A sample's randomness therefore never depends on what else shares its batch.
    """
    key = f"{run_seed}\x1f{problem_id}\x1f{sample_index}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little") >> 1


def at_least(name: str, value: int, minimum: int) -> int:
    """``value`` when it is an integer >= ``minimum``; else a ``UsageError`` naming ``name``."""
    _check(isinstance(value, int) and not isinstance(value, bool) and value >= minimum,
           f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def positive_seconds(name: str, value: float, *, allow_zero: bool = False) -> float:
    """``value`` when it is a finite number of seconds > 0 (or >= 0 with ``allow_zero``);
    else a ``UsageError`` naming ``name``."""
    ok = isinstance(value, int | float) and math.isfinite(value) and (value > 0 or (allow_zero and value == 0))
    _check(ok, f"{name} must be a finite number of seconds {'>=' if allow_zero else '>'} 0, got {value!r}")
    return value


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)
