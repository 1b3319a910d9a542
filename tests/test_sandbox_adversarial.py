"""Adversarial suite: each attack is contained, and the service stays intact after it.

One property per test: "this attack is contained". For every row the test checks the status
(and, where it matters, the layer that stopped it), then that the sandbox still answers
`print(6*7)` with 42 in a new session, that no process of the attack survives, that no file
outside the work dir changed (a victim directory and a canary path), and that a secret in the
caller's environment never shows up. Attacks that need the real builtins go through
`sympify("...")`, which evaluates its string with them: the policy layer is bypassed on
purpose, so those rows test the OS layer alone. Safe to run as root and as a normal user.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from sandbox import SandboxPool

SECRET = "qwen-sandbox-test-secret-5b1e"
ATTACK_TIMEOUT = 1.0
DEADLINE_MARGIN = 1.5


def escape(expression: str) -> str:
    """Code that evaluates `expression` with the real builtins (bypassing the policy layer)."""
    return f"from sympy import sympify\nprint(sympify({expression!r}))"


def raw(statements: str) -> str:
    """Run statements with the real builtins: exec inside sympify's eval."""
    return escape(f"exec({statements!r}, {{}}) or 0")


ANY_STOP = {"error", "blocked", "ok"}

ATTACKS = [
    # -- CPU: Python loops, C loops, sleeping, swallowing every exception
    pytest.param("while True: pass", {"timeout"}, id="busy-loop"),
    pytest.param("sum(range(10**13))", {"timeout"}, id="c-level-sum"),
    pytest.param("import itertools\nfor _ in itertools.count(): pass", {"timeout"}, id="itertools-count"),
    pytest.param("import time\ntime.sleep(100)", {"timeout"}, id="sleep"),
    pytest.param("while True:\n    try:\n        while True: pass\n    except BaseException:\n        pass",
                 {"timeout"}, id="swallow-base-exception"),
    pytest.param("class E(Exception):\n    def __str__(self):\n        while True: pass\nraise E()",
                 {"timeout"}, id="hostile-exception-str"),
    pytest.param(raw("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: pass"),
                 {"timeout"}, id="ignore-sigterm-then-loop"),
    # -- memory
    pytest.param("x = [0] * (10**10)", {"memory_error"}, id="list-bomb"),
    pytest.param("x = []\nwhile True:\n    x.append(bytearray(10**7))", {"memory_error", "timeout"},
                 id="growing-list"),
    pytest.param("x = 10**10**10", {"memory_error", "timeout"}, id="power-tower"),
    pytest.param("x = bytearray(10**11)", {"memory_error"}, id="bytearray"),
    pytest.param("s = 'a' * 10**11", {"memory_error"}, id="string-repeat"),
    pytest.param(raw("import mmap\nm = mmap.mmap(-1, 10**11)"), {"memory_error"}, id="mmap"),
    # -- processes
    pytest.param("import os\nos.system('id')", {"blocked"}, id="os-system-import"),
    pytest.param("import subprocess\nsubprocess.run(['id'])", {"blocked"}, id="subprocess-import"),
    pytest.param(escape("__import__('os').fork()"), {"error"}, id="fork"),
    pytest.param(raw("import os\nwhile True: os.fork()"), {"error"}, id="fork-bomb"),
    pytest.param(raw("import subprocess\nsubprocess.run(['touch', 'VICTIM/spawned'])"), {"error"}, id="subprocess"),
    pytest.param(raw("import os\nos.posix_spawn('/bin/touch', ['touch', 'VICTIM/spawned'], {})"), {"error"}, id="posix-spawn"),
    pytest.param(raw("import pty\npty.spawn('/bin/sh')"), {"error"}, id="pty"),
    pytest.param(raw("import os\nos.execv('/bin/sh', ['sh', '-c', 'touch VICTIM/spawned'])"), {"error"}, id="execv"),
    pytest.param(raw("import multiprocessing\nmultiprocessing.Process(target=print).start()"), {"error"}, id="multiprocessing"),
    pytest.param(raw("import threading, time\nthreading.Thread(target=time.sleep, args=(60,)).start()"),
                 {"error"}, id="thread-outliving-cell"),
    pytest.param(raw("import os\nos.setsid()"), {"error"}, id="setsid-escape"),
    # -- files: reading secrets, writing outside the work dir
    pytest.param("print(open('/etc/passwd').read())", {"blocked"}, id="read-passwd-policy"),
    pytest.param(escape("open('/etc/passwd').read()"), {"error"}, id="read-passwd-raw"),
    pytest.param(escape("open('/proc/1/environ').read()"), {"error"}, id="read-init-environ"),
    pytest.param(escape("open('/proc/%d/environ' % __import__('os').getppid()).read()"), {"error"},
                 id="read-driver-environ"),
    pytest.param(escape("open('/proc/%d/mem' % __import__('os').getppid(), 'wb')"), {"error"},
                 id="write-driver-memory"),
    pytest.param(escape("__import__('os').environ.get('QWEN_SANDBOX_TEST_SECRET', 'absent')"), {"ok"},
                 id="environment-secret"),
    pytest.param("open('VICTIM/file.txt', 'w').write('pwned')", {"blocked"}, id="write-victim-policy"),
    pytest.param(escape("open('VICTIM/file.txt', 'w').write('pwned')"), {"error"}, id="write-victim-raw"),
    pytest.param(raw("import os\nos.symlink('VICTIM/file.txt', 'link')\nopen('link', 'w').write('x')"),
                 {"error"}, id="symlink-out"),
    pytest.param(raw("import os\nos.remove('VICTIM/file.txt')"), {"error"}, id="delete-victim"),
    pytest.param(raw("import os\nos.chdir('/')\nopen('VICTIM/new.txt', 'w')"), {"error"}, id="chdir-then-write"),
    pytest.param(raw("import os\nos.listdir('/root')"), {"error"}, id="list-home"),
    pytest.param(raw("import os\nprint(os.listdir('..'))"), {"error"}, id="list-other-sessions"),
    pytest.param(raw("for i in range(1000):\n    open(f'f{i}', 'w').write('x' * 10**6)"), {"error", "timeout"}, id="fill-disk"),
    pytest.param(raw("import os\nos.nice(-10)"), {"error"}, id="raise-priority"),
    # -- network
    pytest.param("import socket", {"blocked"}, id="socket-import"),
    pytest.param(raw("import socket\ns = socket.socket()\ns.connect(('127.0.0.1', PORT))"), {"error"}, id="tcp-connect"),
    pytest.param(raw("import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('127.0.0.1', PORT))"),
                 {"error"}, id="udp-send"),
    pytest.param(raw("import urllib.request\nurllib.request.urlopen('http://127.0.0.1:PORT')"), {"error"}, id="urllib"),
    # -- import tricks
    pytest.param("__import__('os').system('id')", {"blocked"}, id="dunder-import"),
    pytest.param("import importlib\nimportlib.import_module('os')", {"blocked"}, id="importlib"),
    pytest.param("import sys\nsys.modules['os'].system('id')", {"blocked"}, id="sys-modules"),
    pytest.param("import builtins\nbuiltins.open('/etc/passwd')", {"blocked"}, id="builtins-module"),
    pytest.param("__builtins__['open']('/etc/passwd')", {"blocked"}, id="builtins-dict"),
    pytest.param("from numpy import ctypeslib", {"blocked"}, id="numpy-ctypeslib"),
    pytest.param("import sympy\nsympy.utilities.misc.os.system('id')", {"blocked"}, id="module-through-attribute"),
    pytest.param("from . import x", {"blocked"}, id="relative-import"),
    pytest.param("import numpy.f2py", {"blocked"}, id="numpy-f2py"),
    pytest.param(escape("__import__('os').system('touch VICTIM/spawned')"), {"ok", "error"}, id="sympify-os-system"),
    # -- introspection escapes
    pytest.param("().__class__.__base__.__subclasses__()", {"blocked"}, id="subclasses"),
    pytest.param("c = getattr((), '__cla' + 'ss__')\ngetattr(c, '__ba' + 'se__').__subclasses__()", {"blocked"},
                 id="dynamic-getattr"),
    pytest.param("def f(): pass\nf.__globals__['__builtins__']", {"blocked"}, id="function-globals"),
    pytest.param("g = (i for i in [1])\ng.gi_frame.f_globals", {"blocked"}, id="generator-frame"),
    pytest.param("try:\n    1/0\nexcept Exception as e:\n    e.__traceback__.tb_frame.f_globals", {"blocked"},
                 id="traceback-frame"),
    pytest.param("print('{0.__class__.__base__.__subclasses__}'.format(1))", {"blocked"}, id="format-traversal"),
    pytest.param("print(str.format('{0.__globals__}', lambda: 0))", {"blocked"}, id="format-unbound"),
    pytest.param("print('{0.__init__.__globals__}'.format_map({'0': 1}))", {"blocked", "error"}, id="format-map"),
    pytest.param("type.__subclasses__(object)", {"blocked"}, id="type-subclasses"),
    pytest.param("object.__getattribute__(print, '__self__')", {"blocked"}, id="getattribute"),
    pytest.param("print(globals())", {"error"}, id="globals-missing"),
    pytest.param("_getattr_ = getattr", {"blocked"}, id="rebind-guard"),
    pytest.param("class M(type): pass\nclass A(metaclass=M): pass", {"blocked"}, id="metaclass"),
    # -- signals and rlimits
    pytest.param("import signal", {"blocked"}, id="signal-import"),
    pytest.param(escape("__import__('os').kill(__import__('os').getppid(), 9)"), {"error"}, id="kill-driver"),
    pytest.param(escape("__import__('os').killpg(0, 9)"), {"error"}, id="kill-own-group"),
    pytest.param(escape("__import__('os').kill(1, 9)"), {"error"}, id="kill-init"),
    pytest.param(raw("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (10**6, 10**6))"), {"error"},
                 id="raise-rlimit"),
    pytest.param(raw("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))\nx = bytearray(10**11)"),
                 {"error"}, id="raise-memory-rlimit"),
    pytest.param(raw("import ctypes\nctypes.CDLL(None).prctl(38, 0, 0, 0, 0)\nimport os\nos.fork()"), {"error"},
                 id="prctl-then-fork"),
    # -- output floods and odd bytes
    pytest.param("print('x' * 10**8)", {"output_truncated"}, id="huge-print"),
    pytest.param("while True:\n    print('a' * 1000)", {"output_truncated"}, id="print-loop"),
    pytest.param(raw("import os\nos.write(1, b'x' * 10**7)"), {"output_truncated"}, id="raw-os-write"),
    pytest.param(raw("import os\nos.write(1, b'\\xff\\xfe\\x00bad utf-8')"), {"ok"}, id="invalid-utf8"),
    pytest.param("print('\\x00\\ud800\\udfff')", {"ok"}, id="nul-and-surrogates"),
    pytest.param("raise ValueError('x' * 10**7)", {"error"}, id="huge-error-message"),
    # -- the control channel: forged, oversized or redirected replies
    pytest.param(raw("import os\nos.write(3, b'{\"status\": \"ok\", \"seq\": 99}\\n')"), {"crashed"}, id="forged-reply"),
    pytest.param(raw("import os\nos.write(3, b'x' * 3 * 2**20)"), {"crashed"}, id="oversized-reply"),
    pytest.param(raw("import os\nos.dup2(3, 1)\nprint('{}')"), {"crashed"}, id="stdout-into-control"),
    pytest.param(raw("import os\nos.close(3)"), {"crashed"}, id="close-control"),
    pytest.param("import sys\nsys.stdout.close()", {"ok"}, id="close-stdout"),
    # -- recursion
    pytest.param("def f(n):\n    return f(n + 1)\nf(0)", {"error"}, id="deep-recursion"),
    pytest.param("import sys\nsys.setrecursionlimit(10**9)\ndef f(n):\n    return f(n + 1)\nf(0)",
                 {"error"}, id="recursion-limit-raised"),
    pytest.param(raw("import sys\nsys.setrecursionlimit(10**9)\ndef f(n):\n    return f(n + 1)\nf(0)"),
                 {"crashed", "error", "timeout", "memory_error"}, id="c-stack-overflow"),
    # -- exits
    pytest.param(escape("__import__('os')._exit(0)"), {"crashed"}, id="os-exit"),
    pytest.param("import sys\nsys.exit(0)", {"error"}, id="sys-exit"),
    pytest.param("exit()", {"error"}, id="builtin-exit"),
    pytest.param("raise KeyboardInterrupt", {"error"}, id="keyboard-interrupt"),
    pytest.param(raw("import atexit\natexit.register(lambda: open('VICTIM/atexit', 'w'))\nraise SystemExit"),
                 {"error"}, id="atexit"),
    pytest.param(escape("__import__('os').abort()"), {"crashed"}, id="abort"),
    pytest.param(raw("import faulthandler, ctypes\nctypes.string_at(0)"), {"crashed"}, id="segfault"),
    # -- pickle payloads and ctypes
    pytest.param("import pickle", {"blocked"}, id="pickle-import"),
    pytest.param(raw("import pickle\npickle.loads(b\"cos\\nsystem\\n(S'touch VICTIM/pickled'\\ntR.\")"),
                 {"ok", "error"}, id="pickle-payload"),
    pytest.param("import ctypes", {"blocked"}, id="ctypes-import"),
    pytest.param(raw("import ctypes\nctypes.CDLL(None).syscall(57)"), {"ok"}, id="ctypes-raw-fork"),
    pytest.param(raw("import ctypes\nctypes.CDLL(None).syscall(62, 1, 9)"), {"ok"}, id="ctypes-raw-kill"),
    pytest.param(raw("import ctypes\nctypes.CDLL(None).syscall(0x40000000 | 57)"), {"ok", "crashed"}, id="x32-abi-fork"),
    # -- signals and kernel objects by side doors
    pytest.param(raw("import fcntl, os\nfcntl.fcntl(1, fcntl.F_SETOWN, os.getppid())"), {"error"}, id="fcntl-setown"),
    pytest.param(raw("import ctypes\nassert ctypes.CDLL(None).shmget(0, 2**28, 0o1600) < 0"), {"ok"}, id="sysv-shm"),
    pytest.param(raw("import os\nos.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))\nwhile True: pass"),
                 {"error"}, id="realtime-priority"),
    pytest.param(raw("import socket\nsocket.sethostname('pwned')"), {"error"}, id="sethostname"),
]


