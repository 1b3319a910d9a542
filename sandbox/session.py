"""Client side of one sandbox session: run cells with a deadline, an output cap, and replay.

What it does: `Session` owns one session process of a `SandboxPool`'s driver. `run(code)`
sends the cell, drains the output pipe continuously while waiting (cutting it at the cap),
kills the whole session through the driver when the wall-clock deadline passes, and turns
every outcome into an `ExecResult` (see the status table in `sandbox.result`).
Between cells the session process is stopped (SIGSTOP; SIGCONT before the next cell): code
that forged its reply cannot keep computing outside every deadline. Variables,
functions and imports persist across cells; when the process dies (timeout, crash, memory,
output cap) the next `run` starts a new one and silently replays the cells that succeeded.
`run_code` and `run_pot` are the one-shot helpers on the default pool.

What it deliberately does not do: trust anything the session says beyond a JSON reply (it
never unpickles), or raise for a failure of the user's code. It raises `SandboxUnavailable`
only when the sandbox itself cannot run (no driver, minimum layers missing in strict mode).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import select
import signal
import threading
import time

from sandbox.errors import SandboxUnavailable
from sandbox.result import ExecResult

DEFAULT_OUTPUT_LIMIT = 1 << 18  # bytes of stdout per cell
MAX_REPLY_BYTES = 1 << 20  # a control reply is a short JSON line; more is a hostile session
_READY_TIMEOUT = 30.0
_READ_CHUNK = 1 << 16


def cpu_budget(timeout: float) -> int:
    """RLIMIT_CPU for a whole session: a backstop well above any single cell's deadline."""
    return math.ceil(max(30.0, 20 * timeout))


def last_printed_line(stdout: str) -> str | None:
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    return lines[-1] if lines else None


class _Exchange:
    """One request/response with a live session process: output draining, deadline, cap."""

    def __init__(self, spawned, output_limit: int) -> None:
        self.spawned = spawned
        self.output_limit = output_limit
        self.out = bytearray()
        self.reply = bytearray()
        self.out_open = True

    def drain_output(self) -> bool:
        """Read what the pipe holds; False once the cap is exceeded."""
        while self.out_open:
            try:
                data = os.read(self.spawned.out_fd, _READ_CHUNK)
            except BlockingIOError:
                break
            if not data:
                self.out_open = False
                break
            self.out += data
            if len(self.out) > self.output_limit:
                return False
        return True

    def read_reply(self) -> bool | None:
        """True when a full reply line arrived, None on EOF (the session died)."""
        data = self.spawned.ctrl.recv(_READ_CHUNK)
        if not data or len(self.reply) + len(data) > MAX_REPLY_BYTES:
            return None
        self.reply += data
        return b"\n" in self.reply

    def wait(self, deadline: float) -> str:
        """'reply', 'dead', 'timeout' or 'truncated'."""
        poller = select.poll()
        poller.register(self.spawned.ctrl.fileno(), select.POLLIN)
        poller.register(self.spawned.out_fd, select.POLLIN)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            for fd, _ in poller.poll(remaining * 1000):
                if fd == self.spawned.out_fd:
                    if not self.drain_output():
                        return "truncated"
                    if not self.out_open:
                        poller.unregister(fd)
                    continue
                got = self.read_reply()
                if got is None:
                    self.drain_output()
                    return "dead"
                if got:
                    return "reply" if self.drain_output() else "truncated"

    def stdout(self) -> str:
        return bytes(self.out[: self.output_limit]).decode("utf-8", errors="replace")


