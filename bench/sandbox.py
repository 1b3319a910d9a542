"""Sandbox benchmark on the 200 TIR programs (not a timed test).

Throughput, every output checked against the file's expected stdout, same programs, same cores
(`--workers`, default the CPU count) on every side:
  warm_pool       the like-for-like baseline: a warm, UNISOLATED process pool of `--workers`
                  processes (SymPy/NumPy pre-imported and warmed before timing), `exec` of each
                  program with stdout captured, one program per dispatch;
  pool_per_batch  the official Qwen2.5-Math executor's design: a pebble ProcessPool created for
                  the batch (all 200 programs), `exec` with stdout captured, no isolation
                  (a faithful stand-in with multiprocessing when pebble is not installed);
  fork_floor      the floor of any design that gives every program a fresh process (what the
                  sandbox's isolation between sessions requires): a warm process prepared as
                  the driver is (same pre-imports and SymPy warm-up, GC frozen, heap in huge
                  pages) forks one child per program, which runs it with stdout captured, writes
                  the output to a pipe and exits; `--workers` children at a time; NO isolation
                  and no protocol. Its own fresh interpreter (`--fork-floor-child`).
  sandbox         `SandboxPool.run_code`: one fresh hardened session per program, `--workers`
                  programs running at once.
Ratios (ours / baseline, programs/s; > 1 means the sandbox is faster):
  sandbox_vs_warm_pool       what isolation costs against the best unsafe design at equal
                             cores (the issue's target is >= 0.5);
  sandbox_vs_pool_per_batch  against what the official evaluation pays today (target >= 1.0);
  fork_floor_vs_warm_pool    how far a fresh process per program (no isolation at all) can
                             reach: the ceiling of sandbox_vs_warm_pool on this machine;
  sandbox_vs_fork_floor      what hardening and the session protocol cost on top of that;
  cpu_per_program_vs_*       the same comparisons by CPU time per program of every process
                             involved (baseline ms / ours ms): on a machine shared with other
                             work, wall-clock ratios favour the side with more processes.
Latency: session open -> first cell (`print(1)`) -> close, p50/p99 ms, one at a time, sessions
opened 20 ms apart (the replacement session is built in between) and 5 ms apart (its build
overlaps the measured cell).
Breakdown: per isolation layer, the median µs each step took inside the session process
(`process` is fork -> the child running), then the client's own steps (hand-off, ready, first
cell, close), and CPU per program of this process, the driver and the sessions.
Also the older cases: a cold `python -c "import sympy"` against a session start, and the
4-cells-per-session TIR pattern. Ends with one JSON line per case.

    python bench/sandbox.py [--file PATH] [--workers N] [--latency-samples 200]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Run as `python bench/sandbox.py`, this file would shadow the `sandbox` package.
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
DEFAULT_FILE = REPO.parent / "shared" / "data" / "sandbox" / "tir_programs_200.jsonl"
TYPICAL_CELL = ("from sympy import symbols, solve, Rational\nx = symbols('x')\n"
                "print(solve(x**2 - 5*x + 6, x), Rational(3, 4) + Rational(1, 6))")
CELLS_PER_SESSION = 4


def load_programs(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- baselines: unisolated process pools (warm, and one per batch as the official executor) ------
def exec_captured(code: str) -> str:
    """What both unisolated designs do per program: exec in fresh globals, stdout captured."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer):
            exec(compile(code, "<program>", "exec"), {"__name__": "__main__"})
    except Exception as exc:  # noqa: BLE001 (a failing program is a wrong output, not a crash)
        buffer.write(f"{exc.__class__.__name__}: {exc}\n")
    return buffer.getvalue()


def _warm_worker() -> None:
    import sympy  # noqa: F401

    from sandbox.driver import warm_up

    warm_up()


def proc_cpu_seconds(pid: int, *, children: bool = False) -> float:
    """utime + stime of a live process (plus its reaped children's with `children`)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15 if children else 13])
    return ticks / os.sysconf("SC_CLK_TCK")


def warm_pool_rate(programs: Sequence[dict], workers: int) -> tuple[float, int, float]:
    """(programs/s, correct, CPU ms per program: this process + the workers) on a pool started
    and warmed before the clock starts."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(workers, initializer=_warm_worker) as pool:
        pool.map(exec_captured, ["print(1)"] * workers * 4, chunksize=1)  # every worker up
        pids = [process.pid for process in pool._pool]
        cpu0 = time.process_time() + sum(proc_cpu_seconds(pid) for pid in pids)
        start = time.perf_counter()
        outputs = pool.map(exec_captured, [p["code"] for p in programs], chunksize=1)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() + sum(proc_cpu_seconds(pid) for pid in pids) - cpu0
    return len(programs) / elapsed, count_correct(outputs, programs), cpu / len(programs) * 1000


