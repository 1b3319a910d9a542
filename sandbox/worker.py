"""Inside one session process: harden it, then run the cells sent over its control socket.

What it does: runs in the child the driver just forked. `harden` applies every per-session
layer in order (own session and process group, stdin closed, stdout to the output pipe, no
other fds, the sessions' environment, work dir, cgroup slot, mount namespace (network/IPC/UTS
are the driver's, made once, or the session's own where the driver could not), tmpfs work
dir, rlimits, /proc hidden, uid drop or capabilities dropped, parent-death signal,
no-new-privs, Landlock, seccomp last) and records what is active with its cost; if a step no
isolation can do without fails (`ESSENTIAL`, plus the private tmpfs when every session uses the
same work-dir path), the process exits before any user code exists. It then primes the cell
path with one silent trusted cell in a throw-away namespace. `serve` then reads
one JSON request per line, runs the cell against the persistent namespace through the policy
layer and answers one JSON line: `status`, `error` (the last traceback line), `layer`, and
for PoT the `value` of `solution()`. Output goes to fd 1 (the pipe the client drains).

What it deliberately does not do: enforce the wall-clock deadline or the output cap (the
client and driver do; code inside this process cannot be trusted to stop itself), or send
anything but text/JSON back (never pickle). It never returns: the process ends by `_exit`.
"""

from __future__ import annotations

import dataclasses
import errno
import io
import json
import os
import signal
import socket
import sys
import time
import traceback

from sandbox import isolation, policy

MAX_ERROR_CHARS = 2000
MAX_VALUE_CHARS = 10_000
CTRL_FD = 3


@dataclasses.dataclass(frozen=True)
class SessionPlan:
    """Everything the child needs to harden itself (decided by the driver before the fork)."""

    limits: isolation.Limits
    workdir: str
    driver_pid: int
    probe: isolation.HostProbe
    max_pids: int = 1
    cgroup_slot: int | None = None  # prepared (limits set) by the driver; the session joins it
    shared: isolation.SharedNamespaces | None = None  # the driver's network + IPC + UTS namespaces
    private_workdir: bool = False  # `workdir` is one path for every session, each its own tmpfs
    forked_at: float = 0.0  # time.monotonic() in the driver just before the fork