class Session:
    """One TIR trajectory's interpreter: state persists across `run` calls.

    `Session(timeout=5.0, memory_mb=1024)` uses the default pool's driver (without taking
    one of its session slots); `pool.session()` is the bounded variant. Use it as a context
    manager, or call `close()`.
    """

    def __init__(self, timeout: float = 5.0, memory_mb: int = 1024, *, pool=None,
                 output_limit: int = DEFAULT_OUTPUT_LIMIT, _on_close=None) -> None:
        if timeout <= 0 or memory_mb <= 0 or output_limit <= 0:
            raise ValueError("timeout, memory_mb and output_limit must be positive, got "
                             f"{timeout!r}, {memory_mb!r}, {output_limit!r}")
        if pool is None:
            from sandbox.pool import default_pool

            pool = default_pool()
        self.timeout = float(timeout)
        self.memory_mb = int(memory_mb)
        self.output_limit = int(output_limit)
        self._pool = pool
        self._on_close = _on_close
        self._lock = threading.Lock()
        self._spawned = None
        self._history: list[str] = []
        self._closed = False
        self._seq = 0
        self.layers: dict[str, dict] = {}

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    @property
    def pid(self) -> int | None:
        return self._spawned.sid if self._spawned else None

    def start(self) -> Session:
        """Start the session process now (otherwise the first `run` does)."""
        with self._lock:
            self._ensure_process()
        return self

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._end_process(wait=False)
            if self._on_close is not None:
                self._on_close()

    def _ensure_process(self) -> None:
        if self._closed:
            raise ValueError("this sandbox Session is closed")
        if self._spawned is not None:
            return
        driver = self._pool.driver()
        spawned = driver.spawn(memory_mb=self.memory_mb, cpu_s=cpu_budget(self.timeout))
        self._spawned = spawned
        ready = self._await_ready(spawned)
        self.layers = ready.get("layers", {})
        try:
            self._pool.check_layers(self.layers)
        except SandboxUnavailable:
            self._end_process(wait=False)
            raise

    def _await_ready(self, spawned) -> dict:
        exchange = _Exchange(spawned, self.output_limit)
        outcome = exchange.wait(time.monotonic() + _READY_TIMEOUT)
        if outcome != "reply":
            self._end_process()
            raise SandboxUnavailable(f"a sandbox session failed to start ({outcome})")
        return json.loads(bytes(exchange.reply).split(b"\n", 1)[0])

    def _end_process(self, *, wait: bool = True) -> dict:
        spawned, self._spawned = self._spawned, None
        if spawned is None:
            return {}
        with contextlib.suppress(OSError):
            spawned.ctrl.close()
        with contextlib.suppress(OSError):
            os.close(spawned.out_fd)
        return self._pool.end_session(spawned.sid, wait=wait)

    # -- cells -------------------------------------------------------------------------------
    def run(self, code: str) -> ExecResult:
        """Run one cell; never raises for a failure of the user's code."""
        return self._run(code, call_solution=False)

    def run_pot(self, code: str) -> ExecResult:
        """Run a PoT program; `.value` is `solution()` or the last printed line (see run_pot)."""
        result = self._run(code, call_solution=True)
        if result.value is None and result.status == "ok":
            return _with_value(result, last_printed_line(result.stdout))
        return result

    def _run(self, code: str, *, call_solution: bool) -> ExecResult:
        if not isinstance(code, str):
            raise TypeError(f"code must be str, got {type(code).__name__}")
        with self._lock:
            if self._spawned is not None and not self._idle_process_intact():
                self._end_process()
            if self._spawned is None:
                self._ensure_process()
                self._replay()
            result = self._execute(code, call_solution)
            if result.status == "ok":
                self._history.append(code)
            return result

    def _idle_process_intact(self) -> bool:
        """Between cells a live session sends nothing: EOF (it died, e.g. with its driver) or
        stray bytes (a hostile cell wrote to the control socket) both mean: start over."""
        poller = select.poll()
        poller.register(self._spawned.ctrl.fileno(), select.POLLIN)
        return not poller.poll(0)

    def _replay(self) -> None:
        for cell in self._history:
            if self._execute(cell, False).status != "ok":
                break

    def _execute(self, code: str, call_solution: bool) -> ExecResult:
        if self._spawned is None:
            self._ensure_process()
        spawned = self._spawned
        exchange = _Exchange(spawned, self.output_limit)
        self._seq += 1
        request = {"seq": self._seq, "code": code, "call_solution": call_solution}
        with self._pool.running_slot():
            start = time.monotonic()
            try:
                _signal(spawned.sid, signal.SIGCONT)
                spawned.ctrl.settimeout(self.timeout)
                spawned.ctrl.sendall(json.dumps(request).encode() + b"\n")
                outcome = exchange.wait(start + self.timeout)
            except TimeoutError:
                outcome = "timeout"
            except OSError:
                outcome = "dead"
            duration = time.monotonic() - start
        if outcome == "reply":
            # Frozen until its next cell: code that forged its reply, or hooked the worker's own
            # calls, cannot keep computing outside every deadline (and slot) between cells.
            _signal(spawned.sid, signal.SIGSTOP)
            return self._reply_result(exchange, duration)
        death = self._end_process(wait=outcome == "dead")  # only a death needs its cause
        return _death_result(outcome, death, exchange.stdout(), duration, self.output_limit)

    def _reply_result(self, exchange: _Exchange, duration: float) -> ExecResult:
        """Trust nothing: a reply must be exactly one well-typed JSON line for this request."""
        line, _, rest = bytes(exchange.reply).partition(b"\n")
        try:
            reply = json.loads(line)
            fields = [reply.get(key) for key in ("error", "layer", "value")]
            if rest or reply.get("seq") != self._seq or not all(f is None or isinstance(f, str) for f in fields):
                raise ValueError("unexpected reply")
            return ExecResult(reply["status"], exchange.stdout(), *fields[:1], duration, *fields[1:])
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError):  # nested '[[[['
            self._end_process()
            return ExecResult("crashed", exchange.stdout(), "the session sent a malformed reply",
                              duration, "protocol")