def victim_snapshot(victim: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(victim.rglob("*"))}


def processes_in_session(sid: int) -> list[int]:
    """Pids whose session id or process group is `sid` (a killed session leaves none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == sid or int(fields[3]) == sid:
            found.append(int(entry.name))
    return found


def survivors(sid: int, grace: float = 2.0) -> list[int]:
    """Processes of the session still present after `grace` seconds (closing is asynchronous:
    the driver sends SIGKILL at once and reaps while idle)."""
    deadline = time.monotonic() + grace
    while (found := processes_in_session(sid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    return found


@pytest.fixture(scope="module")
def pool():
    os.environ["QWEN_SANDBOX_TEST_SECRET"] = SECRET  # set before the driver starts
    try:
        with SandboxPool(timeout=ATTACK_TIMEOUT, memory_mb=256, output_limit=1 << 16) as sandbox_pool:
            yield sandbox_pool
    finally:
        os.environ.pop("QWEN_SANDBOX_TEST_SECRET", None)


@pytest.fixture(scope="module")
def victim(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("victim")
    path.chmod(0o777)  # writable for anyone: only the sandbox may stop a write here
    (path / "file.txt").write_text("original")
    (path / "file.txt").chmod(0o666)
    return path


@pytest.fixture(scope="module")
def listener():
    """A TCP listener on 127.0.0.1 that records whether anything connected."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    server.settimeout(0.2)
    hits: list[str] = []
    stop = threading.Event()

    def accept_loop():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            hits.append("tcp")
            conn.close()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    yield server.getsockname()[1], hits
    stop.set()
    thread.join()
    server.close()