class _CountingRaw(io.RawIOBase):
    """fd 1 as a raw stream that counts the bytes the cell printed through `sys.stdout`."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        written = os.write(1, data)
        self.count += written
        return written

    def close(self) -> None:
        """Never closed: a cell that closes `sys.stdout` only loses its own wrapper."""


# ---------------------------------------------------------------------------------------------
# 1) hardening


class _Layers:
    def __init__(self) -> None:
        self.table: dict[str, dict] = {}

    def apply(self, name: str, step) -> bool:
        start = time.perf_counter()
        try:
            detail = step()
        except (OSError, ValueError, RuntimeError, ImportError) as exc:
            self.table[name] = {"active": False, "detail": f"{exc.__class__.__name__}: {exc}"}
            return False
        cost_ms = round((time.perf_counter() - start) * 1000, 3)
        self.table[name] = {"active": True, "detail": detail, "cost_ms": cost_ms}
        return True

    def skip(self, name: str, detail: str) -> None:
        self.table[name] = {"active": False, "detail": detail}

    def active(self, name: str) -> bool:
        return self.table.get(name, {}).get("active", False)


def _wire_fds(ctrl_fd: int, out_fd: int) -> str:
    """0 = /dev/null, 1 = output pipe, 2 = /dev/null, 3 = control socket; close the rest."""
    import fcntl

    ctrl_hi = fcntl.fcntl(ctrl_fd, fcntl.F_DUPFD, 100)
    out_hi = fcntl.fcntl(out_fd, fcntl.F_DUPFD, 100)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(out_hi, 1)
    os.dup2(null, 2)
    os.dup2(ctrl_hi, CTRL_FD)
    os.closerange(CTRL_FD + 1, 1 << 20)
    return "stdin=/dev/null, stdout=pipe, stderr=/dev/null, no inherited fds"


# The only variables a session sees: libraries loaded lazily (scipy's own OpenBLAS) must not
# try to start threads, which the seccomp filter refuses (OpenBLAS then exits the process).
SESSION_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _reset_environment() -> str:
    if dict(os.environ) != SESSION_ENV:  # the driver already holds exactly this environment
        os.environ.clear()
        os.environ.update(SESSION_ENV)
    return "inherited environment dropped; only " + ", ".join(f"{k}=1" for k in SESSION_ENV)


def _make_workdir(path: str, private: bool) -> str:
    if not private:
        os.mkdir(path, 0o700)
    os.chdir(path)  # a private one is covered by this session's own tmpfs just below
    return path + (" (own tmpfs mounted over it in this session's mount namespace)" if private else "")


def _parent_death_signal(driver_pid: int) -> str:
    isolation.prctl(isolation.PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != driver_pid:
        os._exit(0)  # the driver is already gone
    return "SIGKILL when the driver exits"


# Steps without which the process must not run user code at all (it would hold the driver's
# socket, the caller's environment, or share a directory): failing one ends the session.
ESSENTIAL = ("setsid", "fds", "empty_env", "workdir")
# With one work-dir path for every session, its private tmpfs is what separates them.
ESSENTIAL_PRIVATE_WORKDIR = ("net_namespace", "workdir_quota")


def _process_detail(plan: SessionPlan) -> str:
    how = "pre-forked by the driver" if plan.forked_at else "forked"
    return f"{how}, session pid {os.getpid()}"


def _namespaces(plan: SessionPlan) -> str:
    """Per session: a private mount namespace; network + IPC + UTS are the driver's (made once)
    when it has them, else this session's own."""
    mount = plan.probe.mount_namespace[0]
    if plan.shared is not None and plan.shared.active:
        own = isolation.enter_namespaces(mount=mount, net=False, user=False) if mount else "no mount namespace"
        return f"{plan.shared.detail}; {own}"
    return isolation.enter_namespaces(mount=mount)


def harden(plan: SessionPlan, seccomp_program, ctrl_fd: int, out_fd: int) -> _Layers:
    layers = _Layers()
    probe = plan.probe
    layers.apply("process", lambda: _process_detail(plan))
    if plan.forked_at:
        layers.table["process"]["cost_ms"] = round((time.monotonic() - plan.forked_at) * 1000, 3)
    layers.apply("setsid", lambda: os.setsid() or f"own session and process group {os.getsid(0)}")
    layers.apply("fds", lambda: _wire_fds(ctrl_fd, out_fd))
    layers.apply("empty_env", _reset_environment)
    layers.apply("workdir", lambda: _make_workdir(plan.workdir, plan.private_workdir))
    if probe.cgroups is not None and plan.cgroup_slot is not None:
        layers.apply("cgroup", lambda: isolation.join_session_cgroup(
            probe.cgroups, plan.cgroup_slot, plan.limits.memory_mb * 2**20, plan.max_pids))
    else:
        layers.skip("cgroup", probe.cgroups_detail)
    if probe.net_namespace[0]:
        layers.apply("net_namespace", lambda: _namespaces(plan))
    else:
        layers.skip("net_namespace", probe.net_namespace[1])
    if probe.mount_namespace[0] and layers.active("net_namespace"):
        layers.apply("workdir_quota", lambda: isolation.mount_workdir_tmpfs(plan.workdir, plan.limits.file_mb))
    else:
        layers.skip("workdir_quota", "no private mount namespace: the work dir is on the host's disk")
    layers.apply("rlimits", lambda: isolation.apply_rlimits(plan.limits))
    if layers.active("workdir_quota"):
        layers.apply("proc_hidden", isolation.hide_proc)
    else:
        layers.skip("proc_hidden", "no private mount namespace")
    if probe.uid_drop[0]:
        os.chown(plan.workdir, isolation.NOBODY, isolation.NOBODY)
        layers.apply("uid_drop", lambda: isolation.drop_uid(probe.uid_drop[2]) or probe.uid_drop[1])
    else:
        layers.skip("uid_drop", probe.uid_drop[1])
    if plan.shared is not None and plan.shared.user_ns:
        layers.apply("capabilities", isolation.drop_capabilities)
    layers.apply("parent_death", lambda: _parent_death_signal(plan.driver_pid))
    layers.apply("no_new_privs", lambda: isolation.prctl(isolation.PR_SET_NO_NEW_PRIVS, 1)
                 or isolation.prctl(isolation.PR_SET_DUMPABLE, 0)
                 or "PR_SET_NO_NEW_PRIVS, not dumpable (no /proc/<pid>/mem for peers)")
    if probe.landlock_abi:
        layers.apply("landlock", lambda: isolation.apply_landlock(plan.workdir, probe.landlock_abi,
                                                                       probe.readable_trees))
    else:
        layers.skip("landlock", "kernel has no Landlock")
    if seccomp_program is not None:
        layers.apply("seccomp", lambda: isolation.load_seccomp_program(seccomp_program) or probe.seccomp[1])

    else:
        layers.skip("seccomp", probe.seccomp[1])
    return layers


