"""The OS layer: detect and apply each isolation layer of a session process.

What it does: probes this host once (Landlock ABI, network namespaces, cgroup v1/v2, seccomp
binding, whether a uid drop is possible), prepares in the driver what every session shares
(the empty network + IPC + UTS namespaces the driver itself enters, the seccomp program ready
for one prctl, recyclable per-session cgroup slots with their limits) and, inside a freshly
forked session process, applies the per-session layers in order: cgroup slot, mount namespace
(private tmpfs work dir, /proc covered), rlimits, uid drop (or, unprivileged, dropping the
capabilities of the driver's user namespace), no-new-privs, Landlock (read-only Python tree,
read-write work dir, TCP and signal scoping), and last a seccomp filter (no fork/exec/clone,
sockets, kill/ptrace, mount/namespace, rlimit or uid changes, signal timers, SIGIO owners,
clearing the parent-death signal; command arguments compared on their low 32 bits, as the
kernel reads them). Every layer reports `(active, detail)`; none raises, so the caller decides
whether the minimum is met. Also the driver-side helpers that prepare, kill and recycle a
session's cgroup slot.

What it deliberately does not do: the policy layer (`sandbox.policy`), fork or talk to
anybody (`sandbox.driver`), or keep any state between calls beyond the frozen `HostProbe`.
Linux only; on other systems every layer reports inactive and strict mode refuses to start.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import functools
import os
import resource
import signal
import sys
import sysconfig
from pathlib import Path

MIN_LAYERS = ("process", "rlimits", "policy", "seccomp")
NOBODY = 65534

# -- raw syscalls ------------------------------------------------------------------------------
_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_DUMPABLE = 1, 38, 4
_CLONE_NEWNET, _CLONE_NEWUSER, _CLONE_NEWIPC, _CLONE_NEWUTS = 0x40000000, 0x10000000, 0x08000000, 0x04000000


@functools.cache
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def prctl(option: int, arg: int) -> None:
    _check(_libc().prctl(option, ctypes.c_ulong(arg), 0, 0, 0), f"prctl({option})")


def unshare(flags: int) -> None:
    _check(_libc().unshare(flags), "unshare")


# -- Landlock ----------------------------------------------------------------------------------
_FS_EXECUTE, _FS_WRITE_FILE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
_FS_V1_ALL = (1 << 13) - 1
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1, 2
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1, 2
_RULE_PATH_BENEATH = 1


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = (("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))


class _RulesetAttr(ctypes.Structure):
    _fields_ = (("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64))


def landlock_abi() -> int:
    if sys.platform != "linux":
        return 0
    ret = _libc().syscall(_SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(ret, 0)


def _landlock_fs_rights(abi: int) -> int:
    rights = _FS_V1_ALL
    if abi >= 2:
        rights |= _FS_REFER
    if abi >= 3:
        rights |= _FS_TRUNCATE
    if abi >= 5:
        rights |= _FS_IOCTL_DEV
    return rights


def readable_trees() -> tuple[str, ...]:
    """Directories a session may read: the interpreter, its libraries, the system libraries."""
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, "/usr/lib", "/usr/lib64", "/lib",
             "/lib64", "/usr/share/zoneinfo"}
    for key in ("stdlib", "platstdlib", "purelib", "platlib"):
        paths.add(sysconfig.get_paths()[key])
    for name in ("sympy", "numpy", "mpmath", "RestrictedPython"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            paths.add(str(Path(module.__file__).parent.parent))
    return tuple(sorted(p for p in paths if p and os.path.isdir(p)))


def apply_landlock(workdir: str, abi: int, trees: tuple[str, ...]) -> str:
    """Restrict this process: read-only trees, full access to `workdir`, no TCP, no signals out."""
    libc = _libc()
    fs_rights = _landlock_fs_rights(abi)
    attr = _RulesetAttr(fs_rights, _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0,
                        _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0)
    size = 24 if abi >= 6 else 16 if abi >= 4 else 8
    ruleset = _check(libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr),
                                  ctypes.c_size_t(size), ctypes.c_uint32(0)), "landlock_create_ruleset")
    try:
        rules = [(path, _FS_READ_FILE | _FS_READ_DIR | _FS_EXECUTE) for path in trees]
        rules.append((workdir, fs_rights))
        for path, rights in rules:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            try:
                rule = _PathBeneath(rights, fd)
                _check(libc.syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, _RULE_PATH_BENEATH,
                                    ctypes.byref(rule), ctypes.c_uint32(0)), f"landlock_add_rule {path}")
            finally:
                os.close(fd)
        _check(libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0)),
               "landlock_restrict_self")
    finally:
        os.close(ruleset)
    scope = ", tcp denied" if abi >= 4 else ""
    scope += ", signals scoped" if abi >= 6 else ""
    return f"ABI {abi}: read-only {len(rules) - 1} trees, read-write work dir{scope}"


# -- seccomp -----------------------------------------------------------------------------------
DENIED_SYSCALLS = (
    # processes and threads
    "fork", "vfork", "clone", "clone3", "execve", "execveat",
    # signals to others, tracing, other processes' memory
    "kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open",
    "pidfd_send_signal", "pidfd_getfd", "ptrace", "process_vm_readv", "process_vm_writev",
    "process_madvise", "kcmp",
    # network
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    # mounts, namespaces, roots
    "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "move_mount", "open_tree",
    "fsopen", "fsmount", "fsconfig", "fspick", "mount_setattr",
    # identity and limits
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups",
    "setfsuid", "setfsgid", "setsid", "setpgid", "setrlimit", "setpriority", "capset",
    # kernel surfaces nobody's arithmetic needs
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "personality", "reboot",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "swapon",
    "swapoff", "acct", "syslog", "quotactl", "iopl", "ioperm", "uselib", "sethostname",
    "setdomainname", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    "name_to_handle_at", "open_by_handle_at", "mknod", "mknodat", "vhangup", "lookup_dcookie",
    "fanotify_init", "inotify_init", "inotify_init1", "memfd_secret", "ioprio_set",
    # real-time scheduling and locked memory (root would bypass the rlimits)
    "sched_setscheduler", "sched_setattr", "sched_setparam", "mlock", "mlock2", "mlockall",
    # System V / POSIX IPC objects outlive their creator
    "shmget", "shmat", "shmctl", "semget", "semop", "semtimedop", "semctl", "msgget", "msgsnd",
    "msgrcv", "msgctl", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedreceive", "mq_notify",
    "mq_getsetattr",
    "modify_ldt", "move_pages", "migrate_pages",
    # timers that run a signal handler between cells, outside any deadline
    "alarm", "setitimer", "timer_create",
    # anonymous files: memory neither RLIMIT_AS nor a work-dir quota sees
    "memfd_create",
    # metadata changes Landlock does not mediate (times, xattrs, modes, owners): a
    # world-writable file anywhere would otherwise get a new mtime or an xattr, and an
    # unprivileged user's own files (a venv opened read-only) a new mode
    "utime", "utimes", "futimesat", "utimensat", "setxattr", "lsetxattr", "fsetxattr",
    "removexattr", "lremovexattr", "fremovexattr", "chmod", "fchmod", "fchmodat", "chown",
    "lchown", "fchown", "fchownat",
    # whole-system writeback on demand (an I/O storm for every other tenant)
    "sync",
)
# Syscalls newer than the libseccomp on these hosts knows by name (the same numbers on x86-64
# and arm64): fchmodat2, statmount and listmount (the host's mount table), setxattrat,
# removexattrat, open_tree_attr, file_setattr.
_NEW_DENIED = (452, 457, 458, 463, 466, 467, 469)
DENIED_SYSCALL_NUMBERS = {"x86_64": _NEW_DENIED, "aarch64": _NEW_DENIED}
# fcntl commands that make the kernel signal another process (SIGIO/SIGURG to an owner).
DENIED_FCNTL = (8, 10, 15)  # F_SETOWN, F_SETSIG, F_SETOWN_EX
# ioctl commands: TIOCSTI pushes input into a terminal; FIOSETOWN/SIOCSPGRP are F_SETOWN;
# FS_IOC_SETFLAGS (64/32-bit) and FS_IOC_FSSETXATTR change inode flags of a file opened read-only.
DENIED_IOCTL = (0x5412, 0x8901, 0x8902, 0x40086602, 0x40046602, 0x401C5820)
# prctl options: PR_SET_PDEATHSIG (clearing it lets a session outlive a killed driver).
DENIED_PRCTL = (1,)
# The kernel reads these commands as 32-bit ints: compare only the low 32 bits, or
# `(1 << 32) | F_SETOWN` would pass the filter and still be F_SETOWN.
_LOW_32 = 0xFFFFFFFF


def _seccomp_binding():
    """pyseccomp (PyPI, ctypes) or libseccomp's own `seccomp` module (Debian python3-seccomp)."""
    try:
        import pyseccomp as binding
    except ImportError:
        import seccomp as binding
    return binding