@pytest.mark.parametrize("code, statuses", ATTACKS)
def test_attack_is_contained(pool, victim, listener, code, statuses):
    [result], check = launch_attack(pool, victim, listener, code)
    check(result, statuses)


def launch_attack(pool, victim, listener, code, *follow_up):
    """Run ``code`` (then the ``follow_up`` cells) in one fresh session, VICTIM and PORT filled
    in; returns the results and ``check(result, statuses)`` for after the session closed."""
    port, hits = listener
    code = code.replace("VICTIM", str(victim)).replace("PORT", str(port))
    before = victim_snapshot(victim)
    with pool.session() as session:
        session.start()
        sid = session.pid
        results = [session.run(cell) for cell in (code, *follow_up)]

    def check(result, statuses) -> None:
        assert_contained(result, statuses, pool=pool, sid=sid, victim=victim, before=before, hits=hits)

    return results, check


def assert_contained(result, statuses, *, pool, sid, victim, before, hits) -> None:
    """The properties every attack must leave intact, checked after the session closed."""
    assert result.status in statuses, result
    if result.status == "timeout":
        assert result.duration_s < ATTACK_TIMEOUT + DEADLINE_MARGIN, result.duration_s
    if result.status in {"blocked", "timeout", "output_truncated"}:
        assert result.layer, result
    assert survivors(sid) == []
    assert victim_snapshot(victim) == before
    assert SECRET not in result.stdout + (result.error or "")
    assert hits == []
    assert pool.run_code("print(6*7)").stdout == "42\n"