def _signal(sid: int, signum: int) -> None:
    """Stop or continue a live session (its pid stays ours: only the driver reaps it, on our
    request)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(sid, signum)


# A cell the client killed -> (status, layer, error line).
_KILLED = {
    "timeout": ("timeout", "deadline", "TimeoutError: the cell exceeded its time limit"),
    "truncated": ("output_truncated", "output_cap", "OutputLimitExceeded: output exceeded {cap} bytes"),
}
# The signal that ended a session on its own -> (status, layer, error line).
_FATAL_SIGNALS = {
    signal.SIGSYS: ("crashed", "seccomp", "the session was killed by the seccomp filter (SIGSYS)"),
    signal.SIGXCPU: ("timeout", "rlimits", "TimeoutError: CPU time limit exceeded"),
}


def _death_result(outcome: str, death: dict, stdout: str, duration: float, cap: int) -> ExecResult:
    """Classify a session that was killed (deadline, cap) or died on its own."""
    sig = death.get("signal")
    if outcome in _KILLED:
        status, layer, error = _KILLED[outcome]
    elif death.get("oom"):
        status, layer, error = "memory_error", "cgroup", "MemoryError"
    elif sig in _FATAL_SIGNALS:
        status, layer, error = _FATAL_SIGNALS[sig]
    else:
        reason = f"signal {sig}" if sig else f"exit status {death.get('exit')}"
        status, layer, error = "crashed", None, f"the session process died ({reason})"
    return ExecResult(status, stdout, error.format(cap=cap), duration, layer)


def _with_value(result: ExecResult, value: str | None) -> ExecResult:
    return dataclasses.replace(result, value=value)


def run_code(code: str, *, timeout: float = 5.0, memory_mb: int = 1024) -> ExecResult:
    """Run one program in a fresh session of the default pool."""
    from sandbox.pool import default_pool

    return default_pool().run_code(code, timeout=timeout, memory_mb=memory_mb)


def run_pot(code: str, *, timeout: float = 5.0, memory_mb: int = 1024) -> ExecResult:
    """Run a program-of-thought program in a fresh session; the answer is in `.value`.

    The rule: when the program defines a callable `solution` and printed nothing, `.value` is
    `str(solution())` (called in the same session, under the same deadline). Otherwise
    `.value` is the last non-empty line the program printed (None when it printed nothing).
    `.value` is None whenever the status is not ``ok``.
    """
    from sandbox.pool import default_pool

    return default_pool().run_pot(code, timeout=timeout, memory_mb=memory_mb)
