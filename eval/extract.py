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
    r"(?:final answer is|the answer is|answer is:|\banswer\s*\**\s*[:：]|\bans\s*[:：]|####(?=\s*[-\d$\\])|答案是|答案为)"
    r"\s*\**\s*[:：]?[\s*]*",
    re.I,
)
SENTENCE_END = re.compile(r"(?<!\d)\.(?=\s|$)|(?<=\d)\.(?=\s+[A-Z]|\s*$)|\n|(?<=[)\]$])\.|\s+I hope")
WORD = re.compile(r"(?<![\\a-zA-Z])[A-Za-z]{2,}")
MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|(?<!\\)\$((?:\\\$|[^$])+?)(?<!\\)\$", re.S)
NUMBER = re.compile(r"(?<![\w^_{.])-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
SPAN_CONNECTOR = re.compile(r"\s*(?:,|;|,?\s*(?:and|or)|\\quad|\\text\{\s*(?:and|or)\s*\})?\s*", re.I)
CONNECTIVE = re.compile(r"^\s*(?:therefore|thus|then|hence|so|simply|just|clearly|indeed)\b[\s,:]*", re.I)
CHOICE_LEAD = re.compile(r"^[\s,:;(]*(?:(?:answer\s+)?(?:option|choice)\b\s*(?:is\b)?[\s:\-]*)?", re.I)
LEADING_WORD_THEN_NUMBER = re.compile(r"^[^\d]*(?<![\\a-zA-Z])[A-Za-z]{2,}[^\d]*\d")
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
    if ANCHOR.search(text, spans[-1][1]) and states_math(from_anchor(text, policy, leading_span=False)):
        return None  # a final-answer statement after the last box overrides it (a plain one
        # only: "check our answer: $17 \cdot 44 = 748$, so it is correct" does not)
    group = [spans[-1]]
    for span in reversed(spans[:-1]):
        if not is_box_connector(text[span[1]:group[0][0]]):
            break
        group.insert(0, span)
    answers = unique_answers([content.strip() for _, _, content in group if content.strip()])
    if not answers:
        return None
    return ", ".join(answers)


def states_math(answer: str | None) -> bool:
    """Whether an anchor's answer is mathematical (a digit, LaTeX or a lone letter), not a
    word as in "the answer is correct"."""
    return answer is not None and bool(re.search(r"\d|\\[a-zA-Z]|^\(?[A-Za-z]\)?$", answer.strip()))


def from_anchor(text: str, policy: ExtractionPolicy, *, leading_span: bool = True) -> str | None:
    matches = list(ANCHOR.finditer(text))
    if not matches:
        return None
    tail = text[matches[-1].end():]
    sentence = cut_sentence(tail.lstrip())
    if policy.choices:
        letter = choice_letter(strip_delimiters(sentence), policy.choices) or \
            trailing_letter(strip_delimiters(sentence), policy.choices)
        if letter:
            return letter
    return answer_in_sentence(sentence, leading_span=leading_span)


def trailing_letter(text: str, choices: str) -> str | None:
    """An anchor sentence that ends in a lone choice letter ("Ans: 2/5 D") -> ``D``."""
    match = re.search(r"(?<![A-Za-z\\])\(?([" + re.escape(choices) + r"])\)?$", text)
    return match.group(1) if match else None


def answer_in_sentence(sentence: str, *, leading_span: bool = True) -> str | None:
    """The answer an anchor sentence states: all of it when bare (a leading "therefore" or
    "thus" dropped), else the math span it opens with, else what follows its last "is"/"="
    or its last math span or number ("The volume of $V$ is 120." -> ``120``)."""
    sentence = CONNECTIVE.sub("", sentence)
    answer = strip_delimiters(sentence)
    if not answer:
        return None
    if len(plain_words(sentence)) <= 1:  # words counted before "$" are stripped off the ends
        return answer
    leading = MATH_SPAN.match(sentence) if leading_span else None
    if leading and span_text(leading):
        return span_text(leading)  # "$800$ (independent of $T$)": the span stated first
    stated = re.split(r"\s(?:is|are|was|equals|be)\s|=", answer)[-1]
    if len(plain_words(stated)) <= 1 and strip_delimiters(stated):
        return strip_delimiters(stated)
    return last_candidate(sentence)


def last_candidate(text: str) -> str | None:
    """The rightmost math span or (outside LaTeX) number of ``text``."""
    spans = [(m.end(), next(g for g in m.groups() if g is not None).strip())
             for m in MATH_SPAN.finditer(text)]
    numbers = [(m.end(), m.group(0).rstrip(",")) for m in NUMBER.finditer(blank_latex(text))]
    candidates = sorted([c for c in spans + numbers if c[1]], key=lambda c: c[0])
    return candidates[-1][1] if candidates else None


def choice_letter(text: str, choices: str) -> str | None:
    """``(D)``, ``D.``, ``D)``, ``\\text{(D)}``, ``Option D`` or ``D`` alone -> ``D``."""
    text = re.sub(r"\\(?:text|textbf|mathrm)\s*\{([^}]*)\}", r"\1", text).strip()
    text = CHOICE_LEAD.sub("", text)
    match = re.fullmatch(r"\(?([" + re.escape(choices) + r"])\)?[.:)]?(?:\s.*)?", text, re.S)
    return match.group(1) if match else None


def from_choice(text: str, policy: ExtractionPolicy) -> str | None:
    if not policy.choices:
        return None
    letters = re.escape(policy.choices)
    patterns = (  # strongest first; the keywords are case-insensitive, the letters are not
        r"(?i:answer|option|choice)\s*(?i:is|:)?\s*(?:\\text\{)?\(?([" + letters + r"])\)?(?![A-Za-z])",
        r"\n\s*\(?([" + letters + r"])\)?[.)]?\s*$",  # a lone letter as the last line
        r"\(([" + letters + r"])\)",
        r"(?:^|\n)\s*([" + letters + r"])[.)]\s",
        r"(?<![A-Za-z\\])([" + letters + r"])(?![A-Za-z])",
    )
    for pattern in patterns:
        found = re.findall(pattern, text)
        if found:
            return found[-1]
    return None


def from_bare(text: str, policy: ExtractionPolicy) -> str | None:
    stripped = text.strip()
    if not stripped or len(stripped) > 40 or "\n" in stripped:
        return None
    spans = list(MATH_SPAN.finditer(stripped))
    if spans and not (len(spans) == 1 and spans[0].group(0) == stripped):
        return None  # prose around math: not a bare answer
    if len(plain_words(stripped)) > 1 or LEADING_WORD_THEN_NUMBER.match(stripped):
        return None  # a sentence ("Soucis : 2,74") is not a bare answer
    answer = strip_delimiters(stripped)
    if policy.choices:
        letter = choice_letter(answer, policy.choices)
        if letter:
            return letter
    return answer or None


def from_math_span(text: str, policy: ExtractionPolicy) -> str | None:
    """The last math span (spans joined only by "and"/"or"/commas are merged); with a number
    fallback too, whichever of the last span and the last number comes later."""
    if not policy.math_fallback:
        return None
    matches = [m for m in MATH_SPAN.finditer(text) if span_text(m)]
    if not matches:
        return None
    if policy.number_fallback:
        numbers = list(NUMBER.finditer(blank_latex(text)))
        if numbers and numbers[-1].start() >= matches[-1].end():
            return numbers[-1].group(0).rstrip(",")
    group = [matches[-1]]
    for match in reversed(matches[:-1]):
        if not SPAN_CONNECTOR.fullmatch(text[match.end():group[0].start()]):
            break
        group.insert(0, match)
    return ", ".join(unique_answers([span_text(m) for m in group]))


def span_text(match: re.Match[str]) -> str:
    return next(g for g in match.groups() if g is not None).strip()


def blank_latex(text: str) -> str:
    """``text`` with LaTeX math and commands blanked out (same length, positions kept)."""
    def blank(match: re.Match[str]) -> str:
        return " " * len(match.group(0))

    text = re.sub(r"\$\$.+?\$\$|\\\[.+?\\\]|\\\(.+?\\\)", blank, text, flags=re.S)
    return re.sub(r"\\[a-zA-Z]+\s*(\{[^{}]*\})*", blank, text)


def last_number(text: str) -> str | None:
    numbers = NUMBER.findall(text)
    if not numbers:
        return None
    return numbers[-1].rstrip(",")


def from_last_number(text: str, policy: ExtractionPolicy) -> str | None:
    if not policy.number_fallback:
        return None
    return last_number(blank_latex(text))


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
    if not isinstance(text, str) or not text.strip():
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