def pool_per_batch_rate(programs: Sequence[dict], workers: int, timeout: float = 5.0) -> tuple[float, int, float, str]:
    """(programs/s, correct, CPU ms per program, design) for a pool created for the batch, as the
    official executor does (`with ProcessPool(max_workers=...) as pool: pool.map(..., timeout=...)`)."""
    codes = [p["code"] for p in programs]
    times0, start = os.times(), time.perf_counter()
    try:
        from pebble import ProcessPool
    except ImportError:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            outputs = [pending.get(timeout) for pending in
                       [pool.apply_async(exec_captured, (code,)) for code in codes]]
            pool.close()
            pool.join()
        design = "multiprocessing.Pool per batch (pebble not installed)"
    else:
        with ProcessPool(max_workers=workers) as pool:
            outputs = list(pool.map(exec_captured, codes, timeout=timeout).result())
        design = "pebble.ProcessPool per batch"
    elapsed, times1 = time.perf_counter() - start, os.times()
    cpu = sum(times1[:4]) - sum(times0[:4])  # this process and the reaped pool workers
    return len(programs) / elapsed, count_correct(outputs, programs), cpu / len(programs) * 1000, design


def fork_floor_child(path: Path, workers: int) -> None:
    """In a fresh interpreter: prepare as the driver does, then one fresh fork per program
    (see the module docstring); prints one JSON line (rate, correct, CPU ms per program)."""
    from sandbox.driver import freeze_for_forks, preimport, warm_up

    preimport()
    warm_up()
    freeze_for_forks()
    programs = load_programs(path)
    outputs: list[str] = [""] * len(programs)
    running: dict[int, tuple[int, int]] = {}  # pid -> (program index, read end of its pipe)
    times0, start, next_index = os.times(), time.perf_counter(), 0
    while next_index < len(programs) or running:
        while next_index < len(programs) and len(running) < workers:
            read_fd, write_fd = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_fd)
                data = exec_captured(programs[next_index]["code"]).encode()
                while data:  # the outputs are far below a pipe's capacity: no reader needed yet
                    data = data[os.write(write_fd, data):]
                os._exit(0)
            os.close(write_fd)
            running[pid], next_index = (next_index, read_fd), next_index + 1
        pid, _ = os.wait()
        index, read_fd = running.pop(pid)
        with os.fdopen(read_fd, "rb") as pipe:
            outputs[index] = pipe.read().decode()
    elapsed, times1 = time.perf_counter() - start, os.times()
    cpu = sum(times1[:4]) - sum(times0[:4])  # this process and every reaped child
    print(json.dumps({"rate": len(programs) / elapsed, "correct": count_correct(outputs, programs),
                      "cpu_ms": cpu / len(programs) * 1000}))


