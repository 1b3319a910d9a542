"""Benchmark loading: a registry of dataset specs and ``load_benchmark``.

Each ``DatasetSpec`` names the question field(s), the gold field and its parser, the answer
type, the metadata to keep (level, subject, ...), the extraction policy
(``eval.extract.POLICIES``) and where it lives on the Hugging Face hub. Problems come from a
local JSONL file, from a folder holding ``{name}.jsonl`` or ``{name}/{split}.jsonl``, or from
the hub through ``datasets`` (imported lazily, only then). ``limit`` takes the first N in file
order.

Questions are built per dataset exactly as the official Qwen2.5-Math harness builds them
(``QUESTION_BUILDERS``: options appended as ``Answer Choices: (A) ...`` or ``选项: (A) ...``,
SVAMP's full stop, the ``(Yes or No)`` / ``(True or False)`` suffix), so the rendered prompts
equal the official ones byte for byte. Every multiple-choice row gets ``Problem.choices`` as
``("(A) text", ...)`` (from its options field, or read from the question when the options are
inline) and the option letter(s) as gold; a multiple-choice row whose options cannot be read
is a ``DataError``.

What it deliberately does not do: build prompts, download anything when a local file is
given, or guess a gold answer it cannot parse (a row without one is a ``DataError`` naming
file:line).
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from eval.errors import DataError, DataUnavailable
from eval.normalize import boxed_spans
from eval.policies import (  # a leaf: eval.extract imports this module, never the reverse
    POLICIES,
    ExtractionPolicy,
)

log = logging.getLogger(__name__)

DATA_DIR_ENV = "QWEN_MATH_DATA_DIR"


@dataclass(frozen=True)
class Problem:
    """One benchmark problem."""

    dataset: str
    idx: int
    problem_id: str
    question: str
    gold: str | None
    answer_type: str = "expression"  # number | expression | choice | text
    choices: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)


# --- gold parsers ---------------------------------------------------------------------------


def gold_as_is(value: Any) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text or None


def gold_after_hashes(value: Any) -> str | None:
    """GSM8K: the text after ``#### `` (thousands commas dropped)."""
    text = str(value)
    if "####" not in text:
        return None
    return text.rsplit("####", 1)[1].strip().replace(",", "") or None


def gold_last_boxed(value: Any) -> str | None:
    spans = boxed_spans(str(value))
    return spans[-1][2].strip() if spans else None


def gold_first_of_list(value: Any) -> str | None:
    """OlympiadBench: ``final_answer`` is a list (or its Python repr); several are joined."""
    items = value
    if isinstance(value, str):
        try:
            items = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            items = [value]
    if not isinstance(items, list | tuple):
        items = [items]
    answers = [str(item).strip() for item in items if str(item).strip()]
    return ", ".join(answers) or None


def gold_without_unit_note(value: Any) -> str | None:
    """ASDiv: ``9 (apples)`` -> ``9``."""
    text = re.sub(r"\s*\([^()]*\)\s*$", "", str(value)).strip()
    return text or None


def gold_index_letter(value: Any) -> str | None:
    """MMLU: the 0-based index of the right choice, as its letter (``2`` -> ``C``)."""
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip().isdigit():
        return None
    index = int(str(value).strip())
    return CHOICE_LETTERS[index] if index < len(CHOICE_LETTERS) else None


def gold_letters(value: Any) -> str | None:
    """GaoKao Math QA: option letters with the spaces between them dropped (``A B D`` -> ``ABD``)."""
    return gold_as_is(re.sub(r"\s+", "", str(value))) if value is not None else None


GOLD_PARSERS: dict[str, Callable[[Any], str | None]] = {
    "as_is": gold_as_is,
    "letters": gold_letters,
    "index_letter": gold_index_letter,
    "after_hashes": gold_after_hashes,
    "last_boxed": gold_last_boxed,
    "list": gold_first_of_list,
    "without_unit_note": gold_without_unit_note,
}

CHOICE_LETTERS = "ABCDEFGHIJ"


