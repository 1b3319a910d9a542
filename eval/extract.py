"""Find the final answer a model response commits to.

Extraction is a priority table of rules (``RULES``); the first rule that finds something
wins, and within a rule the rightmost match wins:

1. ``\\boxed{}`` / ``\\fbox{}`` commands (nested braces; the last one; several boxes that sit
   together at the end, e.g. ``\\boxed{1} and \\boxed{2}``, are merged into a list, repeats
   removed);
2. the last explicit anchor: "final answer is", "The answer is", "Answer:", ``####``,
   "correct answer is", and the Chinese ones (``答案是``, ``答案为``, ``故选``, ``所以选``,
   ``答：``);
3. multiple-choice letters, when the dataset has choices (``(D)``, ``D.``, ``Answer: D``,
   ``选B``, a lone letter as the last line); letter sets ("ACD", "A、C") where the policy
   allows several; a hedge between two letters ("(D) or (E)") commits to nothing;
4. a short bare answer that is its own answer (``7,425,000``, ``x=3``, ``4:30 p.m.``);
5. the last LaTeX math span, only where the policy asks for it; the last sentence's stated
   span, where the policy asks for that (worked solutions that end in a statement);
6. where the policy asks for it (word problems), a last line that is a linear equation in one
   unknown (``x:The number; 3*(x+2)=24+x``) gives the unknown's value (SymPy, imported only
   then);
7. the value after the last "=" of the last line (a mixed number ``4 1/3`` kept whole), then
   the last number, only where the policy asks for it (GSM8K-style word problems, and
   multiple-choice responses that name no letter: graded by the row's options), never from
   inside LaTeX.

Before the rules run, full-width forms (``（C）``, ``：``, ``，``) become ASCII and GSM8K
calculator annotations (``<<3*4=12>>``) are cut out. After a rule answers, a Chinese unit or
counter after a number is dropped (``12 元`` -> ``12``); where the policy solves for unknowns,
an equation answer gives its solution and a proportion its new term (``2:3=14:21`` -> ``21``;
a ratio reduced, ``15:18=5:6``, stays ``5:6``); and where the policy asks for it an
arithmetic chain commits to its last value (``7+2=9`` -> ``9``).

Tool-integrated traces: the ``````python`` and ``````output`` blocks are cut out before any
rule runs; when the remaining text commits to nothing, the last program output may serve
(``ExtractionPolicy.output_fallback``).

Policies (``eval.policies``) are chosen by dataset name through ``eval.datasets``; that
dependency is one-way (``eval.datasets`` never imports this module).

What it deliberately does not do: normalise or compare answers (``eval.normalize``,
``eval.equivalence``; options by their text: ``eval.choices``), or guess: no rule fires ->
``None``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from eval.datasets import extraction_policy
from eval.normalize import boxed_spans, canonical_text, strip_delimiters
from eval.policies import POLICIES, ExtractionPolicy

__all__ = ["POLICIES", "RULES", "ExtractionPolicy", "boxed_spans", "extract_answer", "split_tool_blocks"]

TOOL_BLOCK = re.compile(r"```(python|output)[^\n]*\n(.*?)(?:```|\Z)", re.S)
CJK = "\u4e00-\u9fff"
ANCHOR = re.compile(
    r"(?:final answer is|the answer is|(?:correct|right) (?:answer|option|choice) is|answer is:"
    r"|\banswer\s*\**\s*[:：]|\bans\s*[:：]|####(?=\s*[-\d$\\])"
    r"|答案(?:应)?(?:是|为|选)|(?:故|所以|因此|因而|从而|则|即|应)\s*(?:应)?选(?:择)?(?!项)"
    r"|正确(?:答案|选项)(?:是|为)|(?:^|\n)\s*答\s*[:：])"
    r"\s*\**\s*[:：]?[\s*]*",
    re.I,
)
SENTENCE_END = re.compile(
    r"(?<!\d)\.(?=\s|$)|(?<=\d)\.(?=\s+[A-Z]|\s*$)|\n|(?<=[)\]$])\.|\s+I hope"
    r"|[。！？]|[,;!?](?=\s*[" + CJK + "])"
)
WORD = re.compile(r"(?<![\\a-zA-Z])[A-Za-z]{2,}|[" + CJK + "]+")
MATH_SPAN = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|(?<!\\)\$((?:\\\$|[^$])+?)(?<!\\)\$", re.S)
NUMBER = re.compile(r"(?<![A-Za-z0-9_^{.])-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
SPAN_CONNECTOR = re.compile(r"\s*(?:,|;|,?\s*(?:and|or)|\\quad|\\text\{\s*(?:and|or)\s*\})?\s*", re.I)
CONNECTIVE = re.compile(r"^\s*(?:therefore|thus|then|hence|so|simply|just|clearly|indeed)\b[\s,:]*", re.I)
CHOICE_LEAD = re.compile(r"^[\s,:;(]*(?:(?:answer\s+)?(?:option|choice)\b\s*(?:is\b)?[\s:\-]*|选项\s*)?", re.I)
TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\s*\{([^}]*)\}")
LEADING_WORD_THEN_NUMBER = re.compile(r"^[^\d]*(?<![\\a-zA-Z])[A-Za-z]{2,}[^\d]*\d")
#: After a choice: another letter offered as an alternative ("(D) or (E)") -> no commitment.
HEDGE = re.compile(r"^\s*(?:or|and|/|,|或|或者|还是)\s*(?:option\s*)?\(?[A-Z]\)?(?![A-Za-z])", re.I)
#: GSM8K calculator annotations, ``<<48/2=24>>``.
CALCULATOR_NOTE = re.compile(r"<<[^<>\n]{0,200}>>")
#: Full-width ASCII forms (``（C）``, ``：``, ``，``, ``Ｃ``) and the ideographic space -> ASCII.
FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
#: A Chinese unit or counter after a number: ``12 元``, ``68下``, ``\frac{1}{2}米``.
CJK_UNIT = re.compile(
    r"^(.*[\d}$%])\s*(?:\\(?:text|mbox|mathrm)\s*\{\s*[" + CJK + r"]{1,4}\s*\}|[" + CJK + r"]{1,4})$", re.S
)
#: The value right after an "=" (thousands grouped by commas or spaces kept together), not one
#: that goes on ("= 3(x+1)", "= 2 + 5"); a unit in brackets after it ("= 9.6 (km)") ends it.
EQUATION_RESULT = re.compile(
    r"=\s*\$?\s*(\d{1,2}:\d{2}(?:\s*[ap]\.?m\.?)?(?![\d:])"  # a clock time: hh:mm=3:30 p.m.
    r"|\d+\s+\d+/\d+(?![\d/])"  # a mixed number: =4 1/3 km/h
    r"|-?(?:\d{1,3}(?:[, ]\d{3})+(?![\d,])|\d+)(?:\.\d+)?(?:/\d+)?)(?!\s*(?:[-+*×÷^\d:]|\((?![A-Za-z][A-Za-z/ ]*\))|/\s*\d)|[.,]\d)",
    re.I,
)
#: A final linear equation in one single-letter unknown: digits, operators, brackets, one "=",
#: a letter written against a number or bracket ("5x", "(8h)") but never "144 r4" or "r4".
LINEAR_EQUATION = re.compile(r"(?![^=]*=[^=]*=)(?!.*\d\s+[A-Za-z])(?!.*[A-Za-z]\s*\d)(?!.*[A-Za-z]{2})"
                             r"[\d\s.+\-*/()A-Za-z]+=[\d\s.+\-*/()A-Za-z]+")
#: A proportion "2:3=14:21" (scaled up: its last term is the value found) or "15:18=5:6"
#: (reduced to lowest terms: the ratio is the value found).
PROPORTION = re.compile(r"\s*(\d+)\s*:\s*(\d+)\s*=\s*(\d+)\s*:\s*(\d+)\s*")
MIXED_NUMBER = re.compile(r"\d+\s+\d+/\d+")
LONE_SYMBOL = re.compile(r"\s*\\?[A-Za-z](?:\s*_\s*\{?\s*\w+\s*\}?)?\s*")
#: A rule's "the response hedges": extraction stops with ``None`` instead of asking the next rule.
NO_COMMITMENT = ""
BOX_CONNECTOR_WORDS = 4
BOX_CONNECTOR_CHARS = 80


# --- pieces ------------------------------------------------------------------------------


def prepare_prose(text: str) -> str:
    """Full-width forms to ASCII; GSM8K calculator annotations cut out."""
    return CALCULATOR_NOTE.sub("", text.translate(FULL_WIDTH))


def split_tool_blocks(text: str) -> tuple[str, str | None]:
    """The prose with code/output blocks cut out, and the last program output (if any)."""
    outputs = [m.group(2).strip() for m in TOOL_BLOCK.finditer(text) if m.group(1) == "output"]
    prose = TOOL_BLOCK.sub("\n", text)
    return prose, (outputs[-1] if outputs else None)


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
    """The words of ``text`` outside math and LaTeX commands (a run of Chinese is one)."""
    without_math = MATH_SPAN.sub(" ", text)
    without_commands = re.sub(r"\\[a-zA-Z]+(\{[^}]*\})?", " ", without_math)
    return WORD.findall(without_commands)


# --- choices -------------------------------------------------------------------------------


def letter_group(policy: ExtractionPolicy) -> str:
    """The regex of one committed choice: a letter, or a set of them where allowed."""
    letter = "[" + re.escape(policy.choices) + "]"
    if policy.multi_select:
        return letter + r"(?:\s*(?:,|、|和|与|及|&)?\s*" + letter + ")*"
    return letter


def letters_key(text: str) -> str:
    """``"C, A"`` -> ``"AC"``: the letters of a choice, sorted, once each."""
    return "".join(sorted(set(re.findall(r"[A-Z]", text))))


def choice_letter(text: str, policy: ExtractionPolicy) -> str | None:
    """``(D)``, ``D.``, ``D)``, ``\\text{(D)}``, ``Option D``, ``D`` alone (``ACD``, ``A、C``
    where several may be chosen) -> the letters; ``NO_COMMITMENT`` for "(D) or (E)"."""
    text = TEXT_WRAPPER.sub(r"\1", text).strip()
    text = CHOICE_LEAD.sub("", text)
    match = re.fullmatch(r"\(?(" + letter_group(policy) + r")\)?[.:)]?((?:[\s,;].*|[" + CJK + r"].*)?)",
                         text, re.S)
    if not match:
        return None
    if HEDGE.match(match.group(2)):
        return NO_COMMITMENT
    return letters_key(match.group(1))


def trailing_letter(text: str, policy: ExtractionPolicy) -> str | None:
    """An anchor sentence that ends in a lone choice letter ("Ans: 2/5 D") -> ``D``; not when
    it names another letter too."""
    letters = re.escape(policy.choices)
    match = re.search(r"(?<![A-Za-z\\])\(?([" + letters + r"])\)?$", text)
    named = re.findall(r"(?<![A-Za-z\\])\(?([" + letters + r"])\)?(?![A-Za-z])", text)
    if not match or len(set(named)) > 1:
        return None
    return match.group(1)


def answer_letters(answer: str | None, policy: ExtractionPolicy) -> str | None:
    """The letters an extracted answer names (``\\text{(B)}`` -> ``B``), else ``None``."""
    if not answer or not policy.choices:
        return None
    return choice_letter(strip_delimiters(answer), policy) or None


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
    return answer is not None and bool(re.search(r"\d|\\[a-zA-Z]|^\(?[A-Za-z]\)?$|^[A-E]{2,5}$", answer.strip()))


def from_anchor(text: str, policy: ExtractionPolicy, *, leading_span: bool = True) -> str | None:
    matches = list(ANCHOR.finditer(text))
    if not matches:
        return None
    tail = text[matches[-1].end():]
    sentence = cut_sentence(tail.lstrip())
    if policy.choices:
        plain = strip_delimiters(sentence)
        letter = choice_letter(plain, policy)
        if letter is None:
            letter = trailing_letter(plain, policy)
        if letter is not None:
            return letter
    return answer_in_sentence(sentence, leading_span=leading_span)


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
    stated = re.split(r"\s(?:is|are|was|equals|be)\s|=|是|为", answer)[-1]
    if len(plain_words(stated)) <= 1 and strip_delimiters(stated):
        return strip_delimiters(stated)
    return last_candidate(sentence)


def last_candidate(text: str, keep: Callable[[str], bool] = bool) -> str | None:
    """The rightmost math span or (outside LaTeX) number of ``text`` that ``keep`` accepts."""
    spans = [(m.end(), next(g for g in m.groups() if g is not None).strip())
             for m in MATH_SPAN.finditer(text)]
    numbers = [(m.end(), m.group(0).rstrip(",")) for m in NUMBER.finditer(blank_latex(text))]
    candidates = sorted([c for c in spans + numbers if c[1] and keep(c[1])], key=lambda c: c[0])
    return candidates[-1][1] if candidates else None


def choice_patterns(policy: ExtractionPolicy) -> tuple[tuple[str, ...], ...]:
    """Where a response names its choice without an anchor, in tiers: within a tier the
    rightmost mention wins (the final committed choice), a weaker tier is asked only when a
    stronger one finds nothing. The keywords are case-insensitive, the letters are not."""
    letters = re.escape(policy.choices)
    group = letter_group(policy)
    return (
        (r"(?i:answer|option|choice)\s*(?i:is|:)?\s*(?:\\text\{)?\(?(" + group + r")\)?(?![A-Za-z])",
         r"选(?![项择])\s*:?\s*\(?(" + group + r")\)?(?![A-Za-z])",  # 选B / 选 (B)
         r"\n\s*\(?(" + group + r")\)?[.)]?\s*$",  # a lone letter (set) as the last line
         r"\(([" + letters + r"])\)",
         r"(?:^|\n)\s*([" + letters + r"])[.)]\s"),
        (r"(?<![A-Za-z\\])([" + letters + r"])(?![A-Za-z])",),
    )


def from_choice(text: str, policy: ExtractionPolicy) -> str | None:
    if not policy.choices:
        return None
    for tier in choice_patterns(policy):
        found = [match for pattern in tier for match in re.finditer(pattern, text)]
        if found:
            last = max(found, key=lambda match: match.end(1))
            if HEDGE.match(text[last.end():]) or re.search(r"(?i:\bor|或)\s*\(?$", text[:last.start(1)]):
                return NO_COMMITMENT  # "(D) or (E)": two letters offered, none committed to
            return letters_key(last.group(1))
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
        letter = choice_letter(answer, policy)
        if letter is not None:
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


def last_sentence(text: str) -> str:
    """The last sentence of ``text`` that holds math or a number."""
    pieces = re.split(r"(?<=[.!?。])\s+|\n+", text.strip())
    for piece in reversed(pieces):
        if MATH_SPAN.search(piece) or NUMBER.search(blank_latex(piece)):
            return piece
    return ""


def from_statement(text: str, policy: ExtractionPolicy) -> str | None:
    """A worked solution's last statement: "Therefore, the result is $x = 2$." -> its last
    math span or number that states something (not a lone ``$m$`` or ``$\\therefore$``),
    only where the policy asks for it."""
    if not policy.statement_fallback:
        return None
    sentence = last_sentence(text)
    return last_candidate(sentence, keep=states_value) if sentence else None


def states_value(candidate: str) -> bool:
    """Not a lone symbol (``m``) nor only LaTeX commands (``\\therefore``)."""
    return not LONE_SYMBOL.fullmatch(candidate) and bool(re.sub(r"\\[a-zA-Z]+|\s", "", candidate))


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


def solve_linear(statement: str) -> str | None:
    """The value of the one unknown of a linear equation (``3*(x+2)=24+x`` -> ``9``,
    ``(8h)/2=32`` -> ``8``), else ``None`` (no unknown, two unknowns, not linear, no single
    solution). SymPy is imported here, only when such an equation is met."""
    statement = statement.strip().rstrip(".")
    letters = set(re.findall(r"[A-Za-z]", statement))
    if len(letters) != 1 or not LINEAR_EQUATION.fullmatch(statement):
        return None
    import sympy
    from sympy.parsing.sympy_parser import parse_expr, rationalize, standard_transformations

    unknown = sympy.Symbol(letters.pop())
    names = {"Integer": sympy.Integer, "Float": sympy.Float, "Rational": sympy.Rational, "Symbol": sympy.Symbol}
    explicit = re.sub(r"(?<=[\d)])\s*(?=[A-Za-z(])|(?<=[A-Za-z)])\s*(?=\()", "*", statement)
    try:
        left, right = (parse_expr(side, local_dict={str(unknown): unknown}, global_dict=dict(names),
                                  transformations=(*standard_transformations, rationalize)) for side in explicit.split("="))
        difference = sympy.expand(left - right)
        if sympy.Poly(difference, unknown).degree() != 1:
            return None
    except (sympy.SympifyError, sympy.PolynomialError, TypeError, SyntaxError):
        return None
    value = sympy.solve(difference, unknown)[0]
    return str(value) if value.is_Rational else None


def from_linear_equation(text: str, policy: ExtractionPolicy) -> str | None:
    """A word problem's working that ends in an equation for its unknown ("x:The number;
    (x-6)/13=2"): the unknown's value (the last line's last ";" statement)."""
    if not policy.solve_unknown:
        return None
    lines = [line for line in text.splitlines() if line.strip()]
    return solve_linear(lines[-1].split(";")[-1]) if lines else None


