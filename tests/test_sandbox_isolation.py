"""Two sessions open at the same time cannot see, signal, connect to or write anything of each other's.

Sessions share a driver (and, on hosts with namespaces, its one empty network namespace and one
work-dir path, each session under its own tmpfs): these tests hold the isolation between two
concurrently open sessions whatever layer provides it. Every attack runs with the real builtins
(through `sympify`, bypassing the policy layer), so only the OS layers stand. Each row: session A
(the target) holds a variable and a secret file, session B (the attacker) runs the cell with
TARGET (A's pid) and WORKDIR (A's work dir as A sees it) filled in; afterwards A is alive, its
state and file intact, B's output never contains the secret, and anything B tried to leave
behind is invisible to A. Safe to run as root and as a normal user.
"""

from __future__ import annotations

import pytest

from sandbox import SandboxPool

TOKEN = "qwen-isolation-token-41f7"
MARK = "qwen-isolation-mark-"


def raw(statements: str) -> str:
    """Run statements with the real builtins: exec inside sympify's eval (policy bypassed)."""
    return f"from sympy import sympify\nprint(sympify({f'exec({statements!r}, {{}}) or 0'!r}))"


def attempts(*statements: str) -> str:
    """Each statement on its own; print OK:<n> for any that did not raise."""
    body = ""
    for n, statement in enumerate(statements):
        body += "try:\n" + "".join(f"    {line}\n" for line in statement.splitlines())
        body += f"    print('OK:{n}')\nexcept BaseException as e:\n    print('no:{n}', type(e).__name__)\n"
    return raw(body)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(timeout=5.0, memory_mb=512) as sandbox_pool:
        yield sandbox_pool


# Each row: (cell, strict). Strict rows: every attempt must be refused. The others may succeed
# on the attacker's own things (WORKDIR can be the attacker's own path too: every session sees
# its own tmpfs there), but never reach the target's.
# -- see: the other session's files, process table entries, memory, environment
SEE = [
    pytest.param(attempts("print(open('WORKDIR/secret.txt').read())",
                          "import os\nprint(os.listdir('WORKDIR'))",
                          "import os\nprint(os.listdir(os.path.dirname('WORKDIR')))",
                          "print(open('/proc/TARGET/cwd/secret.txt').read())",
                          "print(open('/proc/TARGET/root' + 'WORKDIR/secret.txt').read())",
                          "print(open('/proc/TARGET/environ').read())",
                          "import os\nprint(os.listdir('/proc/TARGET/fd'))",
                          "print(open('/proc/TARGET/mem', 'rb').read(1))",
                          "import os\nprint(os.listdir('/proc'))"), False, id="see-files-proc-memory"),
]
# -- signal: every way to deliver a signal to the other session
SIGNAL = [
    pytest.param(attempts("import os\nos.kill(TARGET, 9)", "import os\nos.killpg(TARGET, 9)",
                          "import os, signal\nos.kill(TARGET, signal.SIGSTOP)",
                          "import os\nos.kill(TARGET, 0)",
                          "import os, signal\nsignal.pidfd_send_signal(os.pidfd_open(TARGET), 9)",
                          "import os, signal\nos.kill(-TARGET, signal.SIGTERM)"), True, id="signal"),
]
# -- connect: sockets of any family, the other session's pipe and control socket
CONNECT = [
    pytest.param(attempts("import socket\ns = socket.socket(socket.AF_UNIX)\ns.connect('\\0qwen')",
                          "import socket\ns = socket.socket()\ns.connect(('127.0.0.1', 1))",
                          "import socket\na, b = socket.socketpair()",
                          "import os\nos.open('/proc/TARGET/fd/3', os.O_RDWR)",
                          "import os\nos.open('/proc/TARGET/fd/1', os.O_WRONLY)",
                          "import os\nos.mkfifo(os.path.dirname('WORKDIR') + '/pipe')"), True, id="connect"),
]
# -- write: the other session's files, and every shared place a message could be left
WRITE = [
    pytest.param(attempts("open('WORKDIR/secret.txt', 'w').write('overwritten')",
                          "open('WORKDIR/MARK0', 'w').write('x')",
                          "open('/tmp/MARK1', 'w').write('x')",
                          "open('/dev/shm/MARK2', 'w').write('x')",
                          "open('/var/tmp/MARK3', 'w').write('x')",
                          "import os\nos.mkdir(os.path.dirname('WORKDIR') + '/MARK4')",
                          "from multiprocessing import shared_memory\nshared_memory.SharedMemory('MARK5', create=True, size=8)",
                          "import ctypes\nassert ctypes.CDLL(None).shmget(0x51E, 4096, 0o1666) >= 0",
                          "import ctypes\nassert ctypes.CDLL(None).msgget(0x51E, 0o1666) >= 0",
                          "import ctypes\nassert ctypes.CDLL(None).semget(0x51E, 1, 0o1666) >= 0",
                          "import os\nos.memfd_create('MARK6')"), False, id="write-files-ipc-shm"),
]

LEFT_BEHIND = ("import os, ctypes\nfound = []\n"
               "for d in ('.', '/tmp', '/dev/shm', '/var/tmp'):\n"
               "    try:\n        found += [f for f in os.listdir(d) if f.startswith('MARK')]\n"
               "    except OSError:\n        pass\n"
               "libc = ctypes.CDLL(None)\n"
               "found += [k for k, ok in (('shm', libc.shmget(0x51E, 0, 0) >= 0), ('msg', libc.msgget(0x51E, 0) >= 0),"
               " ('sem', libc.semget(0x51E, 0, 0) >= 0)) if ok]\nprint(sorted(found))")


@pytest.mark.parametrize("attack, strict", SEE + SIGNAL + CONNECT + WRITE)
def test_concurrent_sessions_are_isolated(pool, attack, strict):
    with pool.session() as target, pool.session() as attacker:
        setup = target.run(f"x = 41\nopen('secret.txt', 'w').write({TOKEN!r})")
        cwd = target.run(raw("import os\nprint(os.getcwd())"))
        assert setup.ok and cwd.ok, (setup, cwd)
        workdir = cwd.stdout.splitlines()[0]
        assert target.pid != attacker.pid
        code = (attack.replace("TARGET", str(target.pid)).replace("WORKDIR", workdir)
                .replace("MARK", MARK))
        result = attacker.run(code)
        assert TOKEN not in result.stdout + (result.error or ""), result
        assert "secret.txt" not in result.stdout, result
        if strict:
            assert "OK:" not in result.stdout, result  # every single attempt was refused
        after = target.run("print(x + 1, open('secret.txt').read())")
        assert (after.status, after.stdout) == ("ok", f"42 {TOKEN}\n"), after
        left = target.run(raw(LEFT_BEHIND.replace("MARK", MARK)))
        assert left.stdout.startswith("[]"), left
        assert attacker.run("print(6*7)").stdout == "42\n"
