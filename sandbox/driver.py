"""The trusted driver process and the client handle that talks to it.

What it does: `main` runs in a child process of the user (`Driver` starts it with an empty
environment and one SOCK_SEQPACKET socket). It pre-imports the allowed math modules, warms
SymPy up, probes the host's isolation layers, freezes the GC, and then forks one session
process per `spawn` request, handing the client the session's control socket and output
pipe (SCM_RIGHTS); `kill` ends a session's whole process group and cgroup, reaps it,
reports how it died (signal, exit code, cgroup OOM) and removes its work dir. The driver exits
when the client's socket closes (the client died or closed it): it is never a daemon.

What it deliberately does not do: run user code (only its forked children do), talk to a
session after the fork, or keep secrets: it inherits no environment from the user.
"""

from __future__ import annotations

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


@dataclasses.dataclass
class _DriverState:
    sock: socket.socket
    probe: object
    seccomp_program: object
    workbase: str
    sessions: set[int] = dataclasses.field(default_factory=set)
    dying: set[int] = dataclasses.field(default_factory=set)


def _spawn(state: _DriverState, request: dict) -> tuple[dict, list[int]]:
    from sandbox import isolation, worker

    limits = isolation.Limits(memory_mb=int(request["memory_mb"]), cpu_s=int(request["cpu_s"]))
    ctrl_client, ctrl_session = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    out_read, out_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        plan = worker.SessionPlan(limits, "", os.getppid(), state.probe)
        plan = dataclasses.replace(plan, workdir=f"{state.workbase}/w{os.getpid()}")
        worker.session_main(plan, state.seccomp_program, ctrl_session.fileno(), out_write)
    ctrl_session.close()
    os.close(out_write)
    state.sessions.add(pid)
    try:
        return {"ok": True, "sid": pid}, [ctrl_client.detach(), out_read]
    except OSError:
        os.close(out_read)
        raise


def _signal_session(state: _DriverState, sid: int) -> None:
    """SIGKILL the session's process group and anything left in its cgroup."""
    from sandbox import isolation

    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(sid, signal.SIGKILL)
    if state.probe.cgroups is not None:
        isolation.kill_session_cgroup(state.probe.cgroups, sid)


def _clean_up(state: _DriverState, sid: int) -> bool:
    """Remove a reaped session's cgroup and work dir; True when its cgroup saw an OOM."""
    from sandbox import isolation

    cgroups = state.probe.cgroups
    oom = cgroups is not None and isolation.session_hit_memory_limit(cgroups, sid)
    if cgroups is not None:
        isolation.remove_session_cgroup(cgroups, sid)
    remove_tree(f"{state.workbase}/w{sid}")
    return oom


def _reap(state: _DriverState, sid: int) -> dict:
    _signal_session(state, sid)
    _, status = os.waitpid(sid, 0)
    state.sessions.discard(sid)
    oom = _clean_up(state, sid)
    return {"ok": True, "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
            "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None, "oom": oom}


def reap_dying(state: _DriverState) -> None:
    """Finish sessions killed without waiting: reap the exited ones and clean up after them."""
    for sid in list(state.dying):
        pid, _ = os.waitpid(sid, os.WNOHANG)
        if pid:
            state.dying.discard(sid)
            _clean_up(state, sid)


def _kill(state: _DriverState, request: dict) -> tuple[dict, list[int]]:
    """End a session. With `wait` (a session that died or timed out) reply with how it ended;
    without (a plain close) reply at once and reap it while idle."""
    sid = int(request["sid"])
    if sid not in state.sessions:
        return {"ok": False, "error": f"unknown session {sid}"}, []
    if request.get("wait", True):
        return _reap(state, sid), []
    _signal_session(state, sid)
    state.sessions.discard(sid)
    state.dying.add(sid)
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


def serve(state: _DriverState) -> None:
    while True:
        if state.dying:
            reap_dying(state)
        idle_wait = _REAP_POLL_S if state.dying else None
        if not select.select([state.sock], [], [], idle_wait)[0]:
            continue
        message = state.sock.recv(_MAX_MESSAGE)
        if not message:
            return
        request = json.loads(message)
        try:
            reply, fds = HANDLERS[request["op"]](state, request)
        except (OSError, KeyError, ValueError) as exc:
            reply, fds = {"ok": False, "error": f"{exc.__class__.__name__}: {exc}"}, []
        socket.send_fds(state.sock, [json.dumps(reply).encode()], fds)
        for fd in fds:
            os.close(fd)


def shutdown(state: _DriverState) -> None:
    from sandbox import isolation

    for sid in list(state.sessions) + list(state.dying):
        state.sessions.add(sid)
        with contextlib.suppress(OSError):
            _reap(state, sid)
    if state.probe.cgroups is not None:
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
    from sandbox import isolation

    probe, seccomp_program = isolation.probe_host()
    workbase = tempfile.mkdtemp(prefix="qwen-sandbox-")
    os.chmod(workbase, 0o711)  # a session with a dropped uid must reach its own work dir
    state = _DriverState(sock, probe, seccomp_program, workbase)
    gc.collect()
    gc.freeze()  # forked sessions then never touch (and copy) the driver's objects
    try:
        cgroup_dirs = sorted({probe.cgroups.memory, probe.cgroups.pids}) if probe.cgroups else []
        hello = {"hello": True, "pid": os.getpid(), "python": sys.executable,
                 "uid": os.geteuid(), "host": probe.as_dict(), "workbase": workbase,
                 "cgroups": cgroup_dirs}
        sock.send(json.dumps(hello).encode())
        serve(state)
    finally:
        shutdown(state)
    return 0


# ---------------------------------------------------------------------------------------------
# Client handle


@dataclasses.dataclass(frozen=True)
class SpawnedSession:
    sid: int
    ctrl: socket.socket
    out_fd: int


class Driver:
    """The client's handle on one driver process (thread-safe; one request at a time)."""

    def __init__(self, *, python: str | None = None, start_timeout: float = 120.0) -> None:
        self._lock = threading.Lock()
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        root = str(Path(__file__).resolve().parent.parent)
        bootstrap = (f"import sys; sys.path.insert(0, {root!r}); "
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
        with self._lock:
            try:
                self._sock.send(json.dumps(request).encode())
                message, fds, _, _ = socket.recv_fds(self._sock, _MAX_MESSAGE, 2)
            except OSError as exc:
                raise SandboxUnavailable(f"lost the sandbox driver: {exc}") from exc
        if not message:
            raise SandboxUnavailable("the sandbox driver exited")
        reply = json.loads(message)
        if not reply.get("ok"):
            for fd in fds:
                os.close(fd)
            raise SandboxUnavailable(f"sandbox driver refused {request['op']}: {reply.get('error')}")
        return reply, fds

    def spawn(self, *, memory_mb: int, cpu_s: int) -> SpawnedSession:
        reply, fds = self._request({"op": "spawn", "memory_mb": memory_mb, "cpu_s": cpu_s})
        ctrl_fd, out_fd = fds
        os.set_blocking(out_fd, False)
        return SpawnedSession(reply["sid"], socket.socket(fileno=ctrl_fd), out_fd)

    def kill(self, sid: int, *, wait: bool = True) -> dict:
        """End the session's process group/cgroup; with `wait`, returns {signal, exit, oom}."""
        reply, _ = self._request({"op": "kill", "sid": sid, "wait": wait})
        return reply

    def close(self) -> None:
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
