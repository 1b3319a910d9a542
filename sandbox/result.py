"""Outcome of running one cell: the `ExecResult` record and the transcript fence escaping.

What it does: defines the statuses every run is classified into and the text helpers the TIR
strategy needs to splice output back into a transcript. What it deliberately does not do: run
anything (see `sandbox.session`) or decide a status (the session and client do).
"""

from __future__ import annotations

import dataclasses

STATUSES = ("ok", "error", "timeout", "memory_error", "output_truncated", "blocked", "crashed")


@dataclasses.dataclass(frozen=True)
class ExecResult:
    """What one cell did.

    `status` is one of STATUSES; `stdout` is everything the cell wrote to fd 1 (decoded with
    replacement, cut at the output cap); `error` is the last traceback line the model would see
    (e.g. ``NameError: name 'x' is not defined``) or None; `layer` names the isolation layer
    that stopped the cell when one did (``policy``, ``seccomp``, ``landlock``, ``deadline``,
    ``rlimit_cpu``, ``rlimit_as``, ``cgroup_memory``, ``output_cap``, ...); `value` is the
    PoT answer for `run_pot` (None elsewhere).
    """

    status: str
    stdout: str
    error: str | None
    duration_s: float
    layer: str | None = None
    value: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"ExecResult.status must be one of {STATUSES}, got {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def model_output(self) -> str:
        """The text the model should see: stdout, then the error line when there is one."""
        text = self.stdout
        if self.error:
            text = f"{text}{'' if not text or text.endswith(chr(10)) else chr(10)}{self.error}"
        return text


FENCE = "```"
ESCAPED_FENCE = "`\u200b``"


def escape_fences(text: str) -> str:
    """Break every run of three backticks so program output cannot close or open a fence.

    A zero-width space goes after the first backtick of each ``` run; the text reads the same
    to a person and the model, but the TIR parser never sees a fence inside tool output.
    """
    while FENCE in text:
        text = text.replace(FENCE, ESCAPED_FENCE)
    return text