# --- reference solutions: each dataset's own worked solution, as text a grader reads ----------
#
# Used to check extraction and grading against the datasets themselves (a worked solution
# graded against its own gold must be right). A reader gets the solution field's value and the
# whole row.


def solution_as_is(value: Any, row: Mapping[str, Any]) -> str:
    return str(value)


def solution_before_hashes(value: Any, row: Mapping[str, Any]) -> str:
    """GSM8K: the worked solution is the text before ``####`` (the gold follows it)."""
    return str(value).split("####")[0]


# ASDiv writes a division with remainder as ``q r m`` (``47/6=7 r5``) and says in the row's
# ``solution_type`` which part answers the question (the ASDiv paper's solution types).
_REMAINDER = re.compile(r"=\s*(\d+)\s*r\s*(\d+)\s*$")
ASDIV_REMAINDER_READINGS: dict[str, Callable[[int, int], int]] = {
    "Surplus": lambda quotient, remainder: remainder,  # what is left over
    "Floor-Division": lambda quotient, remainder: quotient,  # how many whole groups
    "Ceil-Division": lambda quotient, remainder: quotient + (remainder > 0),  # how many to hold all
}


def solution_asdiv_formula(value: Any, row: Mapping[str, Any]) -> str:
    """ASDiv: the formula; one ending in ``q r m`` is followed by the value its solution type
    reads from it (``r0`` is an exact division: the quotient)."""
    formula = str(value).strip()
    match = _REMAINDER.search(formula)
    if match is None:
        return formula
    quotient, remainder = int(match.group(1)), int(match.group(2))
    reading = ASDIV_REMAINDER_READINGS.get(str(row.get("solution_type")))
    if reading is None:
        if remainder:
            return formula  # a remainder with no solution type naming the part: no answer read
        reading = ASDIV_REMAINDER_READINGS["Floor-Division"]
    return f"{formula}\nThe answer is {reading(quotient, remainder)}."


SOLUTION_READERS: dict[str, Callable[[Any, Mapping[str, Any]], str]] = {
    "as_is": solution_as_is,
    "before_hashes": solution_before_hashes,
    "asdiv_formula": solution_asdiv_formula,
}


# --- questions and options, per dataset as the official Qwen2.5-Math harness builds them --------
#
# A builder gets the row (fields already checked present) and returns the question text before
# the official yes/no suffix and the final strip; a choice parser returns the options as
# ``("(A) text", "(B) text", ...)`` (empty when the row has none).


def question_from_fields(spec: DatasetSpec, row: Mapping[str, Any]) -> str:
    """One field as it is, or several fields each stripped and joined by a space (ASDiv)."""
    if len(spec.question_fields) == 1:
        return str(row[spec.question_fields[0]])
    return " ".join(str(row[name]).strip() for name in spec.question_fields)


def question_svamp(spec: DatasetSpec, row: Mapping[str, Any]) -> str:
    """SVAMP: the body ends with a full stop before the question is appended."""
    body = str(row["Body"]).strip()
    return f"{body if body.endswith('.') else body + '.'} {str(row['Question']).strip()}"


def question_with_choices(spec: DatasetSpec, row: Mapping[str, Any]) -> str:
    """English multiple choice: ``question\nAnswer Choices: (A) ... (B) ...``."""
    return f"{str(row[spec.question_fields[0]]).strip()}\nAnswer Choices: {options_line(spec, row)}"


def question_with_zh_choices(spec: DatasetSpec, row: Mapping[str, Any]) -> str:
    """GaoKao Math QA: ``question\n选项: (A) ... (B) ...``."""
    return f"{str(row[spec.question_fields[0]]).strip()}\n选项: {options_line(spec, row)}"


def question_tabmwp(spec: DatasetSpec, row: Mapping[str, Any]) -> str:
    """TabMWP: the table (with its title when it has one), the question, then its choices."""
    title = f'regarding "{row["table_title"]}" ' if row.get("table_title") else ""
    question = f'Read the following table {title}and answer a question:\n{row["table"]}\n{row["question"]}'
    if row.get("choices"):
        question += f' Please select from the following options: {row["choices"]}'
    return question


