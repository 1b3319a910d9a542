"""Multiple-choice rows: read a row's options, and judge an answer against a letter gold.

An answer that names letters (``C``, ``\\text{(C)}``, ``ACD``) is right exactly when they are
the gold's letters: a letter never matches a different option, even where that option's text
holds the gold's number. An answer that gives an option's *text* or value instead (``61``,
``$-1-i$``) is mapped to the one option it is equivalent to, then compared by letter; an
answer equivalent to no option, or to several, is wrong.

Options come as ``Problem.choices`` entries (``"(A) text"``, aqua's ``"A)21"``, or a bare list
in letter order), as a letter -> text mapping, or inside a question ("Answer Choices: (A) …",
"选项: (A) …", "A. … B. … C. … D. …" inline or one per line): ``options_map`` reads all four.

What it deliberately does not do: find the answer in a response (``eval.extract``) or decide
mathematical equivalence (``eval.equivalence``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from eval.equivalence import judge
from eval.extract import answer_letters, resolve_policy
from eval.policies import ExtractionPolicy, gold_letters

#: One entry of ``Problem.choices``: ``(A) text``, ``A)21``, ``A. text``, ``A: text``.
OPTION_ENTRY = re.compile(r"\s*\(?([A-Z])\s*[).:、]\s*(.*)", re.S)
#: An option marker inside a question: ``(A)`` or ``A.`` / ``A、`` / ``A:`` (not ``P A=``), or a
#: bare ``A`` before math (``C \log ...``: a typo in gaokao2024_mix idx 8).
OPTION_MARKER = re.compile(r"\(([A-E])\)|(?<![A-Za-z\\{_^])([A-E])\s*[.、:．：]|(?<![A-Za-z\\{_^])([A-E])\s(?=\s*[\\$\d(-])")
MIN_OPTIONS = 3

Options = Mapping[str, str] | Sequence[str] | str | None


def options_map(choices: Options) -> dict[str, str]:
    """Letter -> option text, from any of the accepted forms (empty when there are none)."""
    if not choices:
        return {}
    if isinstance(choices, str):
        return options_in_text(choices)
    if isinstance(choices, Mapping):
        return {str(k).strip().strip("()").upper(): str(v).strip() for k, v in choices.items()}
    options = {}
    for position, entry in enumerate(choices):
        match = OPTION_ENTRY.fullmatch(str(entry))
        letter, text = (match.group(1), match.group(2)) if match else (chr(ord("A") + position), str(entry))
        options[letter] = text.strip()
    return options


def options_in_text(question: str) -> dict[str, str]:
    """The options a question lists: the longest run of markers A, B, C(, D, E) in order (the
    last of equally long runs; "(D) (A), (B), and (C)" is an option's text, not a run)."""
    markers = [(next(g for g in m.groups() if g), m.start(), m.end()) for m in OPTION_MARKER.finditer(question)]
    best: list[tuple[str, int, int]] = []
    for first in [i for i, marker in enumerate(markers) if marker[0] == "A"]:
        run = [markers[first]]
        for marker in markers[first + 1:]:
            if marker[0] == chr(ord(run[-1][0]) + 1):
                run.append(marker)
        if len(run) >= max(MIN_OPTIONS, len(best)):
            best = run
    if not best:
        return {}
    ends = [marker[1] for marker in best[1:]] + [len(question)]
    return {letter: question[end:stop].strip() for (letter, _, end), stop in zip(best, ends, strict=True)}


def judge_answer(answer: str | None, gold: Any, *, dataset: str | ExtractionPolicy | None = None,
                 choices: Options = None, timeout: float | None = 5.0) -> str:
    """``eval.equivalence.judge``, except that a letter gold is judged by letters (and by the
    row's options when the answer gives an option's text)."""
    policy = resolve_policy(dataset).for_gold(gold)
    gold_key = gold_letters(gold, policy.choices)
    if gold_key is None:
        return judge(answer, None if gold is None else str(gold), timeout=timeout)
    letters = answer_letters(answer, policy)
    if letters:
        return "correct" if letters == gold_key else "wrong"
    return judge_by_option_text(answer, gold_key, options_map(choices), timeout)


def judge_by_option_text(answer: str | None, gold_key: str, options: Mapping[str, str],
                         timeout: float | None) -> str:
    """The letter of the one option ``answer`` is equivalent to, compared with the gold's."""
    if not answer or not options:
        return "wrong"
    verdicts = {letter: judge(answer, text, timeout=timeout) for letter, text in options.items() if text}
    matched = [letter for letter, verdict in verdicts.items() if verdict == "correct"]
    if len(matched) == 1:
        return "correct" if matched[0] == gold_key else "wrong"
    if not matched and "timeout" in verdicts.values():
        return "timeout"
    return "wrong"