def from_equation_result(text: str, policy: ExtractionPolicy) -> str | None:
    """The value after the last "=" of the last line ("so 4+5=9 points in 40 minutes" -> 9):
    a word problem's last computation beats a number mentioned after it."""
    if not policy.number_fallback:
        return None
    lines = [line for line in blank_latex(text).splitlines() if line.strip()]
    found = EQUATION_RESULT.findall(lines[-1]) if lines else []
    if not found:
        return None
    if MIXED_NUMBER.fullmatch(found[-1]):
        return " ".join(found[-1].split())  # "4 1/3" keeps its space (not a thousands group)
    return found[-1].replace(" ", "").rstrip(",")


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
    ("statement", from_statement),
    ("linear_equation", from_linear_equation),
    ("equation_result", from_equation_result),
    ("last_number", from_last_number),
)
#: Rules that read a number out of the prose: a TIR program's last output beats them.
PROSE_NUMBER_RULES = frozenset({"linear_equation", "equation_result", "last_number"})


# --- cleaning an extracted answer ---------------------------------------------------------------


def drop_cjk_unit(answer: str, policy: ExtractionPolicy) -> str:
    """``12 元`` -> ``12``; ``68下`` -> ``68`` (a number's Chinese unit or counter)."""
    match = CJK_UNIT.fullmatch(answer)
    return strip_delimiters(match.group(1)) if match and match.group(1).strip() else answer