QUESTION_BUILDERS: dict[str, Callable[[DatasetSpec, Mapping[str, Any]], str]] = {
    "fields": question_from_fields,
    "svamp": question_svamp,
    "choices": question_with_choices,
    "zh_choices": question_with_zh_choices,
    "tabmwp": question_tabmwp,
}


def options_line(spec: DatasetSpec, row: Mapping[str, Any]) -> str:
    """The options as the question shows them (each dataset's own spacing quirks kept)."""
    value = row.get(spec.choices_field or "")
    if spec.choices_style == "letter_prefixed":  # AQuA ["A)21", ...]: every "(" and ")" spaced
        return ("(" + "(".join(str(v) for v in value)).replace("(", " (").replace(")", ") ").strip()
    if spec.choices_style == "lettered_string":  # SAT "A) x B) y": " B) " -> " (B) "
        text = "(" + str(value).strip()
        for letter in "BCD":
            text = text.replace(f" {letter}) ", f" ({letter}) ")
        return text
    return " ".join(choices_of(spec, row, ""))


def choices_from_list(value: Any) -> tuple[str, ...]:
    """MMLU ``["x", "y", ...]`` -> ``("(A) x", "(B) y", ...)``."""
    items = parse_choices(value)
    return tuple(f"({CHOICE_LETTERS[i]}) {item.strip()}" for i, item in enumerate(items[:len(CHOICE_LETTERS)]))


def choices_from_mapping(value: Any) -> tuple[str, ...]:
    """GaoKao Math QA ``{"A": "x", ...}`` -> ``("(A) x", ...)`` in the file's order."""
    if not isinstance(value, Mapping):
        return ()
    return tuple(f"({key}) {text}" for key, text in value.items())


#: an option marker inside text: ``(A) ``, ``A) ``, ``A.``, ``A．``, ``A、`` (or a bare ``A``
#: before a formula) after a space, a line start or an opening bracket.
OPTION_MARKER = r"(?:^|(?<=[\s(（]))\(?{letter}(?:\s*[.．、)）:：]|\s+(?=[\\$]))"


def choices_in_text(text: str) -> tuple[str, ...]:
    """Options written inline (``... A. x B. y C. z D. w``): the last run of A, B, C, ... in order."""
    starts = [m for m in re.finditer(OPTION_MARKER.format(letter="A"), text, re.M)]
    for start in reversed(starts):
        spans = [start]
        for letter in CHOICE_LETTERS[1:]:
            found = re.compile(OPTION_MARKER.format(letter=letter), re.M).search(text, spans[-1].end())
            if found is None:
                break
            spans.append(found)
        if len(spans) >= 2:
            ends = [m.start() for m in spans[1:]] + [len(text)]
            return tuple(f"({CHOICE_LETTERS[i]}) {text[m.end():end].strip()}"
                         for i, (m, end) in enumerate(zip(spans, ends, strict=True)))
    return ()


def choices_of(spec: DatasetSpec, row: Mapping[str, Any], question: str) -> tuple[str, ...]:
    """The row's options as ``(X) text`` entries, by the spec's choices style."""
    style = spec.choices_style
    if style == "inline":
        return choices_in_text(question)
    value = row.get(spec.choices_field or "")
    if style == "mapping":
        return choices_from_mapping(value)
    if style == "list":
        return choices_from_list(value)
    if style == "letter_prefixed":
        return tuple(f"({m[1]}) {m[2].strip()}" for m in
                     (re.match(r"\s*\(?([A-J])\)\s*(.*)", str(v), re.S) for v in parse_choices(value)) if m)
    if style == "lettered_string":
        return choices_in_text(options_line(spec, row))
    return ()


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    question_fields: tuple[str, ...]
    gold_field: str
    gold_parser: str = "as_is"
    answer_type: str = "expression"
    policy: str = "default"
    metadata_fields: tuple[str, ...] = ()
    id_field: str | None = None
    choices_field: str | None = None
    hub: tuple[str, str | None] | None = None  # (path, config)
    hub_fields: Mapping[str, str] = field(default_factory=dict)  # hub name -> our name
    question_builder: str = "fields"  # QUESTION_BUILDERS
    choices_style: str | None = None  # list | mapping | letter_prefixed | lettered_string | inline
    gold_fallback_field: str | None = None  # used when the gold field is empty (choice_answer -> answer)
    mixed_choice: bool = False  # some rows are multiple choice (letter gold), the others open
    solution_field: str | None = None  # the row's own worked solution, read by SOLUTION_READERS
    solution_reader: str = "as_is"


DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in (
    DatasetSpec("gsm8k", ("question",), "answer", "after_hashes", "number", "word_problem",
                hub=("openai/gsm8k", "main"), solution_field="answer", solution_reader="before_hashes"),
    DatasetSpec("math", ("problem",), "solution", "last_boxed", metadata_fields=("level", "type"),
                hub=("EleutherAI/hendrycks_math", None), solution_field="solution"),
    DatasetSpec("math500", ("problem",), "answer", metadata_fields=("level", "subject"),
                id_field="unique_id", hub=("HuggingFaceH4/MATH-500", None), solution_field="solution"),
    DatasetSpec("aime24", ("problem",), "answer", "as_is", "number", id_field="id",
                hub=("HuggingFaceH4/aime_2024", None), solution_field="solution"),
    DatasetSpec("amc23", ("question",), "answer", "as_is", "number", id_field="id",
                hub=("math-ai/amc23", None)),
    DatasetSpec("minerva_math", ("problem",), "solution", "last_boxed", metadata_fields=("type",),
                hub=("math-ai/minervamath", None)),
    DatasetSpec("olympiadbench", ("question",), "final_answer", "list",
                metadata_fields=("subfield", "answer_type", "unit", "is_multiple_answer"),
                id_field="id", hub=("Hothan/OlympiadBench", "OE_TO_maths_en_COMP")),
    DatasetSpec("svamp", ("Body", "Question"), "Answer", "as_is", "number", "word_problem",
                metadata_fields=("Type",), id_field="ID", hub=("ChilleD/SVAMP", None),
                question_builder="svamp"),
    DatasetSpec("asdiv", ("body", "question"), "answer", "without_unit_note", "number",
                "word_problem", metadata_fields=("solution_type",), solution_field="formula",
                solution_reader="asdiv_formula"),
    DatasetSpec("mawps", ("input",), "target", "as_is", "number", "word_problem",
                metadata_fields=("type",)),
    DatasetSpec("aqua", ("question",), "correct", "as_is", "choice", "multiple_choice",
                choices_field="options", hub=("deepmind/aqua_rat", "raw"),
                question_builder="choices", choices_style="letter_prefixed", solution_field="rationale"),
    DatasetSpec("carp_en", ("content",), "answer", policy="statement", solution_field="steps"),
    DatasetSpec("college_math", ("question",), "answer",  # question_number is not unique
                metadata_fields=("data_topic", "question_number")),
    DatasetSpec("gaokao2023en", ("question",), "answer"),
    # English multiple choice (run 5-shot by the official harness)
    DatasetSpec("mmlu_stem", ("question",), "answer", "index_letter", "choice", "multiple_choice",
                metadata_fields=("type",), choices_field="choices", question_builder="choices",
                choices_style="list"),
    DatasetSpec("sat_math", ("question",), "Answer", "as_is", "choice", "multiple_choice",
                id_field="id", choices_field="options", question_builder="choices",
                choices_style="lettered_string"),
    DatasetSpec("tabmwp", ("question", "table"), "answer", metadata_fields=("ans_type", "unit"),
                question_builder="tabmwp"),
    # Chinese (the official Qwen2.5-Math evaluation files)
    DatasetSpec("cmath", ("question",), "answer", "as_is", "number", "zh_open",
                metadata_fields=("grade", "reasoning_step")),
    DatasetSpec("cn_middle_school", ("question",), "choice_answer", policy="zh_mixed",
                id_field="idx", choices_style="inline", gold_fallback_field="answer", mixed_choice=True),
    DatasetSpec("gaokao2024_I", ("question",), "answer", policy="zh_choice",  # + fill-in rows
                metadata_fields=("type",), choices_style="inline", mixed_choice=True),
    DatasetSpec("gaokao2024_II", ("question",), "answer", policy="zh_choice",  # + fill-in rows
                metadata_fields=("type",), choices_style="inline", mixed_choice=True),
    DatasetSpec("gaokao2024_mix", ("question",), "choice_answer", policy="zh_mixed",
                id_field="idx", choices_style="inline", gold_fallback_field="answer", mixed_choice=True),
    DatasetSpec("gaokao_math_cloze", ("question",), "answer", policy="zh_open"),
    DatasetSpec("gaokao_math_qa", ("question",), "label", "letters", "choice", "zh_choice",
                choices_field="options", question_builder="zh_choices", choices_style="mapping"),
)}

