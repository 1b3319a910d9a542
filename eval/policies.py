"""Extraction policies: how far answer extraction may go for one dataset.

A dataset names its policy by string (``eval.datasets.DatasetSpec.policy``); this module is
the table of those names. It is a leaf: it imports nothing from ``eval``, so both
``eval.datasets`` (which names policies) and ``eval.extract`` (which applies them) can use it
without importing each other in a circle (``eval.extract`` -> ``eval.datasets`` -> here).

What it deliberately does not do: extract anything (``eval.extract``) or know datasets.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class ExtractionPolicy:
    """How far extraction may go for one dataset."""

    name: str = "default"
    number_fallback: bool = False  # the last number of the prose (after the last "= value")
    math_fallback: bool = False  # the last $...$ / \(...\) span
    output_fallback: bool = False  # TIR: last program output when the prose commits to nothing
    choices: str = ""  # multiple-choice letters, e.g. "ABCDE"
    multi_select: bool = False  # a choice answer may be a set of letters ("ACD", "A、C")
    letter_gold_only: bool = False  # mixed sets: choice rules only on rows whose gold is a letter
    final_value: bool = False  # an arithmetic chain "7+2=9" commits to its last value
    statement_fallback: bool = False  # the last sentence's "... is $X$" / "... = X"
    solve_unknown: bool = False  # a final linear equation in one unknown ("3*(x+2)=24+x") -> x

    def for_gold(self, gold: object) -> ExtractionPolicy:
        """This policy for one row: a mixed set reads letters only where the gold is one."""
        if self.letter_gold_only and not gold_letters(gold, self.choices):
            return dataclasses.replace(self, choices="", multi_select=False)
        return self


def gold_letters(gold: object, choices: str) -> str | None:
    """A gold that is a choice letter (or, for multi-select rows, letters) -> them sorted."""
    if not choices or gold is None:
        return None
    text = re.sub(r"[\s,、()（）]", "", str(gold))
    if text and len(text) <= len(choices) and all(c in choices for c in text) and len(set(text)) == len(text):
        return "".join(sorted(text))
    return None


#: Named policies; datasets refer to them by name (see ``eval.datasets``).
POLICIES: dict[str, ExtractionPolicy] = {
    "default": ExtractionPolicy(),
    "word_problem": ExtractionPolicy("word_problem", number_fallback=True, output_fallback=True,
                                     final_value=True, solve_unknown=True),
    # a response that names no letter may still end in a value: it is read as a word problem's
    # (last "= value", else last number) and graded through the row's options (eval.choices)
    "multiple_choice": ExtractionPolicy("multiple_choice", choices="ABCDE", number_fallback=True),
    "latex": ExtractionPolicy("latex", math_fallback=True),
    "loose": ExtractionPolicy("loose", math_fallback=True, number_fallback=True,
                              output_fallback=True),
    # worked solutions that end in a statement ("Therefore, the result is $x=2$."): carp_en
    "statement": ExtractionPolicy("statement", statement_fallback=True, final_value=True),
    # Chinese single choice (gaokao2024_I/II, gaokao_math_qa); a few rows are multi-select
    "zh_choice": ExtractionPolicy("zh_choice", choices="ABCD", multi_select=True),
    # Chinese mixed sets (cn_middle_school, gaokao2024_mix): a letter gold on some rows only
    "zh_mixed": ExtractionPolicy("zh_mixed", choices="ABCD", multi_select=True, letter_gold_only=True,
                                 final_value=True),
    # Chinese open answers (cmath word problems, gaokao_math_cloze)
    "zh_open": ExtractionPolicy("zh_open", number_fallback=True, output_fallback=True, final_value=True),
}
