"""Our gold against the official harness's ``gt``: every row where they are not equivalent is
listed, with the official normalisation that caused it.

The official script builds its gold with ``strip_string`` (and per-dataset rules in
``parse_ground_truth``), which mangles many answers: units and single letters are deleted as
"unit words" (college_math ``3 m^{4}-2 m+6`` -> ``3^{4}-2+6``), spaces, ``$`` and ``\\left``
dropped, number words read as numbers, olympiadbench keeps ``final_answer[0]``. We keep each
dataset's own gold (multiple choice: the letter, equal to ``gt``). ``tests/data/
official_gt_not_equivalent.tsv`` lists every reference row whose ``gt`` is not
``is_equivalent`` to our gold, with the explanation; the fast test checks that each listed row
is explained by the official normalisation steps (``NORMALISATIONS``, applied in the official
order, then characters deleted as its unit-word/``and``/space removal deletes them, inserting
only what its fixes insert); the slow test recomputes the whole list with ``is_equivalent`` so
a new dataset (or a grader change) cannot add an unexplained row.
"""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

LISTING = Path(__file__).parent / "data" / "official_gt_not_equivalent.tsv"
REFERENCE = "reference/official_qwen25_math_cot_prompts.jsonl.gz"
#: the datasets this project added for the Qwen2.5-Math card: their listed rows, pinned.
NEW_DATASETS = {"cmath": 0, "cn_middle_school": 6, "gaokao2024_I": 0, "gaokao2024_II": 0,
                "gaokao2024_mix": 3, "gaokao_math_cloze": 2, "gaokao_math_qa": 0, "mmlu_stem": 0,
                "sat_math": 0}


# --- the official normalisation, as its effects (facts about the official strip_string) ------

def slash_to_frac(s: str) -> str:
    """``a/b`` -> ``\\frac{a}{b}`` when both sides are integers or contain a square root."""
    parts = s.split("/")
    if len(parts) != 2:
        return s
    if all("sqrt" in p or re.fullmatch(r"-?\d+", p) for p in parts):
        return f"\\frac{{{parts[0]}}}{{{parts[1]}}}"
    return s

NORMALISATIONS = (
    ("$ signs dropped", lambda s: s.replace("$", "")),
    ("line breaks dropped", lambda s: s.replace("\n", "")),
    ("trailing full stop dropped", lambda s: s.strip().rstrip(".")),
    ("array/bmatrix -> pmatrix", lambda s: re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s).replace("\\end{array}", "\\end{pmatrix}").replace("bmatrix", "pmatrix")),
    ("tfrac/dfrac -> frac", lambda s: s.replace("tfrac", "frac").replace("dfrac", "frac")),
    ("\\neq/\\leq/\\geq -> \\ne/\\le/\\ge", lambda s: s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")),
    ("\\left/\\right dropped", lambda s: s.replace("\\left", "").replace("\\right", "")),
    ("\\{ \\} unescaped", lambda s: s.replace("\\{", "{").replace("\\}", "}")),
    ("trailing \\text{unit} dropped", lambda s: re.sub(r"\\text\{.*?\}$", "", s).strip() or s),
    ("degree sign dropped", lambda s: s.replace("^{\\circ}", "").replace("^\\circ", "")),
    ("\\text{} unwrapped", lambda s: re.sub(r"\\text\{(.*?)\}", r"\1", s)),
    ("x=/y=/z= dropped", lambda s: re.sub(r"[xyz](=|\\in|\\to)", "", s)),
    ("percent sign dropped", lambda s: s.replace("\\%", "").replace("%", "")),
    ("\\mathbf dropped", lambda s: s.replace("\\mathbf", "")),
    ("\\mbox{} dropped", lambda s: re.sub(r"\\mbox\{.*?\}", "", s)),
    ("j -> i", lambda s: s.replace("j", "i") if "i" not in s else s),
    ("trailing zeros dropped (1.0 -> 1)", lambda s: re.sub(r"(\d+)\.0*$", r"\1", re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s))),
    ("short left-hand side dropped (k = v -> v)", lambda s: s.split("=")[1] if len(s.split("=")) == 2 and len(s.split("=")[0].strip()) <= 2 else s),
    ("inf -> \\infty", lambda s: s.replace("inf", "\\infty") if "\\infty" not in s else s),
    ("spaces dropped", lambda s: s.replace(" ", "")),
    ("\\sqrt2 -> \\sqrt{2}", lambda s: re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s)),
    ("a/b -> \\frac{a}{b}", slash_to_frac),
)
INSERTED = set("0{}")