# ---------------------------------------------------------------------------------------------
# 2) running cells


def error_line(exc: BaseException) -> str:
    """The last line of the traceback Python would print (what the model expects to see)."""
    if policy.is_blocked(exc):
        base = next(cls for cls in type(exc).__mro__ if cls.__module__ == "builtins")
        return f"{base.__name__}: {exc}"[:MAX_ERROR_CHARS]
    try:
        lines = traceback.format_exception_only(type(exc), exc)
        line = lines[-1].strip() if lines else type(exc).__name__
    except Exception:  # noqa: BLE001 (a hostile __str__ must not take the session down)
        line = type(exc).__name__
    return line[:MAX_ERROR_CHARS]


_ERRNO_LAYERS = {
    errno.EPERM: ("seccomp", "uid_drop"),
    errno.EACCES: ("landlock", "uid_drop"),
    errno.EFBIG: ("rlimits",),
    errno.EMFILE: ("rlimits",),
    errno.ENETUNREACH: ("net_namespace",),
    errno.ENOSPC: ("workdir_quota",),
    errno.EAGAIN: ("cgroup", "rlimits"),
}


def os_layer(exc: BaseException, layers: _Layers) -> str | None:
    """Which OS layer most likely refused the operation that raised `exc`."""
    if isinstance(exc, RuntimeError) and "thread" in str(exc):
        return "seccomp" if layers.active("seccomp") else None
    if not isinstance(exc, OSError):
        return None
    if str(exc.filename or "").startswith("/proc/") and layers.active("proc_hidden"):
        return "proc_hidden"
    for name in _ERRNO_LAYERS.get(exc.errno, ()):
        if layers.active(name):
            return name
    return None