def fork_floor_rate(path: Path, workers: int) -> tuple[float, int, float]:
    """(programs/s, correct, CPU ms per program) of `fork_floor_child`, in its own interpreter."""
    out = subprocess.run([sys.executable, __file__, "--fork-floor-child", "--file", str(path),
                          "--workers", str(workers)], check=True, capture_output=True, text=True,
                         env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["rate"], result["correct"], result["cpu_ms"]


def count_correct(outputs: Sequence[str], programs: Sequence[dict]) -> int:
    return sum(out == p["expected_stdout"] for out, p in zip(outputs, programs, strict=True))


# -- ours ------------------------------------------------------------------------------------------
def cpu_seconds_of(driver_pid: int) -> float:
    """CPU of this process plus the driver and every session it reaped (utime+stime+cutime+cstime)."""
    return time.process_time() + proc_cpu_seconds(driver_pid, children=True)


def sandbox_rate(pool, programs: Sequence[dict], workers: int) -> tuple[float, int, float]:
    """(programs/s, correct, CPU ms per program of everything involved) for one fresh session
    per program, `workers` at a time."""
    driver_pid = pool.driver().pid
    cpu0, start = cpu_seconds_of(driver_pid), time.perf_counter()
    with ThreadPoolExecutor(workers) as threads:
        outputs = list(threads.map(lambda p: pool.run_code(p["code"]).stdout, programs))
    wall, cpu = time.perf_counter() - start, cpu_seconds_of(driver_pid) - cpu0
    return len(programs) / wall, count_correct(outputs, programs), cpu / len(programs) * 1000


# Latency is measured one session at a time, opened GAP_S apart: a replacement session is
# built (fork, hardening, priming: ~10 ms of CPU) after each opening, and at GAP_S it is ready
# before the next one, as when trajectories open sessions over model turns. BACK_TO_BACK_GAP_S
# shows the cost when the build of the replacement overlaps the measured cell on the same cores.
GAP_S, BACK_TO_BACK_GAP_S = 0.02, 0.005


def open_cell_close(pool, n: int, gap: float = GAP_S) -> tuple[list[float], dict[str, list[float]]]:
    """Latencies (s) of open -> first cell -> close, one at a time, `gap` s apart, and each
    step's µs: the layers the session process timed, then the client's hand-off, ready, first
    cell, close."""
    totals, steps = [], {}
    for _ in range(n):
        time.sleep(gap)
        t0 = time.perf_counter()
        session = pool.session()
        session.start()
        t1 = time.perf_counter()
        result = session.run("print(1)")
        t2 = time.perf_counter()
        session.close()
        t3 = time.perf_counter()
        assert result.stdout == "1\n", result
        totals.append(t3 - t0)
        for name, info in session.layers.items():
            if info.get("cost_ms") is not None:
                steps.setdefault(name, []).append(info["cost_ms"] * 1000)
        for name, seconds in (("client: hand-off + ready", t1 - t0), ("client: first cell", t2 - t1),
                              ("client: close", t3 - t2)):
            steps.setdefault(name, []).append(seconds * 1e6)
    return totals, steps


def trajectory(pool, chunk) -> int:
    with pool.session() as session:
        return sum(session.run(p["code"]).stdout == p["expected_stdout"] for p in chunk)


def chunks(programs, size=CELLS_PER_SESSION):
    return [programs[i:i + size] for i in range(0, len(programs), size)]


def trajectories(pool, programs, workers: int) -> tuple[float, float, int]:
    """(cells/s wall, cells per CPU second, correct) for `workers` concurrent trajectories."""
    driver_pid = pool.driver().pid
    cpu0, start = cpu_seconds_of(driver_pid), time.perf_counter()
    with ThreadPoolExecutor(workers) as threads:
        correct = sum(threads.map(lambda c: trajectory(pool, c), chunks(programs)))
    wall, cpu = time.perf_counter() - start, cpu_seconds_of(driver_pid) - cpu0
    return len(programs) / wall, len(programs) / cpu, correct


def own_compute_ms(code: str, n: int) -> float:
    compiled = compile(code, "<cell>", "exec")
    times = []
    with open(os.devnull, "w") as sink:
        stdout, sys.stdout = sys.stdout, sink
        try:
            for _ in range(n):
                t = time.perf_counter()
                exec(compiled, {"__name__": "__main__"})
                times.append(time.perf_counter() - t)
        finally:
            sys.stdout = stdout
    return statistics.median(times) * 1000


TIMED = "import time as _bench_time\n_bench_t0 = _bench_time.perf_counter()\n{cell}\nprint(_bench_time.perf_counter() - _bench_t0)"


def warm_cell_ms(pool, code: str, n: int) -> tuple[float, float]:
    """(median wall ms of the cell in a warm session, median ms of that outside the cell's own
    compute as timed inside the session process)."""
    timed = TIMED.format(cell=code)
    walls, overheads = [], []
    with pool.session() as session:
        session.run(timed)
        for _ in range(n):
            t = time.perf_counter()
            result = session.run(timed)
            wall = time.perf_counter() - t
            walls.append(wall)
            overheads.append(wall - float(result.stdout.split()[-1]))
    return statistics.median(walls) * 1000, statistics.median(overheads) * 1000


# -- report ----------------------------------------------------------------------------------------
def case(name: str, baseline: float, ours: float, unit: str, higher_is_better: bool) -> dict:
    ratio = ours / baseline if higher_is_better else baseline / ours
    return {"bench": "sandbox", "case": name, "baseline": round(baseline, 3), "ours": round(ours, 3),
            "unit": unit, "ratio": round(ratio, 2)}


def run_python_c(code: str) -> float:
    """Wall seconds of a fresh interpreter running `code` (the cold-start reference)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                   env={"OPENBLAS_NUM_THREADS": "1", "PATH": os.environ.get("PATH", "")})
    return time.perf_counter() - start


def print_breakdown(steps: dict[str, list[float]]) -> None:
    print("per-step cost, median µs over the sessions above (session process: every isolation "
          "layer in the order applied; then the client's view):")
    for name, values in steps.items():
        print(f"  {name:<26} {statistics.median(values):>9.0f} µs")


def load_average() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes / concurrent sessions on every side (default: CPU count)")
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--fork-floor-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.file.is_file():
        print(f"error: {args.file} not found (pass --file)", file=sys.stderr)
        return 4
    if args.workers < 1 or args.latency_samples < 1:
        print("error: --workers and --latency-samples must be >= 1", file=sys.stderr)
        return 2
    if args.fork_floor_child:
        fork_floor_child(args.file, args.workers)
        return 0
    import sympy  # noqa: F401 (the in-process compute reference and the forked pools need it)

    from sandbox import SandboxPool

    programs = load_programs(args.file)
    workers, cases = args.workers, []
    print(f"{len(programs)} programs, {workers} workers on {os.cpu_count()} CPUs, load {load_average()}",
          file=sys.stderr)
    warm_rate, warm_ok, warm_cpu = warm_pool_rate(programs, workers)
    print(f"warm unisolated pool ({workers} processes, SymPy pre-imported): {warm_rate:.1f} programs/s, "
          f"{warm_ok}/{len(programs)} correct, {warm_cpu:.1f} ms CPU per program")
    batch_rate, batch_ok, batch_cpu, design = pool_per_batch_rate(programs, workers)
    print(f"pool per batch ({design}, {workers} workers): {batch_rate:.1f} programs/s, "
          f"{batch_ok}/{len(programs)} correct, {batch_cpu:.1f} ms CPU per program")
    floor_rate, floor_ok, floor_cpu = fork_floor_rate(args.file, workers)
    print(f"fresh fork per program, no isolation ({workers} at a time, prepared as the driver): "
          f"{floor_rate:.1f} programs/s, {floor_ok}/{len(programs)} correct, {floor_cpu:.1f} ms CPU "
          f"per program: at most {floor_rate / warm_rate:.2f} of the warm pool for any design with a "
          f"fresh process per program")
    cases.append(case("fork_floor_vs_warm_pool", warm_rate, floor_rate, "programs/s", True))
    with SandboxPool(max_sessions=64, max_running=workers) as pool:
        for _ in range(3):
            pool.run_code("print(1)")  # driver start-up and the first idle sessions: not timed
        rate, ok, cpu_ms = sandbox_rate(pool, programs, workers)
        print(f"hardened SandboxPool.run_code ({workers} at a time, a fresh session per program): "
              f"{rate:.1f} programs/s, {ok}/{len(programs)} correct, {cpu_ms:.1f} ms CPU per program")
        print(f"ratios: sandbox / warm pool {rate / warm_rate:.2f}, sandbox / pool per batch "
              f"{rate / batch_rate:.2f} (load {load_average()}); by CPU per program (less sensitive "
              f"to other load): {warm_cpu / cpu_ms:.2f} and {batch_cpu / cpu_ms:.2f}")
        cases.append(case("sandbox_vs_warm_pool", warm_rate, rate, "programs/s", True))
        cases.append(case("sandbox_vs_pool_per_batch", batch_rate, rate, "programs/s", True))
        cases.append(case("sandbox_vs_fork_floor", floor_rate, rate, "programs/s", True))
        cases.append(case("cpu_per_program_vs_warm_pool", warm_cpu, cpu_ms, "ms", False))
        cases.append(case("cpu_per_program_vs_pool_per_batch", batch_cpu, cpu_ms, "ms", False))

        back_to_back, _ = open_cell_close(pool, args.latency_samples, BACK_TO_BACK_GAP_S)
        totals, steps = open_cell_close(pool, args.latency_samples)
        p50, p99 = statistics.median(totals) * 1000, percentile(totals, 0.99) * 1000
        p50_b2b = statistics.median(back_to_back) * 1000
        print(f"session open -> first cell -> close, {GAP_S * 1000:.0f} ms apart: p50 {p50:.2f} ms, "
              f"p99 {p99:.2f} ms; {BACK_TO_BACK_GAP_S * 1000:.0f} ms apart (the replacement's build "
              f"overlapping): p50 {p50_b2b:.2f} ms, p99 {percentile(back_to_back, 0.99) * 1000:.2f} ms")
        print_breakdown(steps)

        own = own_compute_ms(TYPICAL_CELL, 50)
        warm, overhead = warm_cell_ms(pool, TYPICAL_CELL, 100)
        pyc_start = run_python_c("import sympy")
        print(f"typical cell: own compute {own:.2f} ms in this process; warm session {warm:.2f} ms wall, "
              f"overhead {overhead:.2f} ms; python -c 'import sympy' {pyc_start * 1000:.0f} ms")
        cases.append(case("open_cell_close_p50", pyc_start * 1000, p50, "ms", False))
        cases.append(case("open_cell_close_p50_back_to_back", pyc_start * 1000, p50_b2b, "ms", False))

        tir_rate, _, tir_ok = trajectories(pool, programs, workers)
        print(f"TIR pattern ({CELLS_PER_SESSION} cells per session, {workers} trajectories at a time): "
              f"{tir_rate:.1f} cells/s, {tir_ok}/{len(programs)} correct")
        cases.append(case("tir_cells_vs_warm_pool", warm_rate, tir_rate, "programs/s", True))
    print(f"machine load average at the end: {load_average()}")
    for row in cases:
        print(json.dumps(row))
    wrong = [name for name, got in (("warm pool", warm_ok), ("pool per batch", batch_ok), ("fork floor", floor_ok),
                                    ("sandbox", ok), ("TIR pattern", tir_ok)) if got != len(programs)]
    if wrong:
        print(f"error: wrong outputs on: {', '.join(wrong)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
