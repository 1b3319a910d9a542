"""A pool of sandbox sessions on one driver: bounded concurrency, one lazily created default.

What it does: `SandboxPool` owns one driver process (started on first use, restarted if it
died), hands out `Session`s with `pool.session()` (blocking while `max_sessions` are alive),
bounds the number of cells *executing* at once to `max_running` (the CPU count by default;
a cell's deadline starts when it gets a slot, so a busy machine does not turn into spurious
timeouts), and checks each new session's layers against the minimum (strict mode refuses to
run without process + rlimits + policy + seccomp; `strict=False` logs a warning instead).
It is thread-safe: the TIR loop runs one Session per trajectory from a thread pool.
`default_pool()` is the single lazily created default behind one accessor.

What it deliberately does not do: queue work or pick sessions for callers (each trajectory
keeps its own Session), outlive its owner (the driver ends when the pool is closed or the
process exits), or survive a `fork()` of its owner: create pools after forking (the default
pool is recreated in a forked child).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading

from sandbox.errors import SandboxUnavailable
from sandbox.isolation import MIN_LAYERS
from sandbox.result import ExecResult
from sandbox.session import DEFAULT_OUTPUT_LIMIT, Session

log = logging.getLogger(__name__)

DEFAULT_MAX_SESSIONS = 64


class SandboxPool:
    """Sessions on one driver process; see the module docstring."""

    def __init__(self, max_sessions: int | None = None, timeout: float = 5.0,
                 memory_mb: int = 1024, strict: bool = True, *, max_running: int | None = None,
                 output_limit: int = DEFAULT_OUTPUT_LIMIT, python: str | None = None) -> None:
        self.max_sessions = int(max_sessions or DEFAULT_MAX_SESSIONS)
        self.max_running = int(max_running or os.cpu_count() or 1)
        if self.max_sessions < 1 or self.max_running < 1:
            raise ValueError(f"max_sessions and max_running must be >= 1, got "
                             f"{max_sessions!r}, {max_running!r}")
        self.timeout = float(timeout)
        self.memory_mb = int(memory_mb)
        self.strict = bool(strict)
        self.output_limit = int(output_limit)
        self._python = python
        self._lock = threading.Lock()
        self._driver = None
        self._closed = False
        self._slots = threading.BoundedSemaphore(self.max_sessions)
        self._running = threading.BoundedSemaphore(self.max_running)
        self._warned = False

    # -- driver --------------------------------------------------------------------------------
    def driver(self):
        """The live driver, started (or restarted after a crash) on demand."""
        from sandbox.driver import Driver

        with self._lock:
            if self._closed:
                raise SandboxUnavailable("this SandboxPool is closed")
            if self._driver is None or not self._driver.alive():
                if self._driver is not None:
                    log.warning("sandbox driver %s died; starting a new one", self._driver.pid)
                    self._driver.close()
                self._driver = Driver(python=self._python)
            return self._driver

    def end_session(self, sid: int, *, wait: bool = True) -> dict:
        """Kill and reap a session on the current driver; {} when that driver is gone (its
        sessions died with it: they hold a parent-death signal)."""
        with self._lock:
            driver = self._driver
        if driver is None or not driver.alive():
            return {}
        try:
            return driver.kill(sid, wait=wait)
        except SandboxUnavailable:
            return {}

    def check_layers(self, layers: dict) -> None:
        missing = [name for name in MIN_LAYERS if not layers.get(name, {}).get("active")]
        if not missing:
            return
        message = (f"sandbox minimum isolation missing: {', '.join(missing)} "
                   f"({'; '.join(str(layers.get(n, {}).get('detail')) for n in missing)})")
        if self.strict:
            raise SandboxUnavailable(message + "; pass strict=False to run anyway")
        if not self._warned:
            self._warned = True
            log.warning("%s; running anyway because strict=False", message)

    @contextlib.contextmanager
    def running_slot(self):
        with self._running:
            yield

    # -- sessions ------------------------------------------------------------------------------
    def session(self, *, timeout: float | None = None, memory_mb: int | None = None) -> Session:
        """A new Session; blocks while `max_sessions` sessions of this pool are open."""
        self._slots.acquire()
        try:
            return Session(self.timeout if timeout is None else timeout,
                           self.memory_mb if memory_mb is None else memory_mb, pool=self,
                           output_limit=self.output_limit, _on_close=self._slots.release)
        except BaseException:
            self._slots.release()
            raise

    def run_code(self, code: str, *, timeout: float | None = None,
                 memory_mb: int | None = None) -> ExecResult:
        with self.session(timeout=timeout, memory_mb=memory_mb) as session:
            return session.run(code)

    def run_pot(self, code: str, *, timeout: float | None = None,
                memory_mb: int | None = None) -> ExecResult:
        with self.session(timeout=timeout, memory_mb=memory_mb) as session:
            return session.run_pot(code)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            driver, self._driver = self._driver, None
        if driver is not None:
            driver.close()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


_DEFAULT: list[SandboxPool] = []
_DEFAULT_LOCK = threading.Lock()


def default_pool() -> SandboxPool:
    """The process-wide default pool (strict, default limits), created on first use and
    closed at interpreter exit (its driver would exit anyway when this process does)."""
    with _DEFAULT_LOCK:
        if not _DEFAULT or _DEFAULT[0]._closed:
            _DEFAULT[:] = [SandboxPool()]
            atexit.register(_DEFAULT[0].close)
            # A forked child must not share its parent's driver connection: it gets its own.
            os.register_at_fork(after_in_child=_DEFAULT.clear)
        return _DEFAULT[0]