def build_seccomp_filter():
    """A libseccomp filter (built once in the driver, loaded in each session)."""
    pyseccomp = _seccomp_binding()
    filt = pyseccomp.SyscallFilter(defaction=pyseccomp.ALLOW)
    deny = pyseccomp.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        try:
            filt.add_rule(deny, name)
        except (OSError, ValueError, RuntimeError):
            continue  # not a syscall on this architecture
    import platform

    for number in DENIED_SYSCALL_NUMBERS.get(platform.machine(), ()):
        filt.add_rule(deny, number)
    # prlimit64 may read limits (getrlimit) but never set them.
    filt.add_rule(deny, "prlimit64", pyseccomp.Arg(2, pyseccomp.NE, 0))
    for syscall, arg, commands in (("ioctl", 1, DENIED_IOCTL), ("fcntl", 1, DENIED_FCNTL),
                                   ("prctl", 0, DENIED_PRCTL)):
        for command in commands:
            filt.add_rule(deny, syscall, pyseccomp.Arg(arg, pyseccomp.MASKED_EQ, _LOW_32, command))
    return filt


class _SockFprog(ctypes.Structure):
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2


def export_seccomp_program(filt) -> bytes:
    """The filter as raw BPF (compiled once in the driver; each session only loads it)."""
    import tempfile

    with tempfile.TemporaryFile() as handle:
        filt.export_bpf(handle)
        handle.seek(0)
        return handle.read()