ALIASES = {"math-500": "math500", "math_500": "math500", "aime": "aime24", "amc": "amc23",
           "minerva": "minerva_math", "aqua_rat": "aqua", "gaokao": "gaokao2023en"}


def extraction_policy(dataset: str | None) -> ExtractionPolicy:
    """The extraction policy of a dataset (or policy) name; unknown names get the default."""
    if dataset is None:
        return POLICIES["default"]
    if dataset in POLICIES:
        return POLICIES[dataset]
    spec = find_spec(dataset)
    return POLICIES[spec.policy] if spec else POLICIES["default"]


def find_spec(name: str) -> DatasetSpec | None:
    if name in DATASETS:  # the official names keep their case (gaokao2024_I)
        return DATASETS[name]
    key = name.lower()
    key = ALIASES.get(key, key)
    by_lower = {spec_name.lower(): spec for spec_name, spec in DATASETS.items()}
    if key in by_lower:
        return by_lower[key]
    for spec in DATASETS.values():
        if spec.hub and spec.hub[0].lower() == key:
            return spec
    return None


def generic_spec(name: str, fields: Iterable[str], *, where: str | None = None) -> DatasetSpec:
    """A spec for an unregistered local file, from the fields its first row has."""
    fields = list(fields)
    question = next((f for f in ("question", "problem", "input", "query") if f in fields), None)
    gold = next((f for f in ("answer", "gold", "gt", "target", "final_answer") if f in fields), None)
    if question is None or gold is None:
        raise DataError(
            f"{where or name}: cannot tell the question and gold fields of an unregistered dataset {name!r}; "
            f"fields present: {', '.join(fields)} (known datasets: {', '.join(DATASETS)})"
        )
    return DatasetSpec(name, (question,), gold)


# --- rows -> problems -----------------------------------------------------------------------


