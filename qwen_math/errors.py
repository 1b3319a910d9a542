"""Exit codes and the exception types that map onto them.

One table for every subcommand (documented in the README):

| code | meaning |
|------|---------|
| 0 | done |
| 1 | internal error (a bug: please report it) |
| 2 | usage or configuration error (bad flag, bad input file, bad value) |
| 3 | partial: stopped by a limit, resumable by running the same command again |
| 4 | environment: model, backend, accelerator or data unavailable |
| 5 | resume refused: the run directory was made with a different configuration |

Library code raises these exceptions (never calls ``exit``); ``qwen_math.cli.main`` turns
them into one-line messages and exit codes. ``eval`` and ``sandbox`` cannot import this
module (dependency direction), so the CLI also maps their exception types (see
``qwen_math.cli.EXCEPTION_EXIT_CODES``).
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    INTERNAL = 1
    USAGE = 2
    PARTIAL = 3
    ENVIRONMENT = 4
    RESUME_REFUSED = 5


class QwenMathError(Exception):
    """Base class: a failure with a user-facing one-line message and an exit code."""

    exit_code: ExitCode = ExitCode.INTERNAL


class UsageError(QwenMathError, ValueError):
    """Bad flag value, bad input file or configuration (exit 2)."""

    exit_code = ExitCode.USAGE


class EnvironmentUnavailable(QwenMathError, RuntimeError):
    """A model, backend, accelerator or dataset cannot be had here (exit 4)."""

    exit_code = ExitCode.ENVIRONMENT


class PartialRun(QwenMathError):
    """Stopped by a limit (time, Ctrl-C, tool limit on the run); resumable (exit 3)."""

    exit_code = ExitCode.PARTIAL


class ResumeRefused(QwenMathError):
    """An existing run directory has a different fingerprint (exit 5)."""

    exit_code = ExitCode.RESUME_REFUSED