def found_value(answer: str, policy: ExtractionPolicy) -> str:
    """Where the policy solves for an unknown, an answer that is an equation to solve gives
    its solution (``(8h)/2=32`` -> ``8``) and a completed proportion its last term
    (``2:3=14:21`` -> ``21``; ``15:18=5:6``, a ratio reduced, -> ``5:6``)."""
    if not policy.solve_unknown:
        return answer
    proportion = PROPORTION.fullmatch(answer)
    if proportion:
        a, b, c, d = (int(term) for term in proportion.groups())
        if (a, b) == (c, d) or a * d != b * c:
            return answer  # "4:30=4:30" (a clock time), or not a proportion
        reduced = math.gcd(c, d) == 1 and math.gcd(a, b) > 1
        return f"{c}:{d}" if reduced else str(d)
    return solve_linear(answer.split(";")[-1]) or answer


def chain_value(answer: str, policy: ExtractionPolicy) -> str:
    """Where the policy asks for it, a list of computations commits to its last step, and an
    equation chain to its last side: an
    arithmetic one always (``7+2=9`` -> ``9``), a symbolic one in worked solutions unless it
    only names a value (``( - b ) ^ 2 - 9 a ^ 2 = b ^ 2 - 9 a ^ 2`` -> its right side;
    ``x = 5`` stays)."""
    steps = answer.split(";")
    if policy.final_value and len(steps) > 1 and all("=" in step for step in steps[:-1]) and steps[-1].strip():
        answer = steps[-1].strip()  # "27/4=6 r3; 3/1=3", "7+43=50; 7:50": the last step
    if not policy.final_value or "=" not in answer or re.search(r"[<>]|\\[lg]eq?(?![a-z])|\\ne(?![a-z])", answer):
        return answer
    sides = [side.strip() for side in answer.split("=")]
    if sides[0] == "" and len(sides) >= 2:
        sides = sides[1:]  # "= 2017 + 1 = 2018": a chain continued from the prose
    if len(sides) == 1 and sides[0]:
        return sides[0]
    if len(sides) < 2 or not all(sides):
        return answer
    arithmetic = not any(re.search(r"[A-Za-z]", re.sub(r"\\[a-zA-Z]+", "", side)) for side in sides[:-1])
    naming = len(sides) == 2 and LONE_SYMBOL.fullmatch(sides[0]) is not None
    if arithmetic or (policy.statement_fallback and not naming):
        return sides[-1]
    return answer