def problem_from_row(spec: DatasetSpec, row: Mapping[str, Any], idx: int, where: str) -> Problem:
    if not isinstance(row, Mapping):
        raise DataError(f"{where}: a row must be a JSON object, got {type(row).__name__}")
    needed = [*spec.question_fields, spec.gold_field]
    missing = [name for name in needed if name not in row]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}; fields present: {', '.join(sorted(row))}")
    for name in spec.question_fields:
        if not isinstance(row[name], str | int | float) or isinstance(row[name], bool):
            raise DataError(f"{where}: field {name!r} must be text, got {type(row[name]).__name__}")
    if isinstance(row[spec.gold_field], Mapping | bool):
        raise DataError(f"{where}: field {spec.gold_field!r} must be text or a number, "
                        f"got {type(row[spec.gold_field]).__name__}")
    if spec.choices_field and spec.question_builder != "fields" and not row.get(spec.choices_field):
        raise DataError(f"{where}: field {spec.choices_field!r} (the options of a multiple-choice "
                        f"question) is missing or empty")
    gold = row_gold(spec, row)
    if gold is None:  # present but empty/unparsable: kept, and graded as never correct
        log.warning("%s: no gold answer in field %r", where, spec.gold_field)
    question = official_question(spec, row, gold)
    if not question:
        raise DataError(f"{where}: field {', '.join(map(repr, spec.question_fields))} is empty")
    choice_row = spec.answer_type == "choice" or (spec.mixed_choice and is_choice_gold(gold))
    choices = choices_of(spec, row, question) if choice_row else ()
    if choice_row and len(choices) < 2:
        raise DataError(f"{where}: a multiple-choice row (gold {gold!r}) whose options cannot be read "
                        f"(expected {'field ' + repr(spec.choices_field) if spec.choices_field else 'A. ... B. ... in the question'})")
    answer_type = "choice" if choice_row else ("expression" if spec.mixed_choice else spec.answer_type)
    own_id = row.get(spec.id_field) if spec.id_field else None
    problem_id = str(own_id) if spec.id_field == "unique_id" and own_id else f"{spec.name}/{own_id if own_id not in (None, '') else idx}"
    metadata = {name: row[name] for name in spec.metadata_fields if name in row}
    return Problem(spec.name, idx, problem_id, question, gold, answer_type, choices, metadata)


def row_gold(spec: DatasetSpec, row: Mapping[str, Any]) -> str | None:
    """The row's gold by the spec's parser; the fallback field when the gold field is empty."""
    gold = GOLD_PARSERS[spec.gold_parser](row[spec.gold_field])
    if gold is None and spec.gold_fallback_field and row.get(spec.gold_fallback_field) is not None:
        gold = GOLD_PARSERS[spec.gold_parser](row[spec.gold_fallback_field])
    return gold


def reference_solution(spec: DatasetSpec, row: Mapping[str, Any]) -> str | None:
    """The row's own worked solution as text a grader reads; None when the dataset has none."""
    if spec.solution_field is None or row.get(spec.solution_field) in (None, ""):
        return None
    return SOLUTION_READERS[spec.solution_reader](row[spec.solution_field], row)


def is_choice_letter(gold: str | None) -> bool:
    """Whether a gold answer is one option letter (what the official adapt-few-shot rule tests)."""
    return gold in ("A", "B", "C", "D", "E")


def is_choice_gold(gold: str | None) -> bool:
    """Whether a gold answer names options: one letter, or several (``BC``, GaoKao multi-select)."""
    return bool(gold) and re.fullmatch(r"[A-E]{1,5}", gold) is not None


def yes_no_key(gold: str | None) -> str:
    """The gold as the official yes/no test sees it: no ``$``, no trailing full stop, lower case."""
    text = re.sub(r"\\text\{(.*?)\}", r"\1", (gold or "").replace("$", "")).strip().rstrip(".")
    return text.strip().lower()


def official_question(spec: DatasetSpec, row: Mapping[str, Any], gold: str | None) -> str:
    """The question text as the official harness builds it, yes/no suffix included."""
    question = QUESTION_BUILDERS[spec.question_builder](spec, row)
    answer = yes_no_key(gold)
    if answer in ("true", "false"):
        question += " (True or False)"
    if answer in ("yes", "no"):
        question += " (Yes or No)"
    return question.strip()


def parse_choices(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return ()
    return tuple(str(v) for v in value) if isinstance(value, list | tuple) else ()


def read_jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; bad lines raise ``DataError``."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")  # a BOM may lead
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{number}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg}, column {exc.colno})") from None


def load_jsonl(path: Path, name: str, limit: int | None) -> list[Problem]:
    problems: list[Problem] = []
    spec = find_spec(name)
    for number, row in read_jsonl(path):
        if limit is not None and len(problems) >= limit:
            break
        if not isinstance(row, Mapping):
            raise DataError(f"{path}:{number}: a row must be a JSON object, got {json.dumps(row)[:40]}")
        if spec is None:
            spec = generic_spec(name, row, where=f"{path}:{number}")
        problems.append(problem_from_row(spec, row, len(problems), f"{path}:{number}"))
    return problems


