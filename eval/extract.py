"""Find the final answer a model response commits to.

Extraction is a priority table of rules (``RULES``); the first rule that finds something
wins, and within a rule the rightmost match wins:

1. ``\\boxed{}`` / ``\\fbox{}`` commands (nested braces; the last one; several boxes that sit
   together at the end, e.g. ``\\boxed{1} and \\boxed{2}``, are merged into a list, repeats
   removed);
2. the last explicit anchor: "final answer is", "The answer is", "Answer:", ``####`` and
   ``答案是``;
3. multiple-choice letters, when the dataset has choices (``(D)``, ``D.``, ``Answer: D``);
4. a short bare answer that is its own answer (``7,425,000``, ``x=3``, ``4:30 p.m.``);
5. the last LaTeX math span, only where the policy asks for it;
6. the last number, only where the policy asks for it (GSM8K-style word problems), never
   from inside LaTeX.

Tool-integrated traces: the ``````python`` and ``````output`` blocks are cut out before any
rule runs; when the remaining text commits to nothing, the last program output may serve
(``ExtractionPolicy.output_fallback``).

What it deliberately does not do: normalise or compare answers (``eval.normalize``,
``eval.equivalence``), or guess: no rule fires -> ``None``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from eval.normalize import canonical_text, matching_brace, strip_delimiters


@dataclass(frozen=True)
class ExtractionPolicy:
    """How far extraction may go for one dataset."""

    name: str = "default"
    number_fallback: bool = False  # rule 6: last number of the prose
    math_fallback: bool = False  # rule 5: last $...$ / \(...\) span
    output_fallback: bool = False  # TIR: last program output when the prose commits to nothing
    choices: str = ""  # multiple-choice letters, e.g. "ABCDE"


#: Named policies; datasets refer to them by name (see ``eval.datasets``).
POLICIES: dict[str, ExtractionPolicy] = {
    "default": ExtractionPolicy(),
    "word_problem": ExtractionPolicy("word_problem", number_fallback=True, output_fallback=True),
    "multiple_choice": ExtractionPolicy("multiple_choice", choices="ABCDE"),
    "latex": ExtractionPolicy("latex", math_fallback=True),
    "loose": ExtractionPolicy("loose", math_fallback=True, number_fallback=True,
                              output_fallback=True),
}

BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])\s*")
TOOL_BLOCK = re.compile(r"```(python|output)[^\n]*\n(.*?)(?:```|\Z)", re.S)
ANCHOR = re.compile(
    r"(?:final answer is|the answer is|final answer:|answer is:|\banswer:|####|答案是|答案为)\s*[:：]?\s*",
    re.I,
)
SENTENCE_END = re.compile(r"(?<!\d)\.(?=\s|$)|(?<=\d)\.(?=\s+[A-Z]|\s*$)|\n|(?<=[)\]$])\.|\s+I hope")
WORD = re.compile(r"(?<![\\a-zA-Z])[A-Za-z]{2,}")
MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|\$([^$]+?)\$", re.S)
NUMBER = re.compile(r"(?<![\w^_{.])-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
BOX_CONNECTOR_WORDS = 4
BOX_CONNECTOR_CHARS = 80


# --- pieces ------------------------------------------------------------------------------


def split_tool_blocks(text: str) -> tuple[str, str | None]:
    """The prose with code/output blocks cut out, and the last program output (if any)."""
    outputs = [m.group(2).strip() for m in TOOL_BLOCK.finditer(text) if m.group(1) == "output"]
    prose = TOOL_BLOCK.sub("\n", text)
    return prose, (outputs[-1] if outputs else None)


def boxed_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every complete ``\\boxed``/``\\fbox`` command, in order."""
    spans = []
    for match in BOX_COMMAND.finditer(text):
        pos = match.end()
        if pos < len(text) and text[pos] == "{":
            close = matching_brace(text, pos)
            if close > 0:
                spans.append((match.start(), close + 1, text[pos + 1:close]))
        elif match.group(0).endswith((" ", "\t")) and pos < len(text):
            token = re.match(r"[^\s$]+", text[pos:])
            if token:
                spans.append((match.start(), pos + token.end(), token.group(0)))
    return spans


def is_box_connector(gap: str) -> bool:
    """True when the text between two boxes only joins them (", ", " and ", "$ $", ...)."""
    if len(gap) > BOX_CONNECTOR_CHARS or "\n\n" in gap:
        return False
    words = WORD.findall(re.sub(r"\\[a-zA-Z]+", " ", gap))
    return len(words) <= BOX_CONNECTOR_WORDS


def unique_answers(answers: list[str]) -> list[str]:
    seen: set[str] = set()
    kept = []
    for answer in answers:
        key = canonical_text(answer)
        if key not in seen:
            seen.add(key)
            kept.append(answer)
    return kept


def cut_sentence(text: str) -> str:
    """The text up to the end of its first sentence (a decimal point is not an end)."""
    match = SENTENCE_END.search(text)
    return text[:match.start()] if match else text


def plain_words(text: str) -> list[str]:
    without_math = MATH_SPAN.sub(" ", text)
    without_commands = re.sub(r"\\[a-zA-Z]+(\{[^}]*\})?", " ", without_math)
    return WORD.findall(without_commands)


