"""Few-shot exemplars for the official ``qwen25-math-cot`` prompts: file, family, selection.

The exemplars are data, read at run time from a JSON file laid out ``{family: [{question,
answer}, ...]}`` (the official Qwen2.5-Math exemplars: ``--few-shot-file``). Where no file is
named, ``find_few_shot_file`` looks at ``$QWEN_MATH_FEW_SHOT_FILE``, then for
``qwen25_math_official_exemplars.json`` in the data dir and in ``../few_shot/`` next to it.

Selection follows the official harness: a dataset reads its *family*'s exemplars
(``FAMILIES``: sat_math -> mmlu_stem, svamp/asdiv/mawps/tabmwp -> gsm8k, aime24/amc23 ->
math, the GaoKao family -> gaokao, any other dataset its own name), the first ``num_shots`` of
them; with ``adapt`` the GaoKao family always takes 5, and a row whose gold is not a single
option letter gets none (``shots_for``). ``user_text`` writes the one user turn: every
exemplar as ``question\\nanswer``, joined and followed by the question with a blank line.

What it deliberately does not do: hold any exemplar itself, render the chat template
(``qwen_math.prompts``) or decide which datasets a suite runs (``qwen_math.suites``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from qwen_math.errors import UsageError
from qwen_math.paths import read_input_text

FEW_SHOT_FILE_ENV = "QWEN_MATH_FEW_SHOT_FILE"
DEFAULT_FILE_NAME = "qwen25_math_official_exemplars.json"

#: dataset -> the exemplar family the official harness reads for it (others: their own name).
FAMILIES: dict[str, str] = {
    **dict.fromkeys(("gsm_hard", "svamp", "tabmwp", "asdiv", "mawps"), "gsm8k"),
    **dict.fromkeys(("math_oai", "hungarian_exam", "math-oai", "aime24", "amc23"), "math"),
    "sat_math": "mmlu_stem",
    **dict.fromkeys(("gaokao2024_I", "gaokao2024_II", "gaokao_math_qa", "gaokao2024_mix",
                     "cn_middle_school"), "gaokao"),
}

#: datasets that take ``ADAPT_SHOTS`` exemplars under ``--adapt-few-shot`` (whatever --num-shots).
ADAPT_DATASETS = frozenset({"gaokao2024_I", "gaokao2024_II", "gaokao_math_qa", "gaokao2024_mix",
                            "cn_middle_school"})
ADAPT_SHOTS = 5
#: the golds that count as "a choice letter" for ``--adapt-few-shot``.
CHOICE_LETTERS = frozenset("ABCDE")
#: between two exemplars, and between the last exemplar and the question.
SPLITTER = "\n\n"


@dataclass(frozen=True)
class Exemplar:
    question: str
    answer: str


@dataclass(frozen=True)
class FewShot:
    """How many exemplars a dataset's prompts carry: ``num_shots``, or the adaptive rule."""

    num_shots: int = 0
    adapt: bool = False

    @property
    def active(self) -> bool:
        return self.num_shots > 0 or self.adapt


def family_of(dataset: str) -> str:
    return FAMILIES.get(dataset, dataset)


def shots_wanted(dataset: str, setting: FewShot, gold: str | None) -> int:
    """Exemplars for one row: the official ``construct_prompt`` rule."""
    if setting.adapt and gold not in CHOICE_LETTERS:
        return 0
    return ADAPT_SHOTS if setting.adapt and dataset in ADAPT_DATASETS else setting.num_shots


def shots_for(dataset: str, setting: FewShot, gold: str | None,
              exemplars: Mapping[str, Sequence[Exemplar]], *, source: str = "the few-shot file") -> tuple[Exemplar, ...]:
    """The exemplars one row's prompt starts with (see the module docstring)."""
    wanted = shots_wanted(dataset, setting, gold)
    if wanted == 0:
        return ()
    family = family_of(dataset)
    available = exemplars.get(family)
    if available is None:
        raise UsageError(f"{source} has no exemplars for {dataset!r} (family {family!r}); "
                         f"families present: {', '.join(exemplars) or 'none'}")
    if wanted > len(available):
        raise UsageError(f"--num-shots {wanted} is larger than the {len(available)} exemplars of "
                         f"family {family!r} (dataset {dataset}) in {source}")
    return tuple(available[:wanted])


def user_text(question: str, shots: Sequence[Exemplar]) -> str:
    """The user turn: the exemplars (``question\\nanswer`` each), then the question."""
    if not shots:
        return question
    return SPLITTER.join([*(f"{s.question}\n{s.answer}" for s in shots), question])


def shots_digest(shots: Sequence[Exemplar]) -> str:
    return hashlib.sha256(json.dumps([[s.question, s.answer] for s in shots],
                                     ensure_ascii=False).encode()).hexdigest()


# --- the exemplar file ----------------------------------------------------------------------

def find_few_shot_file(flag: str | None, data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The exemplar file: the flag, ``$QWEN_MATH_FEW_SHOT_FILE``, then next to the data dir."""
    if flag:
        return Path(flag)
    if os.environ.get(FEW_SHOT_FILE_ENV):
        return Path(os.environ[FEW_SHOT_FILE_ENV])
    if data_dir:
        for candidate in (Path(data_dir) / DEFAULT_FILE_NAME,
                          Path(data_dir).parent / "few_shot" / DEFAULT_FILE_NAME):
            if candidate.is_file():
                return candidate
    return None


def require_few_shot_file(flag: str | None, data_dir: str | os.PathLike[str] | None) -> Path:
    path = find_few_shot_file(flag, data_dir)
    if path is None:
        raise UsageError(
            f"few-shot prompts need the exemplar file: pass --few-shot-file FILE (e.g. "
            f"../shared/data/few_shot/{DEFAULT_FILE_NAME}) or set {FEW_SHOT_FILE_ENV}")
    return path


def load_exemplars(path: Path) -> dict[str, tuple[Exemplar, ...]]:
    """``{family: (Exemplar, ...)}`` from ``path``; a bad file is a ``UsageError`` at file:line."""
    path = Path(path)
    text = read_input_text(path, what="--few-shot-file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path}:1: expected an object {{family: [{{question, answer}}, ...]}}, "
                         f"got {type(data).__name__}")
    families: dict[str, tuple[Exemplar, ...]] = {}
    for family, items in data.items():
        where = f"{path}:{line_of_key(text, family)}"
        if not isinstance(items, list):
            raise UsageError(f"{where}: family {family!r} must be a list of {{question, answer}} objects")
        exemplars = []
        for number, item in enumerate(items):
            if not (isinstance(item, dict) and isinstance(item.get("question"), str)
                    and isinstance(item.get("answer"), str)):
                raise UsageError(f"{where}: family {family!r} item {number} needs text fields "
                                 "'question' and 'answer'")
            exemplars.append(Exemplar(item["question"], item["answer"]))
        families[family] = tuple(exemplars)
    return families


def line_of_key(text: str, key: str) -> int:
    """The 1-based line on which ``"key":`` first appears in ``text`` (1 when not found)."""
    match = re.search(re.escape(json.dumps(key, ensure_ascii=False)) + r"\s*:", text)
    if match is None:
        match = re.search(re.escape(json.dumps(key)) + r"\s*:", text)
    return text.count("\n", 0, match.start()) + 1 if match else 1