# -- layer attribution: the OS layer, not luck, stopped the raw attacks
@pytest.mark.parametrize("code, layers", [
    (escape("__import__('os').fork()"), {"seccomp"}),
    (escape("open('/etc/passwd').read()"), {"landlock", "uid_drop"}),
    (raw("import socket\nsocket.socket()"), {"seccomp"}),
    ("import os", {"policy"}),
    ("while True: pass", {"deadline"}),
    ("print('x' * 10**8)", {"output_cap"}),
])
def test_layer_that_stopped_the_attack_is_recorded(pool, code, layers):
    assert pool.run_code(code).layer in layers


# -- cross-program poisoning: one program's damage never reaches another session
POISON = raw(
    "import sympy, ctypes, builtins\n"
    "sympy.solve = lambda *a, **k: ['poisoned']\n"
    "builtins.print = None\n"
    "ctypes.memmove(id(7) + 24, id(8) + 24, 8)\n"
)


def test_poisoning_does_not_cross_sessions(pool):
    with pool.session() as poisoned:
        poisoned.run(POISON)
        clean = pool.run_code("from sympy import solve, Symbol\nx = Symbol('x')\nprint(solve(x - 7, x), 3 + 4)")
    assert clean.stdout == "[7] 7\n"


def test_sessions_cannot_signal_each_other(pool):
    with pool.session() as target, pool.session() as attacker:
        target.run("x = 41")
        attacker.run(escape(f"__import__('os').kill({target.pid}, 9)"))
        assert target.run("print(x + 1)").stdout == "42\n"