# --- rules ---------------------------------------------------------------------------------


def from_boxes(text: str, policy: ExtractionPolicy) -> str | None:
    spans = boxed_spans(text)
    if not spans:
        return None
    group = [spans[-1]]
    for span in reversed(spans[:-1]):
        if not is_box_connector(text[span[1]:group[0][0]]):
            break
        group.insert(0, span)
    answers = unique_answers([content.strip() for _, _, content in group if content.strip()])
    if not answers:
        return None
    return ", ".join(answers)


def from_anchor(text: str, policy: ExtractionPolicy) -> str | None:
    matches = list(ANCHOR.finditer(text))
    if not matches:
        return None
    tail = text[matches[-1].end():]
    answer = strip_delimiters(cut_sentence(tail.lstrip()))
    if not answer or len(plain_words(answer)) > 6:
        return None
    if policy.choices:
        letter = choice_letter(answer, policy.choices)
        if letter:
            return letter
    return answer


def choice_letter(text: str, choices: str) -> str | None:
    """``(D)``, ``D.``, ``D)``, ``\\text{(D)}`` or ``D`` alone -> ``D``."""
    text = re.sub(r"\\(?:text|textbf|mathrm)\s*\{([^}]*)\}", r"\1", text).strip()
    match = re.fullmatch(r"\(?([" + re.escape(choices) + r"])\)?[.:)]?(?:\s.*)?", text, re.S)
    return match.group(1) if match else None


def from_choice(text: str, policy: ExtractionPolicy) -> str | None:
    if not policy.choices:
        return None
    letters = re.escape(policy.choices)
    patterns = (
        r"(?:answer|option|choice)\s*(?:is|:)?\s*(?:\\text\{)?\(?([" + letters + r"])\)?",
        r"\(([" + letters + r"])\)",
        r"(?:^|\n)\s*([" + letters + r"])[.)]\s",
    )
    for pattern in patterns:
        found = re.findall(pattern, text, re.I if pattern.startswith("(?:answer") else 0)
        if found:
            return found[-1].upper()
    return None


def from_bare(text: str, policy: ExtractionPolicy) -> str | None:
    stripped = text.strip()
    if not stripped or len(stripped) > 40 or "\n" in stripped:
        return None
    spans = MATH_SPAN.findall(stripped)
    if spans and strip_delimiters(stripped) == stripped:
        return None  # prose around math: not a bare answer
    if len(plain_words(stripped)) > 1:
        return None
    answer = strip_delimiters(stripped)
    if policy.choices:
        letter = choice_letter(answer, policy.choices)
        if letter:
            return letter
    return answer or None


def from_math_span(text: str, policy: ExtractionPolicy) -> str | None:
    if not policy.math_fallback:
        return None
    spans = [next(g for g in m.groups() if g is not None) for m in MATH_SPAN.finditer(text)]
    spans = [s.strip() for s in spans if s.strip()]
    return spans[-1] if spans else None


def without_latex(text: str) -> str:
    text = re.sub(r"\$\$.+?\$\$|\\\[.+?\\\]|\\\(.+?\\\)", " ", text, flags=re.S)
    return re.sub(r"\\[a-zA-Z]+\s*(\{[^{}]*\})*", " ", text)


def last_number(text: str) -> str | None:
    numbers = NUMBER.findall(text)
    if not numbers:
        return None
    return numbers[-1].rstrip(",")


def from_last_number(text: str, policy: ExtractionPolicy) -> str | None:
    if not policy.number_fallback:
        return None
    return last_number(without_latex(text))


#: The priority table: (rule name, rule).
RULES: tuple[tuple[str, Callable[[str, ExtractionPolicy], str | None]], ...] = (
    ("boxed", from_boxes),
    ("anchor", from_anchor),
    ("choice", from_choice),
    ("bare", from_bare),
    ("math_span", from_math_span),
    ("last_number", from_last_number),
)


def resolve_policy(dataset: str | ExtractionPolicy | None) -> ExtractionPolicy:
    """The extraction policy for a dataset name, a policy name or a policy object."""
    if isinstance(dataset, ExtractionPolicy):
        return dataset
    if dataset is None:
        return POLICIES["default"]
    if dataset in POLICIES:
        return POLICIES[dataset]
    from eval.datasets import extraction_policy  # lazy: datasets refers back to POLICIES

    return extraction_policy(dataset)


def extract_answer(text: str | None, *, dataset: str | ExtractionPolicy | None = None) -> str | None:
    """The final answer ``text`` commits to, or ``None`` when it commits to none."""
    if not text or not text.strip():
        return None
    policy = resolve_policy(dataset)
    text = text.replace("\x00", "")
    prose, last_output = split_tool_blocks(text)
    for name, rule in RULES:
        if name == "last_number" and policy.output_fallback and last_output:
            return output_answer(last_output)  # the program's result beats a prose number
        answer = rule(prose, policy)
        if answer is not None:
            return answer
    return None


def output_answer(output: str) -> str | None:
    """The answer a program printed: the whole output when short, else its last number."""
    output = output.strip()
    if len(output) <= 40 and "\n" not in output:
        return strip_delimiters(output) or None
    return last_number(output)
