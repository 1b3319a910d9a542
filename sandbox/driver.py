"""The trusted driver process and the client handle that talks to it.

What it does: `main` runs in a child process of the user (`Driver` starts it with an empty
environment and one SOCK_SEQPACKET socket). It pre-imports the allowed math modules, warms
SymPy up, probes the host's isolation layers, and pays once for what is the same for every
session: it enters empty network + IPC + UTS namespaces itself (sessions inherit them), prepares
the seccomp program for a single prctl, resolves the libc wrappers, sets the sessions'
environment, makes the one work-dir mount point, freezes the GC. It then forks session
processes, each of which hardens itself with what must differ per session (own process group,
cgroup slot with its own memory/pids limits, mount namespace with a private tmpfs work dir and
/proc covered, rlimits, uid drop, Landlock domain, seccomp). A small bounded number
(`IDLE_SESSIONS`) of fully hardened idle sessions is kept for the most recently requested
limits, so a `spawn` is a hand-off of the session's control socket and output pipe
(SCM_RIGHTS), refilled between requests; the client handle (`Driver`) asks for the next one
as soon as it takes one (`PREFETCH_SESSIONS`), so opening a session needs no round trip to a
driver that may be busy forking. `kill` ends a session's whole process group and
cgroup, reaps it, reports how it died (signal, exit code, cgroup OOM) and recycles its cgroup
slot. The driver exits when the client's socket closes (the client died or closed it): it is
never a daemon.

What it deliberately does not do: run user code (only its forked children do), talk to a
session after the fork, reuse a session process for a second session (every session is a
fresh fork), or keep secrets: it inherits no environment from the user.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from sandbox.errors import SandboxUnavailable

log = logging.getLogger(__name__)

PREIMPORTED = (
    "math", "cmath", "fractions", "decimal", "itertools", "functools", "collections",
    "statistics", "re", "random", "string", "operator", "heapq", "bisect", "datetime", "time",
    "typing", "json", "copy", "abc", "array", "numbers", "enum", "dataclasses", "calendar",
    "textwrap", "pprint", "unicodedata", "mpmath", "numpy", "sympy",
)
# Not scipy: it would add ~4 ms of fork and exit cost to every session; a cell that needs it
# (or lambdify's default namespace) imports it lazily.
DRIVER_ENV = {
    "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
}
_MAX_MESSAGE = 1 << 16
_REAP_POLL_S = 0.005
_WARM_UP = """
from sympy import *
x, y, k = symbols('x y k')
solve([Eq(x + y, 6), Eq(x - y, -4)], (x, y)); solve(x**2 - 5*x + 6, x)
str(simplify((x**3 - 1)/(x - 1))); str(expand((x + 1)**5)); str(factor(x**2 - 1))
summation(k**2, (k, 1, 6)); factorint(99921); divisors(360); Rational(3, 4) + Rational(1, 6)
str(sqrt(8)); str(nsimplify(0.5)); str(Matrix([[1, 2], [3, 4]]).det()); integrate(x**2, (x, 0, 1))
diff(sin(x) * exp(x), x); limit(sin(x) / x, x, 0); N(pi, 20); binomial(10, 3); isprime(97)
sympify('2*x + 1'); latex(x**2 / 2); series(exp(x), x, 0, 4); gcd(12, 18); nextprime(100)
import numpy as np
np.array([1, 2, 3]).sum(); np.linalg.solve(np.eye(2), np.ones(2)); str(np.float64(1.5))
lambdify(x, sin(x) + x**2, "math")(1.0)
"""


# ---------------------------------------------------------------------------------------------
# Driver process


def preimport() -> None:
    for name in PREIMPORTED:
        try:
            __import__(name)
        except ImportError:
            log.info("sandbox driver: %s is not installed; user code cannot import it", name)
    import sandbox.policy
    import sandbox.worker  # noqa: F401


def warm_up() -> None:
    """Exercise the common SymPy/NumPy paths so their lazy imports happen before any fork."""
    try:
        exec(compile(_WARM_UP, "<warm-up>", "exec"), {"__name__": "__warm_up__"})
    except Exception:
        log.debug("sandbox driver: warm-up incomplete", exc_info=True)


def freeze_for_forks() -> None:
    """The last step before forking sessions: every object made so far frozen out of the GC
    (forked sessions then never touch, hence copy, them) and the anonymous heap collapsed into
    huge pages (a cheaper fork and exit for every session)."""
    from sandbox import isolation

    gc.collect()
    gc.freeze()
    with contextlib.suppress(OSError, ValueError, AttributeError):
        isolation.collapse_heap_to_huge_pages()


# Pre-forked, fully hardened idle sessions kept for the most recently requested limits: opening
# a session is then a hand-off of two fds, not a fork. Small and bounded (each is a process).
IDLE_SESSIONS = 2
_MAX_FREE_SLOTS = 64
_REFILL_DELAY_S = 0.002


@dataclasses.dataclass
class _Built:
    """A session process the driver forked; it holds the client ends until the hand-off."""

    sid: int
    key: tuple[int, int]
    ctrl: socket.socket
    out_read: int
    slot: int | None
    oom_baseline: int


@dataclasses.dataclass
class _DriverState:
    sock: socket.socket
    probe: object
    seccomp_program: object
    workbase: str
    shared: object = None  # isolation.SharedNamespaces: made once, every session lives in them
    sessions: dict[int, _Built] = dataclasses.field(default_factory=dict)  # handed off
    dying: dict[int, _Built] = dataclasses.field(default_factory=dict)
    idle: list[_Built] = dataclasses.field(default_factory=list)
    idle_key: tuple[int, int] | None = None
    free_slots: list[tuple[int, int, int]] = dataclasses.field(default_factory=list)  # slot, limit, events
    next_slot: int = 0

    @property
    def private_workdir(self) -> bool:
        return bool(self.probe.mount_namespace[0] and self.probe.net_namespace[0])


def _take_cgroup_slot(state: _DriverState, limits) -> tuple[int | None, int]:
    """A recycled slot (its limit rewritten only when it differs) or a new one; (slot, the
    slot's memory-limit event count now) or (None, 0) without cgroups."""
    from sandbox import isolation, worker

    cgroups, memory_bytes = state.probe.cgroups, limits.memory_mb * 2**20
    if cgroups is None:
        return None, 0
    try:
        if state.free_slots:
            slot, limit, baseline = state.free_slots.pop()
            if limit != memory_bytes:
                isolation.set_session_memory_limit(cgroups, slot, memory_bytes)
            return slot, baseline
        slot, state.next_slot = state.next_slot, state.next_slot + 1
        return slot, isolation.prepare_session_cgroup(cgroups, slot, memory_bytes, worker.SessionPlan.max_pids)
    except OSError:
        log.debug("sandbox driver: cgroup slot unusable", exc_info=True)
        return None, 0  # the session reports its cgroup layer inactive; strict mode decides


def _build(state: _DriverState, key: tuple[int, int]) -> _Built:
    """Fork one session process; it hardens itself and announces `ready` on its socket."""
    from sandbox import isolation, worker

    limits = isolation.Limits(memory_mb=key[0], cpu_s=key[1])
    slot, baseline = _take_cgroup_slot(state, limits)
    ctrl_client, ctrl_session = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    out_read, out_write = os.pipe()
    forked_at = time.monotonic()
    pid = os.fork()
    if pid == 0:
        workdir = f"{state.workbase}/w" if state.private_workdir else f"{state.workbase}/w{os.getpid()}"
        plan = worker.SessionPlan(limits, workdir, os.getppid(), state.probe, cgroup_slot=slot,
                                  shared=state.shared, private_workdir=state.private_workdir,
                                  forked_at=forked_at)
        worker.session_main(plan, state.seccomp_program, ctrl_session.fileno(), out_write)
    ctrl_session.close()
    os.close(out_write)
    return _Built(pid, key, ctrl_client, out_read, slot, baseline)


def _spawn(state: _DriverState, request: dict) -> tuple[dict, list[int]]:
    key = (int(request["memory_mb"]), int(request["cpu_s"]))
    state.idle_key = key
    built = next((b for b in state.idle if b.key == key), None)
    if built is not None:
        state.idle.remove(built)
    else:
        built = _build(state, key)
    state.sessions[built.sid] = built
    fds = [built.ctrl.detach(), built.out_read]
    return {"ok": True, "sid": built.sid}, fds


def refill_idle(state: _DriverState) -> bool:
    """One step of keeping IDLE_SESSIONS ready for the last requested limits; True if it did
    something. Idle sessions for other limits are ended first."""
    stale = next((b for b in state.idle if b.key != state.idle_key), None)
    if stale is not None:
        state.idle.remove(stale)
        _end_built(state, stale)
        return True
    if state.idle_key is None or len(state.idle) >= IDLE_SESSIONS:
        return False
    state.idle.append(_build(state, state.idle_key))
    return True


def _end_built(state: _DriverState, built: _Built) -> None:
    """End a session the driver still holds the client ends of (idle, never handed off)."""
    with contextlib.suppress(OSError):
        built.ctrl.close()
    with contextlib.suppress(OSError):
        os.close(built.out_read)
    _signal_session(built)
    state.dying[built.sid] = built


def _signal_session(built: _Built) -> None:
    """SIGKILL the session's process group (what its cgroup still holds: `_clean_up`)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(built.sid, signal.SIGKILL)


def _clean_up(state: _DriverState, built: _Built) -> bool:
    """After the reap: recycle the session's cgroup slot when nothing is left in it (else kill
    what is and remove it), remove its work dir; True when its cgroup saw an OOM."""
    from sandbox import isolation

    cgroups, slot = state.probe.cgroups, built.slot
    oom = False
    if cgroups is not None and slot is not None:
        events = isolation.memory_limit_events(cgroups, slot)
        oom = events > built.oom_baseline
        if isolation.session_cgroup_empty(cgroups, slot) and len(state.free_slots) < _MAX_FREE_SLOTS:
            state.free_slots.append((slot, built.key[0] * 2**20, events))
        else:
            isolation.remove_session_cgroup(cgroups, slot)  # kills what is left, then rmdir
    if not state.private_workdir:  # a private work dir was a tmpfs: gone with its mount namespace
        remove_tree(f"{state.workbase}/w{built.sid}")
    return oom


def _reap(state: _DriverState, built: _Built) -> dict:
    _signal_session(built)
    _, status = os.waitpid(built.sid, 0)
    oom = _clean_up(state, built)
    return {"ok": True, "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None, "oom": oom}


def reap_dying(state: _DriverState) -> None:
    """Finish sessions killed without waiting: reap the exited ones and clean up after them."""
    for sid, built in list(state.dying.items()):
        pid, _ = os.waitpid(sid, os.WNOHANG)
        if pid:
            del state.dying[sid]
            _clean_up(state, built)


def _kill(state: _DriverState, request: dict) -> tuple[dict, list[int]]:
    """End a session. With `wait` (a session that died or timed out) reply with how it ended;
    without (a plain close) reply at once and reap it while idle."""
    sid = int(request["sid"])
    built = state.sessions.pop(sid, None)
    if built is None:
        return {"ok": False, "error": f"unknown session {sid}"}, []
    if request.get("wait", True):
        return _reap(state, built), []
    _signal_session(built)
    state.dying[sid] = built
    return {"ok": True}, []


HANDLERS = {"spawn": _spawn, "kill": _kill}


def remove_tree(path: str) -> None:
    """Remove a work dir even when user code made parts of it unreadable."""

    def make_writable_and_retry(func, failed_path, _exc):
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(failed_path) or ".", 0o700)
            if not os.path.islink(failed_path):  # chmod follows links: never out of the tree
                os.chmod(failed_path, 0o700)
            func(failed_path)

    if os.path.lexists(path):
        shutil.rmtree(path, onerror=make_writable_and_retry)


def _pending(sock: socket.socket, wait: float | None) -> bool:
    return bool(select.select([sock], [], [], wait)[0])


def serve(state: _DriverState) -> None:
    """Answer requests; between them reap, and refill the idle sessions (requests first: right
    after a hand-off the same client's close usually follows within a cell's time)."""
    refill_after = 0.0
    while True:
        if state.dying:
            reap_dying(state)
        if not _pending(state.sock, refill_after):
            if refill_idle(state):
                continue
            if not _pending(state.sock, _REAP_POLL_S if state.dying else None):
                continue
        try:
            message = state.sock.recv(_MAX_MESSAGE)
        except OSError:  # reset: the client closed with replies it never read
            return
        if not message:
            return
        request = json.loads(message)
        refill_after = _REFILL_DELAY_S if request.get("op") == "spawn" else 0.0
        try:
            reply, fds = HANDLERS[request["op"]](state, request)
        except (OSError, KeyError, ValueError) as exc:
            reply, fds = {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"}, []
        try:
            socket.send_fds(state.sock, [json.dumps(reply).encode()], fds)
        except OSError:  # the client is gone (it closed after a request it did not wait on)
            return
        finally:
            for fd in fds:
                os.close(fd)


def shutdown(state: _DriverState) -> None:
    from sandbox import isolation

    for built in state.idle:
        _end_built(state, built)
    for built in [*state.sessions.values(), *state.dying.values()]:
        with contextlib.suppress(OSError):
            _reap(state, built)
    if state.probe.cgroups is not None:
        for slot in range(state.next_slot):
            isolation.remove_session_cgroup(state.probe.cgroups, slot)
        isolation.remove_driver_cgroups(state.probe.cgroups)
    remove_tree(state.workbase)


def main(argv: list[str]) -> int:
    """Driver entry point: `python -c ... <socket fd>` started by `Driver`."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the client's to handle
    sock = socket.socket(fileno=int(argv[0]))
    with contextlib.suppress(OSError, AttributeError):
        from sandbox import isolation

        isolation.prctl(isolation.PR_SET_DUMPABLE, 0)  # sessions cannot open /proc/<driver>/mem
    preimport()
    warm_up()
    from sandbox import isolation, worker

    probe, seccomp_program = isolation.probe_host()
    # Paid once for every session: the empty network namespace, the seccomp program ready to
    # load, the libc wrappers resolved, the sessions' environment.
    shared = isolation.enter_shared_namespaces(probe.net_namespace[0])
    program = isolation.SeccompProgram(seccomp_program) if seccomp_program is not None else None
    isolation.warm_syscall_wrappers()
    os.environ.clear()
    os.environ.update(worker.SESSION_ENV)
    workbase = tempfile.mkdtemp(prefix="qwen-sandbox-")
    os.chmod(workbase, 0o711)  # a session with a dropped uid must reach its own work dir
    state = _DriverState(sock, probe, program, workbase, shared)
    if state.private_workdir:
        os.mkdir(f"{workbase}/w", 0o700)  # every session mounts its own tmpfs over it
    freeze_for_forks()
    try:
        cgroup_dirs = sorted({probe.cgroups.memory, probe.cgroups.pids}) if probe.cgroups else []
        host = probe.as_dict()
        host["shared_namespaces"] = {"active": shared.active, "detail": shared.detail}
        hello = {"hello": True, "pid": os.getpid(), "python": sys.executable,
                 "uid": os.geteuid(), "host": host, "workbase": workbase,
                 "cgroups": cgroup_dirs}
        sock.send(json.dumps(hello).encode())
        serve(state)
    finally:
        shutdown(state)
    return 0