def deletions_explain(gt: str, text: str) -> bool:
    """gt from text by deleting characters (unit words, 'and'), inserting only 0 { } (official fixes)."""
    if len(gt) * len(text) > 6_000_000:
        return False
    reach = [True] + [False] * len(gt)  # reach[j]: gt[:j] formed from the text read so far
    for j in range(1, len(gt) + 1):
        reach[j] = reach[j - 1] and gt[j - 1] in INSERTED
    for ch in text:
        new = [True] + [False] * len(gt)
        for j in range(1, len(gt) + 1):
            new[j] = reach[j] or (reach[j - 1] and gt[j - 1] == ch) or (new[j - 1] and gt[j - 1] in INSERTED)
        reach = new
    return reach[-1]

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
                "eleven", "twelve")

def number_word(ours: str, gt: str) -> bool:
    """The official reads number words in a sentence as the number (``Eight pieces`` -> 8)."""
    return gt.isdigit() and re.search(rf"\b({'|'.join(NUMBER_WORDS)})\b", ours, re.I) is not None

def explain(candidates: list[tuple[str, str]], gt: str) -> tuple[str, list[str]] | None:
    """(source, steps) that turn one candidate into ``gt``; the ``x=`` step is tried without too."""
    for (source, start), skip in ((c, s) for c in candidates for s in ("", "x=/y=/z= dropped")):
        text, steps = start, []
        for name, fn in NORMALISATIONS:
            if name == skip:
                continue
            new = fn(text)
            if new != text:
                steps.append(name)
                text = new
        if text == gt:
            return source, steps
        if number_word(start, gt):
            return source, ["number words read as the number"]
        if deletions_explain(gt, text):
            return source, [*steps, "unit words / 'and' deleted"]
    return None

def official_sources(dataset: str, row: dict):
    """The raw text the official harness takes its gold from, where it is not our gold's."""
    if dataset in ("math", "minerva_math"):
        tail = str(row["solution"]).split("boxed")[-1]
        yield "the text after the solution's last 'boxed'", tail
    if dataset == "olympiadbench":
        yield "final_answer[0] only", str(row["final_answer"][0]).strip("$")
    if dataset == "asdiv":
        yield "every (...) removed", re.sub(r"\(.*?\)", "", row["answer"])



# --- the tests -------------------------------------------------------------------------------

def read_listing() -> dict[tuple[str, int], tuple[str, str]]:
    rows = {}
    for line in LISTING.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            dataset, idx, source, steps = line.split("\t")
            rows[(dataset, int(idx))] = (source, steps)
    return rows


@pytest.fixture(scope="module")
def rows(shared_data: Path) -> list[tuple[dict, object, dict]]:
    """(reference row, our problem, raw row) wherever our gold and ``gt`` differ as strings."""
    from eval.datasets import load_benchmark

    path = shared_data / REFERENCE
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        reference = [json.loads(line) for line in handle]
    problems, raw, found = {}, {}, []
    for ref in reference:
        name = ref["dataset"]
        if name not in problems:
            file = shared_data / "benchmarks" / f"{name}.jsonl"
            problems[name] = load_benchmark(str(file))
            raw[name] = [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
        problem = problems[name][ref["idx"]]
        if problem.gold is not None and problem.gold != ref["gt"]:
            found.append((ref, problem, raw[name][ref["idx"]]))
    return found


def test_every_listed_row_is_explained_by_the_official_normalisation(rows):
    listing = read_listing()
    by_key = {(ref["dataset"], ref["idx"]): (ref, problem, raw) for ref, problem, raw in rows}
    unexplained = []
    for key, (source, steps) in listing.items():
        assert key in by_key, f"{key} is listed but our gold now equals gt"
        ref, problem, raw = by_key[key]
        got = explain([("our gold", problem.gold), *official_sources(key[0], raw)], ref["gt"])
        if got is None or got != (source, [s for s in steps.split("; ") if s]):
            unexplained.append((key, problem.gold[:60], ref["gt"][:60], got))
    assert not unexplained, f"{len(unexplained)} rows not explained as listed, first {unexplained[:3]}"


def test_the_new_datasets_add_only_explained_rows():
    counts = {name: 0 for name in NEW_DATASETS}
    for dataset, _ in read_listing():
        if dataset in counts:
            counts[dataset] += 1
    assert counts == NEW_DATASETS


@pytest.mark.slow  # ~7,000 is_equivalent calls (about 10 minutes on a busy 2-core machine)
def test_the_listing_is_exactly_the_rows_that_are_not_equivalent(rows):
    from eval import is_equivalent

    not_equivalent = {(ref["dataset"], ref["idx"]) for ref, problem, _ in rows
                      if not is_equivalent(problem.gold, ref["gt"], timeout=5.0)}
    listed = set(read_listing())
    assert not_equivalent - listed == set(), f"unlisted: {sorted(not_equivalent - listed)[:10]}"
    assert listed - not_equivalent == set(), f"now equivalent: {sorted(listed - not_equivalent)[:10]}"