class Cell:
    """Runs cells against one persistent namespace; output accounting for display and PoT."""

    def __init__(self, layers: _Layers) -> None:
        self.layers = layers
        self.raw = _CountingRaw()
        self.stdout = None
        self.ensure_streams()
        self.namespace = policy.make_globals(self.display)
        self.mark = 0

    def ensure_streams(self) -> None:
        """(Re)install stdout on fd 1, stderr discarded, stdin empty, if a cell changed them."""
        if self.stdout is None or self.stdout.closed or sys.stdout is not self.stdout:
            self.stdout = io.TextIOWrapper(io.BufferedWriter(self.raw, 1 << 16), encoding="utf-8",
                                           errors="backslashreplace", newline="\n")
            sys.stdout = sys.__stdout__ = self.stdout
        if not isinstance(sys.stderr, _Discard) or sys.stderr.closed:
            sys.stderr = sys.__stderr__ = _Discard(io.BufferedWriter(_NullRaw()), encoding="utf-8")
        policy.bind_streams(sys.stdout, sys.stderr)
        if not isinstance(sys.stdin, io.StringIO) or sys.stdin.closed or sys.stdin.tell():
            sys.stdin = sys.__stdin__ = io.StringIO("")

    def printed_since_mark(self) -> bool:
        self.stdout.flush()
        return self.raw.count != self.mark

    def display(self, value) -> None:
        if value is not None and not self.printed_since_mark():
            self.stdout.write(repr(value) + "\n")

    def run(self, source: str, call_solution: bool) -> dict:
        self.ensure_streams()
        self.flush_quietly()
        self.mark = self.raw.count
        try:
            compiled = policy.compile_cell(source)
        except SyntaxError as exc:
            return {"status": "error", "error": error_line(exc)}
        except policy.PolicyViolation as exc:
            return {"status": "blocked", "error": f"PermissionError: {exc}"[:MAX_ERROR_CHARS],
                    "layer": "policy"}
        except (ValueError, RecursionError, MemoryError) as exc:
            return self.classify(exc)
        try:
            exec(compiled.code, self.namespace)
            reply = {"status": "ok"}
            if call_solution:
                reply.update(self.solution_value())
        except BaseException as exc:  # noqa: BLE001 (user code may raise anything, SystemExit included)
            reply = self.classify(exc)
        self.flush_quietly()
        return reply

    def solution_value(self) -> dict:
        solution = self.namespace.get("solution")
        if not callable(solution) or self.printed_since_mark():
            return {}
        return {"value": str(solution())[:MAX_VALUE_CHARS]}

    def classify(self, exc: BaseException) -> dict:
        if policy.is_blocked(exc):
            return {"status": "blocked", "error": error_line(exc), "layer": "policy"}
        if isinstance(exc, MemoryError) or getattr(exc, "errno", None) == errno.ENOMEM:
            return {"status": "memory_error", "error": error_line(exc), "layer": "rlimits"}
        return {"status": "error", "error": error_line(exc), "layer": os_layer(exc, self.layers)}

    def flush_quietly(self) -> None:
        try:
            self.stdout.flush()
        except (OSError, ValueError, UnicodeError):
            self.stdout = None
            self.ensure_streams()


class _Discard(io.TextIOWrapper):
    """The session's stderr: accepted and dropped (warnings are not the model's output)."""


class _NullRaw(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        return len(data)


def _send(ctrl: socket.socket, message: dict) -> None:
    ctrl.sendall(json.dumps(message, ensure_ascii=True).encode() + b"\n")


# A silent, trusted cell run once before `ready` through the whole path a real cell takes
# (JSON, policy compile, exec, stream flush) in a namespace that is then thrown away: the pages
# it touches are copied from the driver while the session is idle, not in the first real cell.
_PRIME_REQUEST = json.dumps({"seq": 0, "code": "_p = [str(n) + repr(n / 2) for n in range(3)]\nlen(_p)"})


def _prime(cell: Cell) -> None:
    request = json.loads(_PRIME_REQUEST)
    json.dumps(cell.run(request["code"], False), ensure_ascii=True)
    cell.namespace = policy.make_globals(cell.display)
    cell.mark = cell.raw.count


def serve(layers: _Layers) -> None:
    ctrl = socket.socket(fileno=CTRL_FD)
    cell = Cell(layers)
    _prime(cell)
    layers.table["policy"] = {"active": True, "detail": "RestrictedPython, relaxed policy, import allow-list"}
    _send(ctrl, {"ready": True, "pid": os.getpid(), "layers": layers.table})
    for line in ctrl.makefile("rb"):
        request = json.loads(line)
        reply = cell.run(request["code"], bool(request.get("call_solution")))
        reply["seq"] = request.get("seq")
        _send(ctrl, reply)


def session_main(plan: SessionPlan, seccomp_program, ctrl_fd: int, out_fd: int) -> None:
    """Entry point in the forked child; never returns."""
    code = 70
    try:
        layers = harden(plan, seccomp_program, ctrl_fd, out_fd)
        essential = ESSENTIAL + (ESSENTIAL_PRIVATE_WORKDIR if plan.private_workdir else ())
        if plan.shared is not None and plan.shared.user_ns:
            essential += ("capabilities",)  # never run user code with the driver's userns caps
        if not all(layers.active(step) for step in essential):
            os._exit(72)
        serve(layers)
        code = 0
    except BaseException:  # noqa: BLE001 (a child of fork must never unwind into the driver)
        code = 71
    finally:
        os._exit(code)
