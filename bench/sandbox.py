"""Sandbox benchmark on the 200 TIR programs (not a timed test).

Cases, each against a baseline measured in the same run:
  cold_start      a new hardened session (spawn + hardening + ready), ms, vs a fresh
                  `python -c "import sympy"`;
  warm_overhead   wall time of a typical SymPy cell in a warm session minus the cell's own
                  compute timed inside the session, ms (median of 200), vs `python -c` wall
                  time minus the same code's compute exec'd in this process;
  a_*             one fresh session per program, sequential: programs/s, p50 and p99 latency;
  b_cells_per_core 4 cells per session as in TIR (session start included): cells per CPU
                  second of everything involved (this process, the driver, its sessions);
  c_pool_N        the pool with N concurrent trajectories of 4 cells: programs/s.
The baseline for a/b/c is a plain `python -c <program>` subprocess per program (the same
concurrency as the case), timed on `--baseline-limit` programs (a fresh interpreter plus
`import sympy` costs ~0.6 s each) and reported as a rate. Every output is checked against the
file's expected stdout. `ratio` > 1 means ours is better (rates: ours/baseline; times:
baseline/ours). Ends with one JSON line per case.

    python bench/sandbox.py [--file PATH] [--baseline-limit 24]
"""

from __future__ import annotations

import argparse
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


# -- baseline: a fresh interpreter per program -----------------------------------------------------
def run_python_c(code: str) -> tuple[str, float]:
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"OPENBLAS_NUM_THREADS": "1", "PATH": os.environ.get("PATH", "")})
    return out.stdout, time.perf_counter() - start


def baseline_rate(programs: Sequence[dict], workers: int) -> tuple[float, list[float], int]:
    """(programs/s, latencies, correct) for `python -c` with `workers` at a time."""
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda p: run_python_c(p["code"]), programs))
    elapsed = time.perf_counter() - start
    correct = sum(out == p["expected_stdout"] for (out, _), p in zip(results, programs, strict=True))
    return len(programs) / elapsed, [lat for _, lat in results], correct


# -- ours ------------------------------------------------------------------------------------------
def cpu_seconds_of(driver_pid: int) -> float:
    """CPU of this process plus the driver and every session it reaped (utime+stime+cutime+cstime)."""
    fields = Path(f"/proc/{driver_pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(v) for v in fields[11:15])
    return time.process_time() + ticks / os.sysconf("SC_CLK_TCK")


def fresh_session_per_program(pool, programs) -> tuple[float, list[float], int]:
    latencies, correct = [], 0
    start = time.perf_counter()
    for program in programs:
        t = time.perf_counter()
        result = pool.run_code(program["code"])
        latencies.append(time.perf_counter() - t)
        correct += result.stdout == program["expected_stdout"]
    return len(programs) / (time.perf_counter() - start), latencies, correct


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


def cold_start_ms(pool, n: int = 30) -> list[float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        session = pool.session().start()
        times.append((time.perf_counter() - t) * 1000)
        session.close()
    return times


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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--baseline-limit", type=int, default=24,
                        help="programs timed for the python -c baseline (default 24)")
    args = parser.parse_args(argv)
    if not args.file.is_file():
        print(f"error: {args.file} not found (pass --file)", file=sys.stderr)
        return 4
    import sympy  # noqa: F401 (the in-process compute reference needs it loaded)

    from sandbox import SandboxPool

    programs = load_programs(args.file)
    sample = programs[:: max(1, len(programs) // args.baseline_limit)][: args.baseline_limit]
    cores = os.cpu_count() or 1
    cases = []
    with SandboxPool(max_sessions=64) as pool:
        pool.run_code("1")  # driver start-up is not part of any case
        own = own_compute_ms(TYPICAL_CELL, 50)
        warm, overhead = warm_cell_ms(pool, TYPICAL_CELL, 200)
        _, pyc_cell = run_python_c(TYPICAL_CELL)
        starts = cold_start_ms(pool)
        _, pyc_start = run_python_c("import sympy")
        print(f"typical cell: own compute {own:.2f} ms in this process; warm session {warm:.2f} ms wall, "
              f"overhead {overhead:.2f} ms over its compute in the session; python -c {pyc_cell * 1000:.0f} ms")
        print(f"cold session start: p50 {statistics.median(starts):.1f} ms, "
              f"p99 {percentile(starts, 0.99):.1f} ms; python -c 'import sympy' {pyc_start * 1000:.0f} ms")
        cases.append(case("cold_start", pyc_start * 1000, statistics.median(starts), "ms", False))
        cases.append(case("warm_overhead", pyc_cell * 1000 - own, overhead, "ms", False))

        base_rate, base_lat, base_ok = baseline_rate(sample, 1)
        print(f"baseline python -c (1 at a time, {len(sample)} programs): {base_rate:.2f} programs/s, "
              f"p50 {statistics.median(base_lat) * 1000:.0f} ms, {base_ok}/{len(sample)} correct")
        rate, lat, ok = fresh_session_per_program(pool, programs)
        print(f"(a) fresh session per program: {rate:.1f} programs/s, p50 {statistics.median(lat) * 1000:.1f} ms, "
              f"p99 {percentile(lat, 0.99) * 1000:.1f} ms, {ok}/{len(programs)} correct")
        cases.append(case("a_programs_per_s", base_rate, rate, "programs/s", True))
        cases.append(case("a_p50_latency", statistics.median(base_lat) * 1000, statistics.median(lat) * 1000, "ms", False))
        cases.append(case("a_p99_latency", percentile(base_lat, 0.99) * 1000, percentile(lat, 0.99) * 1000, "ms", False))

        wall, per_cpu, ok = trajectories(pool, programs, 1)
        print(f"(b) {CELLS_PER_SESSION} cells per session: {wall:.1f} cells/s wall, {per_cpu:.1f} cells per CPU second, "
              f"{ok}/{len(programs)} correct")
        cases.append(case("b_cells_per_core", base_rate, per_cpu, "cells/s/core", True))

        for workers in (2, 8):
            base_rate_n, _, _ = baseline_rate(sample, min(workers, cores))
            wall, per_cpu, ok = trajectories(pool, programs, workers)
            print(f"(c) pool, {workers} concurrent trajectories: {wall:.1f} programs/s "
                  f"({per_cpu:.1f} per CPU second), {ok}/{len(programs)} correct; "
                  f"python -c x{min(workers, cores)}: {base_rate_n:.2f} programs/s")
            cases.append(case(f"c_pool_{workers}", base_rate_n, wall, "programs/s", True))
    for row in cases:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