class SeccompProgram:
    """A BPF program prepared once in the driver: the buffer and `sock_fprog` are built before
    any fork, so a session only makes the one prctl call that installs it."""

    def __init__(self, program: bytes) -> None:
        self.program = bytes(program)
        self._buffer = ctypes.create_string_buffer(self.program, len(self.program))
        self._fprog = _SockFprog(len(self.program) // 8, ctypes.cast(self._buffer, ctypes.c_void_p))

    def __len__(self) -> int:
        return len(self.program)

    def load(self) -> None:
        """Install the filter on this process (no-new-privs must be set)."""
        _check(_libc().prctl(_PR_SET_SECCOMP, ctypes.c_ulong(_SECCOMP_MODE_FILTER),
                             ctypes.byref(self._fprog), 0, 0), "prctl(PR_SET_SECCOMP)")


def load_seccomp_program(program: bytes | SeccompProgram) -> None:
    """Install a BPF program (no-new-privs must be set): prctl(PR_SET_SECCOMP, FILTER)."""
    (program if isinstance(program, SeccompProgram) else SeccompProgram(program)).load()


# -- cgroups -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CgroupDirs:
    """Per-driver parent cgroup directories (`memory` and `pids`; the same dir on v2)."""

    version: int
    memory: str
    pids: str


def _own_cgroup_paths() -> dict[str, str]:
    paths = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else ["unified"]:
            paths[controller] = path
    return paths


def create_driver_cgroups(root: str = "/sys/fs/cgroup") -> tuple[CgroupDirs | None, str]:
    """Make this driver's parent cgroups; (None, reason) where not possible."""
    name = f"qwen-sandbox-{os.getpid()}"
    try:
        own = _own_cgroup_paths()
        if os.path.exists(f"{root}/cgroup.controllers"):
            parent = f"{root}{own.get('unified', '/')}".rstrip("/")
            base = f"{parent}/{name}"
            os.mkdir(base)
            Path(f"{base}/cgroup.subtree_control").write_text("+memory +pids")
            return CgroupDirs(2, base, base), f"cgroup v2 at {base}"
        memory = f"{root}/memory{own.get('memory', '/')}".rstrip("/") + f"/{name}"
        pids = f"{root}/pids{own.get('pids', '/')}".rstrip("/") + f"/{name}"
        os.mkdir(memory)
        try:
            os.mkdir(pids)
        except OSError:
            os.rmdir(memory)
            raise
        return CgroupDirs(1, memory, pids), f"cgroup v1 at {memory} and {pids}"
    except (OSError, ValueError, KeyError) as exc:
        return None, f"unavailable ({exc.__class__.__name__}: {exc})"


def _session_cgroup_paths(dirs: CgroupDirs, slot: int) -> tuple[str, str]:
    return f"{dirs.memory}/s{slot}", f"{dirs.pids}/s{slot}"


def prepare_session_cgroup(dirs: CgroupDirs, slot: int, memory_bytes: int, max_pids: int) -> int:
    """Driver side, before the fork: make (or reuse) cgroup slot `slot` with these limits.

    Slots are recycled: a reaped session's empty cgroup is the next session's, so no session
    pays for mkdir/rmdir. Returns the slot's memory-limit event count now: the counters cannot
    be reset, so an OOM is a count above the one the session started with.
    """
    memory, pids = _session_cgroup_paths(dirs, slot)
    for path in {memory, pids}:
        with contextlib.suppress(FileExistsError):
            os.mkdir(path)
    set_session_memory_limit(dirs, slot, memory_bytes)
    if dirs.version == 2:
        if os.path.exists(f"{memory}/memory.swap.max"):
            _write_if_changed(f"{memory}/memory.swap.max", "0")
        _write_if_changed(f"{memory}/pids.max", str(max_pids))
    else:
        _write_if_changed(f"{pids}/pids.max", str(max_pids))
    return memory_limit_events(dirs, slot)


def set_session_memory_limit(dirs: CgroupDirs, slot: int, memory_bytes: int) -> None:
    """The slot's memory limit (v1 also its memory+swap limit, so swap adds nothing)."""
    memory, _ = _session_cgroup_paths(dirs, slot)
    if dirs.version == 2:
        _write_if_changed(f"{memory}/memory.max", str(memory_bytes))
    elif os.path.exists(f"{memory}/memory.memsw.limit_in_bytes"):
        _set_v1_memory_limits(memory, memory_bytes)
    else:
        _write_if_changed(f"{memory}/memory.limit_in_bytes", str(memory_bytes))


def _write_if_changed(path: str, value: str) -> None:
    try:
        current = Path(path).read_text().strip()
    except OSError:
        current = None
    if current != value:
        Path(path).write_text(value)


def _set_v1_memory_limits(memory: str, memory_bytes: int) -> None:
    """memsw must stay >= the memory limit: lower memory first, raise memsw first."""
    current = _counter(f"{memory}/memory.limit_in_bytes")
    order = ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
    for name in order if memory_bytes < current else reversed(order):
        _write_if_changed(f"{memory}/{name}", str(memory_bytes))


def join_session_cgroup(dirs: CgroupDirs, slot: int, memory_bytes: int, max_pids: int) -> str:
    """Session side: move this process into its prepared cgroup slot (limits already set)."""
    memory, pids = _session_cgroup_paths(dirs, slot)
    me = str(os.getpid())
    for path in sorted({memory, pids}):
        Path(f"{path}/cgroup.procs").write_text(me)
    if _cgroup_procs(memory) != [os.getpid()]:
        raise OSError(errno.EBUSY, f"cgroup slot s{slot} is not this session's alone")
    kind = "v2 memory.max" if dirs.version == 2 else "v1 memory.limit_in_bytes"
    return f"{kind}={memory_bytes}, pids.max={max_pids} (slot s{slot}: recycled, held by this session alone)"


def _cgroup_procs(path: str) -> list[int]:
    try:
        return [int(p) for p in Path(f"{path}/cgroup.procs").read_text().split()]
    except OSError:
        return []


def kill_cgroup(path: str) -> None:
    """SIGKILL every process listed in the cgroup directory `path`."""
    for pid in _cgroup_procs(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_session_cgroup(dirs: CgroupDirs, sid: int) -> None:
    """SIGKILL every process left in the session's cgroups (escapees of its process group)."""
    for path in set(_session_cgroup_paths(dirs, sid)):
        kill_cgroup(path)


def _counter(path: str, key: str | None = None) -> int:
    """An integer from a cgroup file: the whole file, or the `key value` line named `key`."""
    try:
        text = Path(path).read_text()
    except OSError:
        return 0
    if key is None:
        return int(text.strip() or 0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return 0


def memory_limit_events(dirs: CgroupDirs, slot: int) -> int:
    """How often the slot's memory limit was hit or its OOM killer ran (monotonic counters)."""
    memory, _ = _session_cgroup_paths(dirs, slot)
    if dirs.version == 2:
        return _counter(f"{memory}/memory.events", "oom_kill") + _counter(f"{memory}/memory.events", "max")
    return (_counter(f"{memory}/memory.failcnt") + _counter(f"{memory}/memory.memsw.failcnt")
            + _counter(f"{memory}/memory.oom_control", "oom_kill"))


def session_cgroup_empty(dirs: CgroupDirs, slot: int) -> bool:
    return not any(_cgroup_procs(path) for path in set(_session_cgroup_paths(dirs, slot)))


def remove_session_cgroup(dirs: CgroupDirs, sid: int) -> None:
    for path in set(_session_cgroup_paths(dirs, sid)):
        for _ in range(50):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:
                kill_session_cgroup(dirs, sid)
                os.sched_yield()


def remove_driver_cgroups(dirs: CgroupDirs) -> None:
    for path in {dirs.memory, dirs.pids}:
        try:
            os.rmdir(path)
        except OSError:
            pass


# -- uid drop ----------------------------------------------------------------------------------
def _world_traversable(path: str) -> bool:
    """True when every directory up to `path` lets "other" users in (and `path` readable)."""
    current = Path(path).resolve()
    for part in [current, *current.parents]:
        mode = part.stat().st_mode
        if not mode & 0o001:
            return False
    return bool(current.stat().st_mode & 0o004)


def uid_drop_possible(landlock: bool) -> tuple[bool, str, bool]:
    """(possible, detail, keep CAP_DAC_READ_SEARCH).

    When the interpreter lives where uid 65534 cannot read it (pyenv under /root), the session
    keeps exactly one capability, CAP_DAC_READ_SEARCH, so it can still load modules lazily;
    that is only allowed with Landlock, which confines every read to the allowed trees.
    """
    if os.geteuid() != 0:
        return False, "not root (already unprivileged)", False
    blocked = [tree for tree in readable_trees() if not _world_traversable(tree)]
    if not blocked:
        return True, f"uid/gid {NOBODY}, no capabilities", False
    if landlock:
        return True, (f"uid/gid {NOBODY}, only CAP_DAC_READ_SEARCH kept ({blocked[0]} is not "
                      "world-readable; reads confined by Landlock)"), True
    return False, f"the interpreter tree {blocked[0]} is not readable by uid {NOBODY}", False


_PR_SET_KEEPCAPS = 8
_CAP_DAC_READ_SEARCH = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32))


def _set_capabilities(mask: int) -> None:
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)(_CapData(mask & 0xFFFFFFFF, mask & 0xFFFFFFFF, 0),
                          _CapData(mask >> 32, mask >> 32, 0))
    _check(_libc().capset(ctypes.byref(header), data), "capset")