#: Applied in order to whatever a rule found.
CLEANERS: tuple[Callable[[str, ExtractionPolicy], str], ...] = (drop_cjk_unit, found_value, chain_value)


def clean_answer(answer: str, policy: ExtractionPolicy) -> str | None:
    for cleaner in CLEANERS:
        answer = cleaner(answer, policy)
    return answer or None


# --- the verb ------------------------------------------------------------------------------------


def resolve_policy(dataset: str | ExtractionPolicy | None) -> ExtractionPolicy:
    """The extraction policy for a dataset name, a policy name or a policy object."""
    if isinstance(dataset, ExtractionPolicy):
        return dataset
    return extraction_policy(dataset)


def extract_answer(text: str | None, *, dataset: str | ExtractionPolicy | None = None) -> str | None:
    """The final answer ``text`` commits to, or ``None`` when it commits to none."""
    if not isinstance(text, str) or not text.strip():
        return None
    policy = resolve_policy(dataset)
    text = text.replace("\x00", "")
    prose, last_output = split_tool_blocks(text)
    prose = prepare_prose(prose)
    for name, rule in RULES:
        if name in PROSE_NUMBER_RULES and policy.output_fallback and last_output:
            return output_answer(last_output)  # the program's result beats a prose number
        answer = rule(prose, policy)
        if answer == NO_COMMITMENT:
            return None
        if answer is not None:
            return clean_answer(answer, policy)
    return None


def output_answer(output: str) -> str | None:
    """The answer a program printed: the whole output when short, else its last number."""
    output = output.strip()
    if len(output) <= 40 and "\n" not in output:
        return strip_delimiters(output) or None
    return last_number(output)
