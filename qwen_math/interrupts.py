"""Clean stops on Ctrl-C and SIGTERM for every subcommand: one line, no traceback, exit 3.

``stop_on_signals()`` is a context manager the CLI frame (``qwen_math.cli.main``) wraps around
every subcommand, from argument parsing to the last byte of output, so a new subcommand gets
it for free. Inside it:

- the first SIGINT or SIGTERM raises ``KeyboardInterrupt`` in the main thread (SIGTERM then
  stops a run exactly like Ctrl-C: flushed, resumable);
- further signals while the command unwinds are ignored, so the cleanup that follows
  (closing the backend, the grader pool, the sandbox driver, the run manifest) finishes
  instead of being torn by a second traceback; the third one exits at once (``os._exit``,
  exit 3) with one line, for a cleanup that hangs;
- on leaving, the previous handlers come back, unless a signal came: then the stopper stays
  so that a late Ctrl-C cannot print a traceback while the interpreter exits.

The frame turns ``KeyboardInterrupt`` into ``interrupted`` and exit 3 (``ExitCode.PARTIAL``).
Helper processes are not this module's business: they ignore SIGINT themselves (grader
workers in ``eval.grade``; the sandbox driver runs in its own process group) and end when
their parent tells them or dies.

What it deliberately does not do: decide what is resumable (the command's own message says
how to resume), or touch signals off the main thread (there it is a no-op).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from qwen_math.errors import ExitCode

#: The signals that stop a command cleanly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: Signals after which the process leaves at once, without waiting for its cleanup.
FORCE_AFTER = 3


class Stopper:
    """The handler: raise once, ignore while unwinding, force-exit on the third signal."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.received = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received += 1
        if self.received == 1:
            raise KeyboardInterrupt(signal.Signals(signum).name)
        if self.received >= FORCE_AFTER:
            try:
                os.write(sys.stderr.fileno(), f"qwen-math {self.command}: interrupted again; "
                         "stopping now (rerun the same command to resume)\n".encode())
            except (OSError, ValueError, AttributeError):
                pass
            os._exit(int(ExitCode.PARTIAL))


@contextmanager
def stop_on_signals(command: str = "") -> Iterator[Stopper | None]:
    """SIGINT/SIGTERM raise ``KeyboardInterrupt`` once, then let the cleanup run (see module).

    Yields the handler (``None`` off the main thread); set its ``command`` to name the
    subcommand in the forced-exit line.
    """
    if threading.current_thread() is not threading.main_thread():
        yield None
        return
    stopper = Stopper(command or "command")
    previous = {signum: signal.signal(signum, stopper) for signum in STOP_SIGNALS}
    try:
        yield stopper
    finally:
        if not stopper.received:  # else keep ignoring signals until the process ends
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
