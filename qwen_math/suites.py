"""Benchmark suites: which datasets a model card evaluates, with which few-shot settings.

A suite is one data table (``SUITES``): one ``SuiteEntry`` per dataset with its group (the
official ``sh/eval.sh`` invocation it belongs to), its few-shot setting in CoT mode, the block
of the model card's tables it appears in and the published column it is compared with. In
TIR mode every dataset runs zero-shot (the report's TIR columns are zero-shot; the official
harness has no instruct-TIR few-shot prompt). ``POOLS`` names the published columns that
combine several datasets (the report's Chinese "GaoKao").

``prepare_prompts`` is the one place a dataset's problems get their few-shot user turns;
``qwen-math eval`` and ``qwen-math prompts`` both use it.

What it deliberately does not do: load models, run anything, or compute metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_math.errors import UsageError
from qwen_math.fewshot import Exemplar, FewShot, shots_digest, shots_for, user_text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SuiteEntry:
    dataset: str
    group: str
    few_shot: FewShot
    block: str  # english | chinese | competition
    published: str | None = None  # the published column's dataset key; None: not in the card
    note: str = ""


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    entries: tuple[SuiteEntry, ...]

    @property
    def datasets(self) -> tuple[str, ...]:
        return tuple(entry.dataset for entry in self.entries)

    def entry(self, dataset: str) -> SuiteEntry | None:
        return next((e for e in self.entries if e.dataset == dataset), None)


@dataclass(frozen=True)
class Pool:
    """A published column that pools several datasets (shown pooled and as an unweighted mean)."""

    name: str
    block: str
    published: str
    datasets: tuple[str, ...]
    label: str


ZERO = FewShot()
ADAPT = FewShot(adapt=True)
EN_OPEN, EN_CHOICE, ZH_GAOKAO, ZH_OTHER, COMPETITION = (
    "English open", "English multiple choice", "Chinese GaoKao", "Chinese other", "Competitions")

SUITES: dict[str, Suite] = {suite.name: suite for suite in (
    Suite("qwen25-math", "the Qwen2.5-Math model card: the five groups of the official sh/eval.sh", (
        SuiteEntry("gsm8k", EN_OPEN, ZERO, "english", "gsm8k"),
        SuiteEntry("math", EN_OPEN, ZERO, "english", "math"),
        SuiteEntry("svamp", EN_OPEN, ZERO, "english"),
        SuiteEntry("asdiv", EN_OPEN, ZERO, "english"),
        SuiteEntry("mawps", EN_OPEN, ZERO, "english"),
        SuiteEntry("carp_en", EN_OPEN, ZERO, "english"),
        SuiteEntry("tabmwp", EN_OPEN, ZERO, "english"),
        SuiteEntry("minerva_math", EN_OPEN, ZERO, "english", "minerva_math"),
        SuiteEntry("gaokao2023en", EN_OPEN, ZERO, "english", "gaokao2023en"),
        SuiteEntry("olympiadbench", EN_OPEN, ZERO, "english", "olympiadbench"),
        SuiteEntry("college_math", EN_OPEN, ZERO, "english", "college_math"),
        SuiteEntry("aqua", EN_CHOICE, FewShot(4), "english",
                   note="eval.sh passes 5 shots; the aqua family has 4 exemplars, so its prompts carry 4"),
        SuiteEntry("sat_math", EN_CHOICE, FewShot(5), "english", note="mmlu_stem exemplars"),
        SuiteEntry("mmlu_stem", EN_CHOICE, FewShot(5), "english", "mmlu_stem"),
        SuiteEntry("gaokao2024_I", ZH_GAOKAO, ADAPT, "chinese"),
        SuiteEntry("gaokao2024_II", ZH_GAOKAO, ADAPT, "chinese"),
        SuiteEntry("gaokao2024_mix", ZH_GAOKAO, ADAPT, "chinese"),
        SuiteEntry("gaokao_math_cloze", ZH_GAOKAO, ADAPT, "chinese"),
        SuiteEntry("gaokao_math_qa", ZH_GAOKAO, ADAPT, "chinese"),
        SuiteEntry("cmath", ZH_OTHER, ADAPT, "chinese", "cmath"),
        SuiteEntry("cn_middle_school", ZH_OTHER, ADAPT, "chinese", "cn_middle_school"),
        SuiteEntry("aime24", COMPETITION, ZERO, "competition", "aime24"),
        SuiteEntry("amc23", COMPETITION, ZERO, "competition", "amc23"),
    )),
)}

#: the report's Chinese "GaoKao" column pools five sets; how is not stated (see the README).
POOLS: tuple[Pool, ...] = (
    Pool("gaokao", "chinese", "gaokao2024",
         ("gaokao2024_I", "gaokao2024_II", "gaokao2024_mix", "gaokao_math_qa", "gaokao_math_cloze"),
         "GaoKao"),
)

#: the published average columns: block -> (key, the datasets/pools it averages, in card order).
CARD_AVERAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "english": ("avg_en", ("gsm8k", "math", "minerva_math", "gaokao2023en", "olympiadbench",
                           "college_math", "mmlu_stem")),
    "chinese": ("avg_zh", ("cmath", "gaokao", "cn_middle_school")),
}
BLOCK_TITLES = {"english": "English", "chinese": "Chinese", "competition": "Competitions"}


def get_suite(name: str) -> Suite:
    suite = SUITES.get(name)
    if suite is None:
        raise UsageError(f"unknown suite {name!r}; known suites: {', '.join(SUITES)} "
                         "(see `qwen-math eval --list-suites`)")
    return suite


def list_suites(mode: str = "cot") -> str:
    """What each suite runs, one line per dataset (``eval --list-suites``)."""
    lines = []
    for suite in SUITES.values():
        lines.append(f"{suite.name}: {suite.description}")
        for entry in suite.entries:
            setting = describe_few_shot(entry.few_shot if mode == "cot" else ZERO)
            note = f"  ({entry.note})" if entry.note else ""
            lines.append(f"  {entry.group:<24} {entry.dataset:<18} {setting}{note}")
        lines.append("  tir mode: every dataset zero-shot with the model card's TIR system prompt")
    return "\n".join(lines)


def describe_few_shot(setting: FewShot) -> str:
    if setting.adapt:
        return "adapt-few-shot (5 gaokao exemplars when the gold is a choice letter)"
    return f"{setting.num_shots}-shot" if setting.num_shots else "zero-shot"


def few_shot_plan(datasets: Sequence[str], *, suite: str | None, mode: str,
                  setting: FewShot) -> dict[str, FewShot]:
    """Each dataset's few-shot setting: the suite's (CoT only), else the flags' for all."""
    if mode != "cot":
        if setting.active:
            raise UsageError("--num-shots / --adapt-few-shot apply to --mode cot only "
                             "(TIR and PoT prompts are zero-shot)")
        return dict.fromkeys(datasets, ZERO)
    if suite is not None:
        table = get_suite(suite)
        return {name: (table.entry(name).few_shot if table.entry(name) else setting) for name in datasets}
    return dict.fromkeys(datasets, setting)


