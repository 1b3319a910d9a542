"""Held-out-style probe of the grader on real material (not a timed test, not a unit test).

Builds cases from ../shared/data and counts, per probe family, the verdicts of
``eval.extract.extract_answer`` / ``eval.equivalence.judge`` that agree with the expected
one, the false positives (judged equal, must not be) and the false negatives:

- ``math_vs_math500``: the last box of each full-MATH solution against the MATH-500 gold of
  the same problem, and each MATH-500 solution's extracted answer against its own gold;
- ``respell``: every gold against meaning-preserving re-spellings (``\\dfrac``, ``\\left(``,
  ``$..$``, spaces, ``x = ``, ``\\frac12``, ``a/b``, exact decimals, ``12.0``, thousands
  commas, ``pmatrix``/``bmatrix``, set order, ``\\sqrt2``, dropped ``^\\circ``/``\\text{}``);
- ``perturb``: every gold against perturbations that change the answer (off by one, x10,
  sign flip, swapped tuple, open/closed end, missing set element, last digit of a large
  integer, ``34`` vs ``3,4``, another variable name);
- ``cross``: neighbouring golds (sorted by spelling, same dataset) and seeded random pairs
  whose spellings differ: every "equal" verdict is listed for review (some are truly equal);
- ``numeric_golds``: float golds of word-problem sets (``12.0``) against integer predictions,
  and their off-by-one;
- ``solution_extract``: extraction from reference solutions (GSM8K ``####``, AQuA rationales,
  MATH-500 solutions) against the gold;
- ``model_outputs``: the 800 Qwen2.5-Math CoT samples (verdicts against the corrected file
  verdicts) and the ToRA GSM8K trajectories (extraction against the file's ``pred``).

Cases the probe cannot know the truth of (``cross`` pairs judged equal) are printed with
``?`` and counted separately. Ends with one JSON line per family.

    python bench/grader_probe.py [--data ../shared/data] [--show 20] [--family NAME]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"
SEED = 20240917


@dataclass(frozen=True)
class Case:
    family: str
    source: str  # e.g. "math500 idx 17: respell dfrac"
    pred: str | None
    gold: str | None
    expected: bool | None  # None: unknown truth (reviewed by hand)
    response: str | None = None  # when set, the prediction is extracted from it first
    dataset: str | None = None


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def benchmark_golds(data: Path) -> Iterator[tuple[str, int, str]]:
    """(dataset, row, gold) for every expression-type gold, through ``load_benchmark``."""
    from eval.datasets import load_benchmark

    for name in ("math500", "math", "minerva_math", "olympiadbench", "college_math",
                 "gaokao2023en", "carp_en", "aime24", "amc23"):
        for i, problem in enumerate(load_benchmark(str(data / "benchmarks" / f"{name}.jsonl"))):
            if problem.gold:
                yield name, i, problem.gold


# --- re-spellings (must stay equal) -----------------------------------------------------------

RESPELLINGS: dict[str, Callable[[str], str | None]] = {
    "dfrac": lambda g: g.replace("\\frac", "\\dfrac") if "\\frac" in g else None,
    "frac": lambda g: g.replace("\\dfrac", "\\frac") if "\\dfrac" in g else None,
    "left_right": lambda g: g.replace("(", "\\left(").replace(")", "\\right)")
    if "(" in g and "\\left" not in g and g.count("(") == g.count(")") else None,
    "dollars": lambda g: f"${g}$",
    "boxed": lambda g: f"\\boxed{{{g}}}",
    "no_spaces": lambda g: re.sub(r"\s*([,=+()<>])\s*", r"\1", g) if re.search(r"\s[,=+()<>]|[,=+()<>]\s", g) else None,
    "comma_space": lambda g: re.sub(r",(?=[^\s\\])(?!\d{3}(?!\d))", ", ", g) if re.search(r",(?=[^\s\\])(?!\d{3}(?!\d))", g) else None,
    "assign": lambda g: f"x = {g}" if re.fullmatch(r"-?\d+(\.\d+)?|\\frac\{\d+\}\{\d+\}", g) else None,
    "frac12": lambda g: re.sub(r"\\frac\{(\d)\}\{(\d)\}", r"\\frac\1\2", g) if re.search(r"\\frac\{\d\}\{\d\}", g) else None,
    "slash": lambda g: re.sub(r"^(-?)\\frac\{(\d+)\}\{(\d+)\}$", r"\1\2/\3", g) if re.fullmatch(r"-?\\frac\{\d+\}\{\d+\}", g) else None,
    "decimal": lambda g: exact_decimal(g),
    "point_zero": lambda g: g + ".0" if re.fullmatch(r"-?\d+", g) else None,
    "thousands": lambda g: f"{int(g):,}" if re.fullmatch(r"-?\d{4,}", g) else None,
    "bmatrix": lambda g: g.replace("pmatrix", "bmatrix") if "pmatrix" in g else None,
    "set_order": lambda g: reversed_set(g),
    "sqrt_short": lambda g: re.sub(r"\\sqrt\{(\d)\}", r"\\sqrt\1", g) if re.search(r"\\sqrt\{\d\}", g) else None,
    "no_degree": lambda g: re.sub(r"\^\s*\{?\\circ\}?", "", g) if re.fullmatch(r"-?[\d.]+\s*\^\s*\{?\\circ\}?", g) else None,
    "no_text_unit": lambda g: re.sub(r"\s*\\(?:text|mbox)\{\s*[a-z ]+\}$", "", g)
    if re.fullmatch(r"-?[\d.,]+\s*\\(?:text|mbox)\{\s*[a-z ]+\}", g) else None,
    "unwrap_text": lambda g: re.sub(r"^\\text\{(.*)\}$", r"\1", g) if re.fullmatch(r"\\text\{[^{}]*\}", g) else None,
}


def exact_decimal(gold: str) -> str | None:
    match = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", gold)
    if not match or int(match.group(3)) == 0:
        return None
    from fractions import Fraction

    value = Fraction(int(match.group(2)), int(match.group(3)))
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    if denominator != 1:
        return None
    digits = 0
    while (value * 10**digits).denominator != 1:
        digits += 1
    return match.group(1) + f"{float(value):.{digits}f}"


def reversed_set(gold: str) -> str | None:
    match = re.fullmatch(r"\\\{([^{}]*)\\\}", gold)
    if not match or "," not in match.group(1):
        return None
    return "\\{" + ", ".join(reversed([p.strip() for p in match.group(1).split(",")])) + "\\}"


# --- perturbations (must differ) --------------------------------------------------------------


UNIT_POWER = re.compile(r"(?:\\(?:mathrm|text|mbox)\s*\{[^{}]*\}|(?<![\\a-zA-Z])[a-z]{2,})\s*\^\s*\{?(\d)\}?")


def bump_last_integer(gold: str, delta: int = 1) -> str | None:
    """The last integer changed; not a unit's power (``cm^2``: see ``unit_power``) nor a
    base subscript (``8_9`` and ``8_10`` are the same number)."""
    units = [m.span(1) for m in UNIT_POWER.finditer(gold)]
    matches = [m for m in re.finditer(r"(?<![\d._])\d+(?![\d.])", gold)
               if not any(a <= m.start() < b for a, b in units)]
    if not matches:
        return None
    m = matches[-1]
    return gold[:m.start()] + str(int(m.group(0)) + delta) + gold[m.end():]


def times_ten(gold: str) -> str | None:
    return gold + "0" if re.fullmatch(r"[1-9]\d*", gold) else None  # 1 vs 10


def flip_sign(gold: str) -> str | None:
    if "\\pm" in gold or "," in gold or "=" in gold or "\\infty" in gold or re.search(r"[<>]|\\[lg]e", gold):
        return None
    if not re.search(r"[1-9a-zA-Z]", re.sub(r"\\[a-zA-Z]+", "", gold)):
        return None  # -0 is 0
    return gold[1:] if gold.startswith("-") and "-" not in gold[1:] and "+" not in gold else f"-({gold})"


def swap_tuple(gold: str) -> str | None:
    match = re.fullmatch(r"\\?(?:left)?\(([^(),]+),([^(),]+)\\?(?:right)?\)", gold.replace(" ", ""))
    if not match or re.sub(r"\\right|\\left", "", match.group(1)) == re.sub(r"\\right|\\left", "", match.group(2)):
        return None
    return f"({match.group(2)}, {match.group(1)})"


def toggle_interval(gold: str) -> str | None:
    if not re.fullmatch(r"[(\[][^()\[\]]*,[^()\[\]]*[)\]]", gold) or "\\infty" in gold.split(",")[0]:
        return None
    return ("[" if gold[0] == "(" else "(") + gold[1:]


def drop_element(gold: str) -> str | None:
    match = re.fullmatch(r"(\\\{)?([^{}()\[\]]*)(\\\})?", gold)
    if not match or "," not in match.group(2) or "=" in gold:
        return None
    parts = [p.strip() for p in match.group(2).split(",")]
    if len(set(parts)) != len(parts) or any(not re.search(r"\d", p) for p in parts):
        return None
    if any(re.fullmatch(r"\d{3}", p) for p in parts[1:]):
        return None  # "1,000" is a number, not a list
    body = ", ".join(parts[:-1])
    return (match.group(1) or "") + body + (match.group(3) or "")


def last_digit(gold: str) -> str | None:
    if not re.fullmatch(r"\d{6,}", gold):
        return None
    return gold[:-1] + str((int(gold[-1]) + 1) % 10)


def digits_as_list(gold: str) -> str | None:
    return f"{gold[0]},{gold[1]}" if re.fullmatch(r"[1-9]\d", gold) else None


def rename_variable(gold: str) -> str | None:
    letters = set(re.findall(r"(?<![\\a-zA-Z])([a-df-hj-z])(?![a-zA-Z])", gold))
    if len(letters) != 1 or "y" in gold or re.search(r"\\(?:text|mathrm|mbox|sum|prod|int)", gold):
        return None  # a unit letter or a bound variable is not a free variable
    (letter,) = letters
    return re.sub(rf"(?<![\\a-zA-Z]){letter}(?![a-zA-Z])", "y", gold)


def decimal_times_hundred(gold: str) -> str | None:
    match = re.fullmatch(r"0\.(\d\d)", gold)
    return str(int(match.group(1))) if match and int(match.group(1)) else None


def unit_power(gold: str) -> str | None:
    """``15 cm^2`` -> ``15 cm^3`` (the number kept, the unit's power changed)."""
    match = UNIT_POWER.search(gold)
    if not match:
        return None
    power = "3" if match.group(1) == "2" else "2"
    return gold[:match.start(1)] + power + gold[match.end(1):]


def is_derivation(gold: str) -> bool:
    """A worked derivation (several ``=``, or prose) rather than one answer: changing an
    intermediate step does not change its final value, so perturbations skip it."""
    return gold.count("=") > 1 or len(re.findall(r"(?<![\\a-zA-Z])[a-zA-Z]{4,}", gold)) > 3


PERTURBATIONS: dict[str, Callable[[str], str | None]] = {
    "plus_one": bump_last_integer,
    "minus_one": lambda g: bump_last_integer(g, -1) if re.search(r"(?<![\d.])([1-9]\d*|0*[1-9])(?![\d.])", g) else None,
    "times_ten": times_ten,
    "sign": flip_sign,
    "swap_tuple": swap_tuple,
    "interval_end": toggle_interval,
    "drop_element": drop_element,
    "last_digit": last_digit,
    "digits_as_list": digits_as_list,
    "list_as_digits": lambda g: g.replace(",", "").replace(" ", "") if re.fullmatch(r"\d, ?\d", g) else None,
    "rename_variable": rename_variable,
    "hundredths": decimal_times_hundred,
    "unit_power": unit_power,
}


def respell_cases(data: Path) -> Iterator[Case]:
    for name, i, gold in benchmark_golds(data):
        for label, respell in RESPELLINGS.items():
            variant = respell(gold)
            if variant is not None and variant != gold:
                yield Case("respell", f"{name} idx {i}: {label}", variant, gold, True)


def perturb_cases(data: Path) -> Iterator[Case]:
    for name, i, gold in benchmark_golds(data):
        if is_derivation(gold):
            continue
        for label, perturb in PERTURBATIONS.items():
            variant = perturb(gold)
            if variant is not None and variant.strip() and variant != gold:
                yield Case("perturb", f"{name} idx {i}: {label}", variant, gold, False)


def cross_cases(data: Path) -> Iterator[Case]:
    """Neighbouring golds in spelling order, and random pairs, within each dataset."""
    from eval.normalize import canonical_text

    by_dataset: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for name, i, gold in benchmark_golds(data):
        by_dataset[name].append((i, gold))
    rng = random.Random(SEED)
    for name, golds in by_dataset.items():
        ordered = sorted(golds, key=lambda g: canonical_text(g[1]))
        pairs = list(itertools.pairwise(ordered))
        pairs += [tuple(rng.sample(golds, 2)) for _ in range(min(400, len(golds)))]
        seen = set()
        for (i, a), (j, b) in pairs:
            if canonical_text(a) == canonical_text(b) or (a, b) in seen:
                continue
            seen.add((a, b))
            yield Case("cross", f"{name} idx {i} vs {j}", a, b, None)


def math_vs_math500_cases(data: Path) -> Iterator[Case]:
    from eval.datasets import gold_last_boxed

    full = {row["problem"].strip(): row for row in read_jsonl(data / "benchmarks" / "math.jsonl")}
    for i, row in enumerate(read_jsonl(data / "benchmarks" / "math500.jsonl")):
        same = full.get(row["problem"].strip())
        if same is not None:
            yield Case("math_vs_math500", f"math500 idx {i} (math idx {same.get('idx')})",
                       gold_last_boxed(same["solution"]), row["answer"], True)
        yield Case("solution_extract", f"math500 idx {i} solution", None, row["answer"], True,
                   response=row["solution"], dataset="math500")


def numeric_gold_cases(data: Path) -> Iterator[Case]:
    from eval.datasets import load_benchmark

    for name in ("svamp", "mawps", "asdiv", "amc23", "gsm8k", "aime24"):
        for i, problem in enumerate(load_benchmark(str(data / "benchmarks" / f"{name}.jsonl"))):
            gold = problem.gold or ""
            match = re.fullmatch(r"(-?\d+)\.0+", gold)
            if match and int(match.group(1)):
                yield Case("numeric_golds", f"{name} idx {i}: integer", match.group(1), gold, True)
                yield Case("numeric_golds", f"{name} idx {i}: off by one", str(int(match.group(1)) + 1), gold, False)
                yield Case("numeric_golds", f"{name} idx {i}: x10", match.group(1) + "0", gold, False)
            elif re.fullmatch(r"-?\d*\.\d+", gold):
                yield Case("numeric_golds", f"{name} idx {i}: same decimal", gold.rstrip("0"), gold, True)
                yield Case("numeric_golds", f"{name} idx {i}: decimal off", str(round(float(gold) + 0.1, 6)), gold, False)
            elif re.fullmatch(r"-?\d+", gold):
                yield Case("numeric_golds", f"{name} idx {i}: as float", gold + ".0", gold, True)
                yield Case("numeric_golds", f"{name} idx {i}: off by one", str(int(gold) + 1), gold, False)


def solution_cases(data: Path) -> Iterator[Case]:
    for i, row in enumerate(read_jsonl(data / "benchmarks" / "gsm8k.jsonl")):
        gold = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
        yield Case("solution_extract", f"gsm8k idx {i} answer text", None, gold, True,
                   response=row["answer"], dataset="gsm8k")
    for i, row in enumerate(read_jsonl(data / "benchmarks" / "aqua.jsonl")):
        yield Case("solution_extract", f"aqua idx {i} rationale", None, row["correct"], True,
                   response=row["rationale"], dataset="aqua")
    yield from olympiad_solution_cases(data)


def olympiad_solution_cases(data: Path) -> Iterator[Case]:
    """OlympiadBench reference solutions that state an answer (most are proofs that do not:
    those are skipped) against ``final_answer``."""
    import ast

    from eval.datasets import gold_first_of_list
    from eval.extract import extract_answer

    for row in read_jsonl(data / "benchmarks" / "olympiadbench.jsonl"):
        solutions = row["solution"]
        solution = (ast.literal_eval(solutions) if isinstance(solutions, str) else solutions)[0]
        if extract_answer(solution, dataset="olympiadbench") is not None:
            yield Case("solution_extract", f"olympiadbench id {row['id']} solution", None,
                       gold_first_of_list(row["final_answer"]), True, response=solution,
                       dataset="olympiadbench")


def model_output_cases(data: Path) -> Iterator[Case]:
    rows = read_jsonl(data / "model_outputs" / "qwen25_math_instruct_math_cot_100x8.jsonl")
    wrong_in_file = {(3, i) for i in range(8)} | {(72, 7)}
    for row in rows:
        for k, response in enumerate(row["code"]):
            expected = bool(row["score"][k]) != ((int(row["idx"]), k) in wrong_in_file)
            yield Case("model_outputs", f"qwen_cot idx {row['idx']} sample {k}", None, row["answer"],
                       expected, response=response, dataset="math")
    for name in ("tora_code_34b_gsm8k_tir", "tora_70b_gsm8k_tir"):
        for row in read_jsonl(data / "model_outputs" / f"{name}.jsonl"):
            pred = row["pred"][0]
            if pred is None or not str(pred).strip():
                continue
            yield Case("model_outputs", f"{name} idx {row['idx']} (vs pred)", None, str(pred), True,
                       response=row["code"][0], dataset="gsm8k")


FAMILIES: dict[str, Callable[[Path], Iterator[Case]]] = {
    "math_vs_math500": math_vs_math500_cases,
    "respell": respell_cases,
    "perturb": perturb_cases,
    "cross": cross_cases,
    "numeric_golds": numeric_gold_cases,
    "solution_extract": solution_cases,
    "model_outputs": model_output_cases,
}


# --- running --------------------------------------------------------------------------------


def verdict(case: Case, timeout: float) -> tuple[bool, str, str | None]:
    """(judged equal, status, the prediction compared)."""
    from eval.equivalence import judge
    from eval.extract import extract_answer

    pred = case.pred
    if case.response is not None:
        pred = extract_answer(case.response, dataset=case.dataset)
        if pred is None:
            return False, "no_answer", None
    status = judge(pred, case.gold, timeout=timeout)
    return status == "correct", status, pred


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--family", action="append", choices=sorted(FAMILIES))
    parser.add_argument("--show", type=int, default=30, help="failures listed per family")
    parser.add_argument("--timeout", type=float, default=3.0)
    args = parser.parse_args(argv)
    if not (args.data / "benchmarks").is_dir():
        print(f"{args.data}: no benchmarks/ folder (needs ../shared/data)", file=sys.stderr)
        return 2
    rows = []
    for family in args.family or list(FAMILIES):
        counts: Counter[str] = Counter()
        failures: list[str] = []
        start = time.perf_counter()
        for case in FAMILIES[family](args.data):
            equal, status, pred = verdict(case, args.timeout)
            counts["cases"] += 1
            counts[status] += 1
            if case.expected is None:
                kind = "review" if equal else "agree"
            elif equal == case.expected:
                kind = "agree"
            else:
                kind = "false_positive" if equal else "false_negative"
            counts[kind] += 1
            if kind != "agree" and len(failures) < args.show:
                mark = {"review": "?", "false_positive": "FP", "false_negative": "FN"}[kind]
                failures.append(f"  {mark} {case.source}: pred {pred!r} gold {case.gold!r} ({status})")
        seconds = time.perf_counter() - start
        print(f"{family}: {counts['cases']} cases, {counts['agree']} agree, "
              f"{counts['false_positive']} false positives, {counts['false_negative']} false negatives, "
              f"{counts['review']} to review, {counts['timeout']} timeouts, {counts['invalid']} invalid "
              f"({seconds:.1f} s)")
        print("\n".join(failures)) if failures else None
        rows.append({"bench": "grader_probe", "case": family, "baseline": counts["cases"],
                     "ours": counts["agree"], "unit": "cases",
                     "ratio": round(counts["agree"] / counts["cases"], 4) if counts["cases"] else None,
                     "false_positives": counts["false_positive"], "false_negatives": counts["false_negative"],
                     "review": counts["review"]})
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    sys.exit(main())
