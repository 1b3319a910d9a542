"""The sandbox's ordinary behaviour: benign programs, statuses, state across cells, PoT, pool.

The attacks live in test_sandbox_adversarial.py and the real-trajectory compatibility runs in
test_sandbox_compat.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import sandbox
from sandbox import ExecResult, SandboxPool, SandboxUnavailable, escape_fences

DEADLINE_MARGIN = 1.0


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(timeout=5.0, memory_mb=512) as sandbox_pool:
        yield sandbox_pool


# -- importing the package is cheap and loads no heavy library
def test_import_sandbox_is_light():
    code = ("import sys, time; t = time.perf_counter(); import sandbox; "
            "heavy = [m for m in ('sympy', 'numpy', 'torch', 'RestrictedPython') if m in sys.modules]; "
            "print(heavy, time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, seconds = out.stdout.rsplit(" ", 1)
    assert heavy == "[]" and float(seconds) < 1.0


# -- fences in program output cannot open or close a transcript block
@pytest.mark.parametrize("text, expected", [
    ("no fences", "no fences"),
    ("```output\n1\n```", "`\u200b``output\n1\n`\u200b``"),
    ("````", "`\u200b`\u200b``"),
    ("``", "``"),
])
def test_escape_fences(text, expected):
    assert escape_fences(text) == expected
    assert "```" not in escape_fences(text)


def test_exec_result_rejects_unknown_status():
    with pytest.raises(ValueError, match="status"):
        ExecResult("fine", "", None, 0.0)


# -- benign programs that must keep working (real TIR/PoT idioms the stock policy breaks)
BENIGN = [
    ("print(6*7)", "42\n"),
    ("from sympy import *\nx = symbols('x')\nprint(solve(x**2 - 4, x))", "[-2, 2]\n"),
    ("import sympy as sp\nx = sp.Symbol('x')\nprint(sp.factor(x**2 - 1))", "(x - 1)*(x + 1)\n"),
    ("from sympy import Rational\nprint(sum(Rational(1, k*(k+1)) for k in range(1, 10)))", "9/10\n"),
    ("a = [1, 2, 3]\na[0] += 5\nprint(a)", "[6, 2, 3]\n"),
    ("d = {}\nd['k'] = d.get('k', 0)\nd['k'] += 2\nprint(d)", "{'k': 2}\n"),
    ("class P:\n    def __init__(self, v):\n        self.v = v\n    def __add__(self, o):\n"
     "        return P(self.v + o.v)\n    def __repr__(self):\n        return f'P({self.v})'\n"
     "print(P(1) + P(2))", "P(3)\n"),
    ("class C:\n    def __init__(self):\n        self._hidden = 1\n    def get(self):\n"
     "        return self._hidden\nprint(C().get())", "1\n"),
    ("print(sorted(zip([3, 1, 2], 'abc')))", "[(1, 'b'), (2, 'c'), (3, 'a')]\n"),
    ("print('{} + {} = {:.2f}'.format(1, 2, 3))", "1 + 2 = 3.00\n"),
    ("print('{a}-{b}'.format_map({'a': 1, 'b': 2}))", "1-2\n"),
    ("x: int = 3\ndef f(y: int) -> int:\n    return y * x\nprint(f(2))", "6\n"),
    ("if __name__ == '__main__':\n    print('main')", "main\n"),
    ("import math\nprint(math.comb(10, 3), math.gcd(12, 18), math.isqrt(17))", "120 6 4\n"),
    ("from fractions import Fraction\nprint(Fraction(1, 3) + Fraction(1, 6))", "1/2\n"),
    ("from decimal import Decimal, getcontext\ngetcontext().prec = 5\nprint(Decimal(1) / Decimal(7))", "0.14286\n"),
    ("import itertools\nprint(len(list(itertools.permutations(range(4)))))", "24\n"),
    ("from collections import Counter\nprint(Counter('hello').most_common(1))", "[('l', 2)]\n"),
    ("import numpy as np\nprint(np.array([1, 2, 3]).sum(), np.linalg.det(np.eye(2)))", "6 1.0\n"),
    ("import mpmath\nmpmath.mp.dps = 15\nprint(mpmath.sqrt(2))", "1.4142135623731\n"),
    ("import sys\nsys.setrecursionlimit(5000)\ndef f(n):\n    return 0 if n == 0 else 1 + f(n - 1)\nprint(f(3000))",
     "3000\n"),
    ("def gen():\n    yield from range(3)\nprint(list(gen()))", "[0, 1, 2]\n"),
    ("total = 0\ndef add(n):\n    global total\n    total += n\nadd(5)\nprint(total)", "5\n"),
    ("with open('notes.txt', 'w') as f:\n    f.write('kept')\nprint(open('notes.txt').read())", "kept\n"),
    ("import re\nprint(re.findall(r'\\d+', 'a1b22c333'))", "['1', '22', '333']\n"),
    ("x, *rest = [1, 2, 3]\nprint(x, rest)", "1 [2, 3]\n"),
    ("print(*[1, 2], sep='-')", "1-2\n"),
    ("import random\nrandom.seed(0)\nprint(random.randint(1, 100))", "50\n"),
    ("print(f'{3.14159:.2f}', f'{10**3:,}')", "3.14 1,000\n"),
    ("try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    print('caught', e)", "caught division by zero\n"),
    ("import sys\nsys.stdout.write('direct\\n')", "direct\n"),
    ("import sys\nprint('warning', file=sys.stderr)\nprint('kept')", "kept\n"),
    ("print(type(3).__name__, isinstance(3, int))", "int True\n"),
    ("match 3:\n    case 3:\n        print('three')", "three\n"),
    ("def f():\n    c = 0\n    def g():\n        nonlocal c\n        c += 1\n    g()\n    return c\nprint(f())", "1\n"),
    ("from sympy import lambdify, symbols\nx = symbols('x')\nprint(lambdify(x, x**2 + 1)(3))", "10\n"),
    ("from dataclasses import dataclass\n@dataclass\nclass P:\n    x: int\n    y: int = 0\nprint(P(1))", "P(x=1, y=0)\n"),
    ("import sys\nsys.set_int_max_str_digits(0)\nprint(len(str(10**5000)))", "5001\n"),
]


@pytest.mark.parametrize("code, stdout", BENIGN)
def test_benign_program(pool, code, stdout):
    result = pool.run_code(code)
    assert (result.status, result.stdout, result.error) == ("ok", stdout, None)


def test_scipy_when_installed(pool):
    pytest.importorskip("scipy")
    result = pool.run_code("from scipy.special import comb\nimport scipy.optimize as so\n"
                           "print(comb(5, 2), round(so.brentq(lambda t: t * t - 2, 0, 2), 6))")
    assert (result.status, result.stdout) == ("ok", "10.0 1.414214\n")


# -- errors come back as the last traceback line the model expects
@pytest.mark.parametrize("code, status, error", [
    ("print(x)", "error", "NameError: name 'x' is not defined"),
    ("1/0", "error", "ZeroDivisionError: division by zero"),
    ("x = (", "error", "SyntaxError: '(' was never closed"),
    ("[][1]", "error", "IndexError: list index out of range"),
    ("import sys\nsys.exit(3)", "error", "SystemExit: 3"),
    ("raise ValueError('bad value')", "error", "ValueError: bad value"),
    ("input()", "error", "EOFError: EOF when reading a line"),
    ("import os", "blocked", "ImportError: import of 'os' is not allowed in the sandbox"),
    ("x = [0] * 10**11", "memory_error", "MemoryError"),
])
def test_error_line(pool, code, status, error):
    result = pool.run_code(code)
    assert (result.status, result.error) == (status, error)


def test_output_before_an_error_is_kept(pool):
    result = pool.run_code("print('partial')\n1/0")
    assert (result.stdout, result.error) == ("partial\n", "ZeroDivisionError: division by zero")


# -- Jupyter-style display of a trailing expression, only when nothing was printed
@pytest.mark.parametrize("code, stdout", [
    ("2 + 3", "5\n"),
    ("'text'", "'text'\n"),
    ("None", ""),
    ("print(1)\n2", "1\n"),
    ("x = 4", ""),
    ("from sympy import sqrt\nsqrt(8)", "2*sqrt(2)\n"),
])
def test_trailing_expression_display(pool, code, stdout):
    assert pool.run_code(code).stdout == stdout


# -- deadline bounds: a killed cell ends within timeout + margin, whatever it does
@pytest.mark.parametrize("code", ["while True: pass", "sum(range(10**13))", "import time\ntime.sleep(60)"])
def test_deadline_bound(pool, code):
    start = time.monotonic()
    with pool.session(timeout=0.5) as session:
        result = session.run(code)
    assert result.status == "timeout"
    assert time.monotonic() - start < 0.5 + DEADLINE_MARGIN


# -- multi-cell TIR state
def test_state_persists_across_cells(pool):
    with pool.session() as session:
        session.run("from sympy import symbols, solve\nx = symbols('x')\ncount = 1")
        session.run("def double(v):\n    return 2 * v")
        session.run("count += 1")
        result = session.run("print(solve(x - count, x), double(count))")
    assert result.stdout == "[2] 4\n"


def test_failed_cell_keeps_earlier_state(pool):
    with pool.session() as session:
        session.run("a = 10")
        assert session.run("b = a / 0").status == "error"
        assert session.run("print(a)").stdout == "10\n"


@pytest.mark.parametrize("killer, status", [
    ("while True: pass", "timeout"),
    ("from sympy import sympify\nsympify(\"__import__('os')._exit(1)\")", "crashed"),
    ("print('y' * 10**7)", "output_truncated"),
])
def test_dead_session_is_rebuilt_with_replayed_state(pool, killer, status):
    with pool.session(timeout=1.0) as session:
        session.run("v = 41\nprint('replayed output stays hidden')")
        first_pid = session.pid
        assert session.run(killer).status == status
        result = session.run("print(v + 1)")
        assert session.pid != first_pid
    assert (result.status, result.stdout) == ("ok", "42\n")


def test_session_survives_its_driver_dying():
    with SandboxPool() as own, own.session() as session:
        session.run("v = 41")
        os.kill(own.driver().pid, signal.SIGKILL)
        time.sleep(0.2)
        result = session.run("print(v + 1)")
    assert (result.status, result.stdout) == ("ok", "42\n")


def test_sessions_do_not_share_state(pool):
    with pool.session() as one, pool.session() as two:
        one.run("shared = 1")
        assert two.run("print(shared)").error == "NameError: name 'shared' is not defined"


# -- PoT: solution() when defined and nothing printed, else the last printed line
@pytest.mark.parametrize("code, value", [
    ("def solution():\n    return 3 * 4", "12"),
    ("from sympy import Rational\ndef solution():\n    return Rational(1, 3) + Rational(1, 6)", "1/2"),
    ("print('work')\nprint(17)", "17"),
    ("def solution():\n    return 5\nprint(solution())", "5"),
    ("def solution():\n    return 5\nprint('answer:', 6)\n", "answer: 6"),
    ("x = 3", None),
    ("def solution():\n    return 1 / 0", None),
])
def test_run_pot_value(pool, code, value):
    assert pool.run_pot(code).value == value


def test_run_pot_module_helper():
    result = sandbox.run_pot("def solution():\n    return 6 * 7")
    assert (result.status, result.value) == ("ok", "42")


def test_run_code_module_helper():
    assert sandbox.run_code("print(6*7)").stdout == "42\n"


# -- the pool: thread-safe, bounded
def test_pool_runs_trajectories_from_threads(pool):
    def trajectory(i):
        with pool.session() as session:
            session.run(f"n = {i}")
            session.run("n = n * n")
            return session.run("print(n)").stdout

    with ThreadPoolExecutor(8) as workers:
        outputs = list(workers.map(trajectory, range(16)))
    assert outputs == [f"{i * i}\n" for i in range(16)]


def test_pool_bounds_live_sessions():
    with SandboxPool(max_sessions=1) as small:
        first = small.session()
        got_second = threading.Event()

        def take_second():
            with small.session():
                got_second.set()

        thread = threading.Thread(target=take_second)
        thread.start()
        assert not got_second.wait(0.3)
        first.close()
        assert got_second.wait(5)
        thread.join()


# -- sessions handed over ahead of use (prefetched) carry the limits asked for, and end with the pool
def test_prefetched_sessions_follow_the_limits_asked_for_and_end_with_the_pool():
    seen = []
    with SandboxPool() as own:
        for memory_mb in (256, 256, 512, 512, 256):
            with own.session(memory_mb=memory_mb) as session:
                assert session.run("print(2 + 2)").stdout == "4\n"
                seen.append((memory_mb, session.layers["rlimits"]["detail"], session.pid))
        driver_pid = own.driver().pid
    for memory_mb, detail, _pid in seen:
        assert f"(+{memory_mb})" in detail
    deadline = time.monotonic() + 5
    pids = [driver_pid, *(pid for *_, pid in seen)]
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.05)
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]


def test_sessions_with_changing_limits_from_threads_each_get_their_own():
    def open_run_close(memory_mb):
        with own.session(memory_mb=memory_mb) as session:
            out = session.run("print(3 * 3)").stdout
            return memory_mb, session.layers["rlimits"]["detail"], out

    with SandboxPool() as own, ThreadPoolExecutor(4) as workers:
        results = list(workers.map(open_run_close, [256, 512, 384] * 8))
    for memory_mb, detail, out in results:
        assert out == "9\n" and f"(+{memory_mb})" in detail


@pytest.mark.parametrize("strict", [True, False])
def test_missing_minimum_layer(strict, caplog):
    layers = {name: {"active": True} for name in ("process", "rlimits", "policy")}
    layers["seccomp"] = {"active": False, "detail": "no libseccomp"}
    unstarted = SandboxPool(strict=strict)
    if strict:
        with pytest.raises(SandboxUnavailable, match="seccomp"):
            unstarted.check_layers(layers)
    else:
        unstarted.check_layers(layers)
        assert "strict=False" in caplog.text


def test_closed_session_refuses_to_run(pool):
    session = pool.session()
    session.close()
    with pytest.raises(ValueError, match="closed"):
        session.run("1")


def test_default_pool_is_one_object():
    assert sandbox.default_pool() is sandbox.default_pool()


# -- layers and the doctor
def test_doctor_reports_every_layer(pool):
    report = sandbox.doctor(pool)
    names = {layer.name for layer in report.layers}
    assert {"process", "rlimits", "policy", "seccomp", "landlock", "net_namespace", "cgroup",
            "uid_drop", "no_new_privs", "empty_env", "workdir"} <= names
    assert report.minimum_met
    assert json.loads(json.dumps(report.as_dict()))["minimum_met"] is True


def test_doctor_cli_json(capsys):
    from qwen_math.cli import main

    assert main(["dev", "sandbox-doctor", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["layers"]["seccomp"]["active"] is True


# -- the driver is a child of its user, never a daemon
def test_driver_and_sessions_die_with_their_user():
    code = ("import os, sandbox\n"
            "pool = sandbox.SandboxPool()\n"
            "s = pool.session(); s.start()\n"
            "print(pool.driver().pid, s.pid, flush=True)\n"
            "os._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         cwd=Path(sandbox.__file__).parent.parent)
    pids = [int(p) for p in out.stdout.split()]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.05)
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]