def suite_datasets(suite: str, *, split: str, data_dir: str | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(datasets whose local file exists, datasets not run for lack of one), in suite order."""
    from eval.datasets import local_file

    found, absent = [], []
    for name in get_suite(suite).datasets:
        (found if local_file(name, split, data_dir) is not None else absent).append(name)
    if absent:
        log.warning("suite %s: no data file for %s in %s; not run", suite, ", ".join(absent),
                    data_dir or "$QWEN_MATH_DATA_DIR")
    if not found:
        raise UsageError(f"suite {suite}: none of its datasets has a file in "
                         f"{data_dir or 'the data dir'}; pass --data-dir with {{name}}.jsonl files")
    return tuple(found), tuple(absent)


@dataclass(frozen=True)
class PreparedPrompts:
    """One dataset's user turns (problem id -> text, only where exemplars precede the question)."""

    user_texts: Mapping[str, str]
    digest: str | None  # of every exemplar used, in order; None when none is


def prepare_prompts(dataset: str, problems: Sequence[Any], setting: FewShot,
                    exemplars: Mapping[str, Sequence[Exemplar]] | None, *, source: str) -> PreparedPrompts:
    """The few-shot user turn of every problem of one dataset."""
    if not setting.active:
        return PreparedPrompts({}, None)
    texts: dict[str, str] = {}
    used: list[Exemplar] = []
    for problem in problems:
        shots = shots_for(dataset, setting, problem.gold, exemplars or {}, source=source)
        if shots:
            texts[problem.problem_id] = user_text(problem.question, shots)
            used.extend(shots)
    return PreparedPrompts(texts, shots_digest(used) if used else None)


def load_plan_exemplars(plan: Mapping[str, FewShot], flag: str | None,
                        data_dir: str | None) -> tuple[dict[str, tuple[Exemplar, ...]] | None, str | None]:
    """The exemplar file's families and its path when any dataset needs shots, else (None, None)."""
    from qwen_math.fewshot import load_exemplars, require_few_shot_file

    if not any(setting.active for setting in plan.values()):
        return None, None
    path = require_few_shot_file(flag, data_dir)
    return load_exemplars(Path(path)), str(path)