def drop_uid(keep_read_search: bool = False) -> None:
    if keep_read_search:
        prctl(_PR_SET_KEEPCAPS, 1)
    os.setgroups([])
    os.setresgid(NOBODY, NOBODY, NOBODY)
    os.setresuid(NOBODY, NOBODY, NOBODY)
    if keep_read_search:
        _set_capabilities(1 << _CAP_DAC_READ_SEARCH)
        prctl(_PR_SET_KEEPCAPS, 0)
    if os.getresuid() != (NOBODY, NOBODY, NOBODY):
        raise OSError(errno.EPERM, "uid drop did not take effect")


# -- namespaces: network, and mount for a size-capped work dir ----------------------------------
_CLONE_NEWNS = 0x00020000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_REC, _MS_PRIVATE = 1, 2, 4, 8, 1 << 14, 1 << 18


def _mount(source: bytes | None, target: str, fstype: bytes | None, flags: int,
           data: bytes | None) -> None:
    libc = _libc()
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_char_p]
    _check(libc.mount(source, target.encode(), fstype, flags, data), f"mount {target}")


def enter_namespaces(*, mount: bool, net: bool = True, user: bool | None = None) -> str:
    """New, empty network + IPC + UTS namespaces (`net`) and/or a private mount namespace.

    Root unshares directly; other users get a user namespace mapping only themselves (`user`
    defaults to "not root"; a session already in its driver's user namespace passes False).
    """
    flags = (_CLONE_NEWNET | _CLONE_NEWIPC | _CLONE_NEWUTS if net else 0) | (_CLONE_NEWNS if mount else 0)
    if user is None:
        user = os.geteuid() != 0
    if not user:
        unshare(flags)
    else:
        uid, gid = os.geteuid(), os.getegid()
        prctl(PR_SET_DUMPABLE, 1)  # the driver is not dumpable: /proc/self/uid_map would be root's
        try:
            unshare(_CLONE_NEWUSER | flags)
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
            Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
        finally:
            prctl(PR_SET_DUMPABLE, 0)
    if mount:
        _mount(None, "/", None, _MS_REC | _MS_PRIVATE, None)  # nothing propagates to the host
    kinds = (["user"] if user else []) + (["network", "IPC", "UTS"] if net else []) + (["mount"] if mount else [])
    return f"new {' + '.join(kinds)} namespace{'s' if len(kinds) > 1 else ''}" + (" (no interfaces up)" if net else "")