# ---------------------------------------------------------------------------------------------
# Client handle


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        os.close(fd)


@dataclasses.dataclass(frozen=True)
class SpawnedSession:
    sid: int
    ctrl: socket.socket
    out_fd: int


def _spawned(reply: dict, fds: list[int]) -> SpawnedSession:
    ctrl_fd, out_fd = fds
    os.set_blocking(out_fd, False)
    return SpawnedSession(reply["sid"], socket.socket(fileno=ctrl_fd), out_fd)


# Sessions a client holds already handed over (besides the driver's IDLE_SESSIONS), so that
# opening one needs no round trip to the driver.
PREFETCH_SESSIONS = 1


class Driver:
    """The client's handle on one driver process (thread-safe; one request at a time)."""

    def __init__(self, *, python: str | None = None, start_timeout: float = 120.0) -> None:
        self._lock = threading.Lock()
        # What to do with each reply still owed to a request nobody waits on (plain closes,
        # prefetches), in request order: the driver answers in that order.
        self._owed: collections.deque[Callable[[bytes, list[int]], None]] = collections.deque()
        # Sessions the driver already handed over for the limits last asked for, used before
        # asking again: opening one is then local (no round trip to a driver that may be forking).
        self._prefetched: list[SpawnedSession] = []
        self._unwanted: list[SpawnedSession] = []  # prefetched for limits no longer asked for
        self._prefetch_key: tuple[int, int] | None = None
        self._prefetching = 0
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        root = str(Path(__file__).resolve().parent.parent)
        # SIGINT ignored from the first statement: Ctrl-C is the client's to handle, and the
        # driver (and every session it forks, which inherit it) never prints a traceback for it.
        bootstrap = (f"import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                     f"sys.path.insert(0, {root!r}); "
                     "from sandbox.driver import main; sys.exit(main(sys.argv[1:]))")
        try:
            self._proc = subprocess.Popen(
                [python or sys.executable, "-I", "-c", bootstrap, str(child.fileno())],
                pass_fds=[child.fileno()], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                env=dict(DRIVER_ENV), cwd="/", close_fds=True,
                start_new_session=True)  # Ctrl-C on the terminal is the client's, never the driver's
        except OSError as exc:
            raise SandboxUnavailable(f"cannot start the sandbox driver: {exc}") from exc
        finally:
            child.close()
        self._sock = parent
        self._sock.settimeout(start_timeout)
        try:
            self.hello = json.loads(self._sock.recv(_MAX_MESSAGE) or b"null")
        except (OSError, ValueError) as exc:
            self.close()
            raise SandboxUnavailable(f"the sandbox driver did not start: {exc}") from exc
        if not self.hello:
            self.close()
            raise SandboxUnavailable("the sandbox driver exited during start-up (see its stderr)")
        self._sock.settimeout(30.0)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def alive(self) -> bool:
        return self._proc.poll() is None

    def _request(self, request: dict) -> tuple[dict, list[int]]:
        """Send `request` and wait for its reply (the lock held). The driver answers in request
        order: the replies owed to the requests sent before this one come first."""
        try:
            owed_before = len(self._owed)
            self._sock.send(json.dumps(request).encode())
            for _ in range(owed_before):
                message, fds = self._receive()
                if not message:
                    break
                self._owed.popleft()(message, fds)
            else:
                message, fds = self._receive()
        except OSError as exc:
            raise SandboxUnavailable(f"lost the sandbox driver: {exc}") from exc
        if not message:
            raise SandboxUnavailable("the sandbox driver exited")
        reply = json.loads(message)
        if not reply.get("ok"):
            _close_all(fds)
            raise SandboxUnavailable(f"sandbox driver refused {request['op']}: {reply.get('error')}")
        return reply, fds

    def _receive(self) -> tuple[bytes, list[int]]:
        message, fds, _, _ = socket.recv_fds(self._sock, _MAX_MESSAGE, 2)
        return message, fds

    def _handle_owed_replies(self) -> None:
        """Handle the owed replies that have already arrived (never blocks; the lock held)."""
        while self._owed and select.select([self._sock], [], [], 0)[0]:
            message, fds = self._receive()
            if not message:
                raise SandboxUnavailable("the sandbox driver exited")
            self._owed.popleft()(message, fds)

    def _send_without_reply(self, request: dict, on_reply: Callable[[bytes, list[int]], None]) -> None:
        """Send a request whose reply nobody waits for: `on_reply` handles it when a later
        call reads it (owed replies already there are handled now: the socket never fills)."""
        try:
            self._handle_owed_replies()
            self._sock.send(json.dumps(request).encode())
            self._owed.append(on_reply)
        except OSError as exc:
            raise SandboxUnavailable(f"lost the sandbox driver: {exc}") from exc

    @staticmethod
    def _drop_reply(_message: bytes, fds: list[int]) -> None:
        _close_all(fds)

    def _keep_prefetched(self, key: tuple[int, int], message: bytes, fds: list[int]) -> None:
        self._prefetching -= 1
        reply = json.loads(message)
        if not reply.get("ok") or len(fds) != 2:
            log.debug("sandbox driver: prefetch refused: %s", reply.get("error"))
            _close_all(fds)
            return
        session = _spawned(reply, fds)
        if key == self._prefetch_key:
            self._prefetched.append(session)
        else:  # the limits changed meanwhile: ended by the next `_prefetch` (a reply handler
            self._unwanted.append(session)  # never sends: replies would pair with the wrong request)

    def _end_prefetched(self, session: SpawnedSession) -> None:
        session.ctrl.close()
        os.close(session.out_fd)
        self._send_without_reply({"op": "kill", "sid": session.sid, "wait": False}, self._drop_reply)

    def _prefetch(self, key: tuple[int, int]) -> None:
        """Ask for sessions ahead of use so that PREFETCH_SESSIONS are at hand for `key`."""
        if key != self._prefetch_key:
            self._unwanted += self._prefetched
            self._prefetched, self._prefetch_key = [], key
        while self._unwanted:
            self._end_prefetched(self._unwanted.pop())
        for _ in range(PREFETCH_SESSIONS - len(self._prefetched) - self._prefetching):
            self._prefetching += 1
            self._send_without_reply({"op": "spawn", "memory_mb": key[0], "cpu_s": key[1]},
                                     lambda message, fds: self._keep_prefetched(key, message, fds))

    def spawn(self, *, memory_mb: int, cpu_s: int) -> SpawnedSession:
        """A fresh session for these limits: one already handed over (prefetched) when there
        is one, else asked for now; either way the next one is asked for before returning."""
        key = (int(memory_mb), int(cpu_s))
        with self._lock:
            self._handle_owed_replies()
            if key == self._prefetch_key and self._prefetched:
                session = self._prefetched.pop(0)
            else:
                reply, fds = self._request({"op": "spawn", "memory_mb": key[0], "cpu_s": key[1]})
                session = _spawned(reply, fds)
            self._prefetch(key)
        return session

    def kill(self, sid: int, *, wait: bool = True) -> dict:
        """End the session's process group/cgroup; with `wait`, returns {signal, exit, oom}.
        Without, the request is sent and not waited for (a plain close costs one send)."""
        with self._lock:
            if not wait:
                self._send_without_reply({"op": "kill", "sid": sid, "wait": False}, self._drop_reply)
                return {"ok": True}
            reply, _ = self._request({"op": "kill", "sid": sid, "wait": True})
        return reply

    def close(self) -> None:
        with self._lock:
            prefetched, self._prefetched, self._unwanted = self._prefetched + self._unwanted, [], []
        for session in prefetched:  # the driver ends them when the socket closes
            with contextlib.suppress(OSError):
                session.ctrl.close()
                os.close(session.out_fd)
        with contextlib.suppress(OSError):
            self._sock.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.returncode != 0:
            self.clean_up_after_death()

    def clean_up_after_death(self) -> None:
        """A killed driver cannot remove its work dirs and cgroups; its user does (its
        sessions hold a parent-death SIGKILL; anything left in their cgroups is killed)."""
        from sandbox.isolation import kill_cgroup

        hello = self.hello if isinstance(getattr(self, "hello", None), dict) else {}
        for base in hello.get("cgroups", []):
            for child in Path(base).glob("s*"):
                kill_cgroup(str(child))
        if hello.get("workbase"):
            remove_tree(hello["workbase"])
        for base in hello.get("cgroups", []):
            for child in Path(base).glob("s*"):
                for _ in range(50):  # a killed process leaves its cgroup a moment later
                    try:
                        child.rmdir()
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        os.sched_yield()
            with contextlib.suppress(OSError):
                os.rmdir(base)