def local_file(name: str, split: str, data_dir: str | os.PathLike[str] | None) -> Path | None:
    roots = [Path(data_dir)] if data_dir else []
    if os.environ.get(DATA_DIR_ENV):
        roots.append(Path(os.environ[DATA_DIR_ENV]))
    for root in roots:
        # a flat {name}.jsonl holds the test split: another --split needs {name}/{split}.jsonl
        flat = (root / f"{name}.jsonl",) if split == "test" else ()
        for candidate in (*flat, root / name / f"{split}.jsonl"):
            if candidate.is_file():
                return candidate
    return None


def hub_offline_mode() -> bool:
    return any(os.environ.get(name, "").lower() in ("1", "true", "yes")
               for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the hub's host resolves and accepts a connection (instead of ~25 s of retries)."""
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def load_from_hub(spec: DatasetSpec, split: str, limit: int | None) -> list[Problem]:
    hint = (f"pass a local JSONL file or folder instead (e.g. `--data-dir ../shared/data/benchmarks` "
            f"or a path to {spec.name}.jsonl, or set {DATA_DIR_ENV})")
    if spec.hub is None:
        raise DataUnavailable(f"dataset {spec.name!r} has no Hugging Face hub source; {hint}")
    try:
        import datasets as hf_datasets
    except ImportError:
        raise DataUnavailable(f"the `datasets` package is not installed; {hint}") from None
    path, config = spec.hub
    if not hub_offline_mode() and not hub_reachable():
        raise DataUnavailable(f"cannot reach the Hugging Face hub for {path} (no network; "
                              f"HF_DATASETS_OFFLINE=1 uses a cached copy); {hint}")
    try:
        rows = hf_datasets.load_dataset(path, config, split=split)
    except Exception as exc:  # noqa: BLE001 - any hub/network failure is "unavailable" here
        reason = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        raise DataUnavailable(f"cannot load {path} from the Hugging Face hub ({reason}); {hint}") from None
    problems = []
    for idx, row in enumerate(rows):
        if limit is not None and idx >= limit:
            break
        row = {spec.hub_fields.get(k, k): v for k, v in dict(row).items()}
        problems.append(problem_from_row(spec, row, idx, f"{path}[{split}][{idx}]"))
    return problems


def load_benchmark(name_or_path: str | os.PathLike[str], *, split: str = "test",
                   limit: int | None = None,
                   data_dir: str | os.PathLike[str] | None = None) -> list[Problem]:
    """Problems of a benchmark: a JSONL path, a folder, a registered name or a hub id."""
    if limit is not None and limit < 0:
        raise DataError(f"limit must be >= 0, got {limit}")
    path = Path(name_or_path)
    if path.is_file():
        name = path.parent.name if path.stem == split else path.stem
        return load_jsonl(path, name, limit)
    if path.is_dir():
        found = next((c for c in (path / f"{split}.jsonl",) if c.is_file()), None)
        if found is None:
            raise DataError(f"{path}: folder has no {split}.jsonl")
        return load_jsonl(found, path.name, limit)
    spec = find_spec(str(name_or_path))
    if spec is None:
        raise DataError(f"unknown dataset {str(name_or_path)!r}: not a file, a folder or one of "
                        f"{', '.join(DATASETS)}")
    local = local_file(spec.name, split, data_dir)
    if local is not None:
        return load_jsonl(local, spec.name, limit)
    flat = local_file(spec.name, "test", data_dir) if data_dir is not None and split != "test" else None
    if flat is not None:
        raise DataError(f"split {split!r}: {flat} holds the test split; put the {split} split in "
                        f"{flat.parent / spec.name / f'{split}.jsonl'} (or leave --data-dir out to use the hub)")
    return load_from_hub(spec, split, limit)