@dataclasses.dataclass(frozen=True)
class SharedNamespaces:
    """The empty network + IPC + UTS namespaces the driver enters once, before any session.

    Every session of this driver lives in them (no interfaces but a down loopback, so there is
    no network at all; sockets, SysV/POSIX IPC and hostnames are refused by seccomp on top); each
    session still gets its own mount namespace (private work-dir tmpfs, /proc covered).
    `user_ns`: the driver is unprivileged and made a user namespace mapping only itself;
    sessions then drop the capabilities they inherit in it.
    """

    active: bool
    detail: str
    user_ns: bool = False


def enter_shared_namespaces(net_available: bool) -> SharedNamespaces:
    """Driver side, once: move the driver into empty network + IPC + UTS namespaces."""
    if not net_available:
        return SharedNamespaces(False, "unshare(CLONE_NEWNET) refused on this host")
    user = os.geteuid() != 0
    try:
        detail = enter_namespaces(mount=False, net=True, user=user)
    except OSError as exc:
        return SharedNamespaces(False, f"{exc.__class__.__name__}: {exc}")
    return SharedNamespaces(True, f"{detail}, made once by the driver", user)


def drop_capabilities() -> str:
    """Clear every capability this process holds (those a user namespace granted)."""
    _set_capabilities(0)
    return "no capabilities (those of the driver's user namespace dropped)"


def warm_syscall_wrappers() -> None:
    """Resolve the libc symbols sessions call (ctypes caches them) before any fork."""
    libc = _libc()
    for name in ("prctl", "unshare", "mount", "syscall", "capset"):
        getattr(libc, name)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_char_p]


def mount_workdir_tmpfs(path: str, size_mb: int, inodes: int = 4096) -> str:
    """Cover the work dir with a private tmpfs: disk use capped (and charged as memory)."""
    options = f"size={size_mb}m,nr_inodes={inodes},mode=0700".encode()
    _mount(b"tmpfs", path, b"tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, options)
    os.chdir(path)
    return f"private tmpfs, {size_mb} MiB, {inodes} inodes, nosuid/nodev/noexec"


def hide_proc() -> str:
    """Cover /proc with an empty read-only tmpfs: no other process's environ, cmdline or mem."""
    _mount(b"tmpfs", "/proc", b"tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC | _MS_RDONLY,
           b"size=4k,nr_inodes=1,mode=0555")
    return "/proc covered by an empty read-only tmpfs"


def _probe_namespaces_child(scratch: str) -> int:
    try:
        enter_namespaces(mount=True)
        mount_workdir_tmpfs(scratch, 1)
        return 0
    except OSError:
        pass
    try:
        enter_namespaces(mount=False)
        return 2
    except OSError:
        return 1


def probe_namespaces() -> tuple[tuple[bool, str], tuple[bool, str]]:
    """(network, mount) availability, tried in a throw-away child (unshare is irrevocable)."""
    if sys.platform != "linux":
        return (False, "not Linux"), (False, "not Linux")
    import tempfile

    scratch = tempfile.mkdtemp(prefix="qwen-sandbox-probe-")
    try:
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = _probe_namespaces_child(scratch)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        os.rmdir(scratch)
    code = os.waitstatus_to_exitcode(status)
    net = (code in (0, 2), "unshare(CLONE_NEWNET) works" if code in (0, 2) else "unshare(CLONE_NEWNET) refused")
    mnt = (code == 0, "mount namespace + tmpfs work" if code == 0 else "mount namespace or tmpfs refused")
    return net, mnt


# -- fork cost ---------------------------------------------------------------------------------
_MADV_HUGEPAGE, _MADV_COLLAPSE = 14, 25
_HUGE = 2 << 20


def collapse_heap_to_huge_pages() -> int:
    """Driver side, once, before any fork: back its anonymous heap with 2 MiB pages.

    Every session is a fork of the driver; a fork copies one page-table entry per populated
    4 KiB page and an exit tears them down again, so a heap in huge pages makes both cheaper
    (a session's first write to a huge page splits just that one). MADV_COLLAPSE (Linux 6.1+)
    works whatever the system-wide THP mode says except "never"; where it is refused nothing
    changes. Returns the bytes now in huge pages (0 when none).
    """
    if sys.platform != "linux":
        return 0
    libc = _libc()
    madvise = libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    collapsed = 0
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split()
        if not fields[1].startswith("rw") or (len(fields) > 5 and fields[5] != "[heap]"):
            continue  # only private anonymous memory and the brk heap
        low, high = (int(x, 16) for x in fields[0].split("-"))
        start, end = (low + _HUGE - 1) // _HUGE * _HUGE, high // _HUGE * _HUGE
        if end <= start or madvise(start, end - start, _MADV_HUGEPAGE) != 0:
            continue
        for huge in range(start, end, _HUGE):  # one at a time: a refused one keeps the others
            if madvise(huge, _HUGE, _MADV_COLLAPSE) == 0:
                collapsed += _HUGE
    return collapsed


# -- rlimits -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Limits:
    """Per-session resource limits."""

    memory_mb: int = 1024
    cpu_s: int = 60
    file_mb: int = 64
    open_files: int = 64


def _vm_size_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def apply_rlimits(limits: Limits) -> str:
    address_space = _vm_size_bytes() + limits.memory_mb * 2**20
    table = {
        resource.RLIMIT_AS: address_space,
        resource.RLIMIT_CPU: limits.cpu_s,
        resource.RLIMIT_FSIZE: limits.file_mb * 2**20,
        resource.RLIMIT_NOFILE: limits.open_files,
        resource.RLIMIT_CORE: 0,
        resource.RLIMIT_MEMLOCK: 0,
        resource.RLIMIT_MSGQUEUE: 0,
    }
    if os.geteuid() != 0:
        table[resource.RLIMIT_NPROC] = 0  # binds only non-root users
    for which, value in table.items():
        resource.setrlimit(which, (value, value))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an oversized write becomes OSError(EFBIG)
    return (f"AS={address_space // 2**20} MiB (+{limits.memory_mb}), CPU={limits.cpu_s} s, "
            f"FSIZE={limits.file_mb} MiB, NOFILE={limits.open_files}, CORE=0"
            + ("" if os.geteuid() == 0 else ", NPROC=0"))


# -- host probe --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class HostProbe:
    """What the driver found at start-up (sessions re-check each layer as they apply it)."""

    landlock_abi: int
    readable_trees: tuple[str, ...]
    net_namespace: tuple[bool, str]
    mount_namespace: tuple[bool, str]
    cgroups: CgroupDirs | None
    cgroups_detail: str
    uid_drop: tuple[bool, str, bool]
    seccomp: tuple[bool, str]

    def as_dict(self) -> dict:
        return {
            "landlock": {"active": self.landlock_abi > 0, "detail": f"ABI {self.landlock_abi}"
                         if self.landlock_abi else "kernel has no Landlock"},
            "net_namespace": {"active": self.net_namespace[0], "detail": self.net_namespace[1]},
            "mount_namespace": {"active": self.mount_namespace[0], "detail": self.mount_namespace[1]},
            "cgroups": {"active": self.cgroups is not None, "detail": self.cgroups_detail},
            "uid_drop": {"active": self.uid_drop[0], "detail": self.uid_drop[1]},
            "seccomp": {"active": self.seccomp[0], "detail": self.seccomp[1]},
        }


def probe_seccomp() -> tuple[bytes | None, tuple[bool, str]]:
    try:
        program = export_seccomp_program(build_seccomp_filter())
    except (ImportError, OSError, RuntimeError, ValueError) as exc:
        return None, (False, f"unavailable ({exc.__class__.__name__}: {exc})")
    detail = (f"BPF from libseccomp ({len(program) // 8} instructions): "
              f"{len(DENIED_SYSCALLS)} syscalls -> EPERM")
    return program, (True, detail)


def probe_host():
    """Probe every layer once; returns (HostProbe, seccomp BPF program or None)."""
    filt, seccomp = probe_seccomp()
    cgroups, cg_detail = create_driver_cgroups()
    abi = landlock_abi()
    return HostProbe(abi, readable_trees(), *probe_namespaces(), cgroups, cg_detail,
                     uid_drop_possible(abi > 0), seccomp), filt
