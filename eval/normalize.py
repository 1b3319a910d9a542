"""String normalisation of final answers, before any comparison.

Turns the many ways a model or a dataset writes one answer into one spelling: math
delimiters and ``\\boxed`` wrappers stripped, ``\\dfrac``/``\\tfrac`` -> ``\\frac``,
``\\left``/``\\right`` and spacing commands dropped, thousands separators (``1,000``,
``1{,}000``, ``10,\\!000``, ``1 000``) removed without collapsing lists such as ``3,4``, and
the *decorations* of a number (a trailing unit, ``^\\circ``, ``\\$``, ``\\%``) split off and
reported as flags so that the comparison can decide what they mean.

What it deliberately does not do: parse mathematics or decide equivalence (see
``eval.equivalence``), or find the answer inside a response (see ``eval.extract``). Pure
string work, no SymPy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# --- brace helpers ---------------------------------------------------------------------


def matching_brace(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``{`` at ``start`` (-1 when unbalanced)."""
    depth = 0
    for i in range(start, len(text)):
        char = text[i]
        if char == "\\":
            continue
        if char == "{" and (i == 0 or text[i - 1] != "\\"):
            depth += 1
        elif char == "}" and (i == 0 or text[i - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return i
    return -1


BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])\s*")


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


def unwrap_command(text: str, commands: tuple[str, ...]) -> str:
    """Replace ``\\cmd{X}`` by ``X`` for each command name (keeps nested braces)."""
    pattern = re.compile(r"\\(?:" + "|".join(commands) + r")\s*\{")
    out: list[str] = []
    pos = 0
    while True:
        match = pattern.search(text, pos)
        if match is None:
            out.append(text[pos:])
            return "".join(out)
        close = matching_brace(text, match.end() - 1)
        if close < 0:
            out.append(text[pos:])
            return "".join(out)
        out.append(text[pos:match.start()])
        out.append(unwrap_command(text[match.end():close], commands))
        pos = close + 1


def split_top_level(text: str, separators: str = ",") -> list[str]:
    """Split on separator characters that sit outside every bracket pair."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "\\" and i + 1 < len(text) and text[i + 1] in "{}":
            current.append(text[i:i + 2])
            depth += 1 if text[i + 1] == "{" else -1
            i += 2
            continue
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char in separators and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return parts


# --- the rewriting tables --------------------------------------------------------------

#: Literal substitutions applied in order (a table, not a branch per case).
LITERAL_REWRITES: tuple[tuple[str, str], ...] = (
    ("\\dfrac", "\\frac"),
    ("\\tfrac", "\\frac"),
    ("\\cfrac", "\\frac"),
    ("\\displaystyle", ""),
    ("\\bigl", ""),
    ("\\bigr", ""),
    ("\\Bigl", ""),
    ("\\Bigr", ""),
    ("{,}", ","),
    (",\\! ", ","),
    ("\\!", ""),
    ("\\,", " "),
    ("\\;", " "),
    ("\\:", " "),
    ("\\quad", " "),
    ("\\qquad", " "),
    ("~", " "),
    ("\\leqslant", "\\leq"),
    ("\\geqslant", "\\geq"),
    ("\\neq", "\\ne"),
    ("\\lt", "<"),
    ("\\gt", ">"),
    ("\\mid", "|"),
    ("\\vert", "|"),
    ("\\lvert", "|"),
    ("\\rvert", "|"),
    ("\\varnothing", "\\emptyset"),
    ("\\{\\}", "\\emptyset"),
    ("−", "-"),
    ("\u2212", "-"),
    ("×", "\\times "),
    ("÷", "\\div "),
    ("π", "\\pi "),
    ("√", "\\sqrt"),
    ("∞", "\\infty "),
)

#: Commands whose argument is the content itself (formatting only).
FORMATTING_COMMANDS = ("boxed", "fbox", "mathbf", "textbf", "bf", "mathrm", "textrm",
                       "text", "mbox", "textnormal", "mathit", "textit", "operatorname",
                       "mathsf", "textsf", "hbox", "emph", "underline", "mathbb")

DELIMITERS = re.compile(r"^\s*(\$\$|\$|\\\(|\\\[|\\?[\"“]|\*\*)\s*|\s*(\$\$|\$|\\\)|\\\]|\\?[\"”]|\*\*)\s*$")

DEGREE = re.compile(r"\s*(\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|°|\^\s*\{\s*o\s*\})\s*")
PERCENT = re.compile(r"\s*(\\%|%|\\text\{\s*\\?%\s*\}|\s+percent(age)?|\s+pct)\s*$", re.I)
CURRENCY = re.compile(r"^\s*(\\\$|\$|€|£|¥|\\euro|\\pounds)\s*|\s*(\\\$|€|£|¥)\s*$")

#: Unit words removed from the end of a numeric answer (an allowlist: never a free guess).
UNIT_WORDS = (
    "square units", "square unit", "sq units", "units", "unit", "square feet", "square foot",
    "square inches", "square meters", "square centimeters", "square miles", "square yards",
    "cubic feet", "cubic inches", "cubic units", "cubic meters", "cubic centimeters",
    "dollars", "dollar", "cents", "cent", "yuan", "euros", "pounds", "degrees", "degree",
    "radians", "cm", "mm", "km", "m", "meters", "meter", "metres", "inches", "inch", "in",
    "feet", "foot", "ft", "yards", "yard", "miles", "mile", "mph", "hours", "hour", "hrs", "h",
    "minutes", "minute", "min", "seconds", "second", "sec", "s", "days", "day", "weeks",
    "week", "months", "month", "years", "year", "kg", "g", "grams", "gram", "kilograms",
    "liters", "liter", "litres", "ml", "l", "gallons", "gallon", "ounces", "ounce", "oz",
    "lbs", "lb", "people", "students", "ways", "points", "times", "pages", "apples",
    "marbles", "cookies", "books", "eggs", "cups", "boxes", "items", "tickets", "hats",
    "trees", "pieces", "coins", "steps", "sides", "games", "balls", "numbers", "integers",
    "digits", "diagonals", "triangles", "squares", "vertices", "edges", "faces",
    "centimeters", "millimeters", "kilometers", "cm^2", "m^2", "cm^3", "m^3", "km/h",
    "m/s", "ft^2", "in^2", "mi", "sq ft", "square", "cubic",
)
UNIT_PATTERN = re.compile(
    r"(?<=[\d}\s.)])\s*(?:\\(?:text|mbox|textnormal|mathrm)\s*\{\s*)?(?:"
    + "|".join(re.escape(u).replace(r"\ ", r"\s+") for u in sorted(UNIT_WORDS, key=len, reverse=True)
               if len(u) > 1)  # single letters (m, s, g) only with a space: see strip_unit_suffix
    + r")\.?\s*\}?(?:\s*\^\s*\{?[23]\}?)?\s*$",
    re.I,
)
TEXT_UNIT = re.compile(r"(?<=[\d})])\s*\\(?:text|mbox|textnormal|mathrm|textbf)\s*\{\s*[A-Za-z][A-Za-z .]*\}"
                       r"(?:\s*\^\s*\{?[23]\}?)?\s*$")

#: ``\\le`` written with a doubled backslash (an escaping slip), before a known command only.
ESCAPED_COMMAND = re.compile(
    r"(?<!\\)\\\\(?=(?:le|leq|ge|geq|frac|dfrac|sqrt|left|right|pi|cdot|times|in|cup|infty|text)(?![a-zA-Z]))"
)
CLOCK_TIME = re.compile(r"\d(?::\d\d)?\s*(?:\\(?:text|mbox|mathrm)\s*\{)?\s*[ap]\.?\s*m\.?\s*\}?\s*$", re.I)
THOUSANDS_COMMA = re.compile(r"^(-?[1-9]\d{0,2})((?:,\d{3})+)(\.\d+)?$")
DECIMAL_COMMA = re.compile(r"-?\d+,\d+")
THOUSANDS_SPACE = re.compile(r"^(-?[1-9]\d{0,2})((?: \d{3})+)(\.\d+)?$")


@dataclass(frozen=True)
class Normalized:
    """An answer's canonical text plus the decorations that were split off it."""

    text: str
    percent: bool = False
    degree: bool = False
    currency: bool = False
    unit: bool = False
    unit_power: int | None = None  # 2 for cm^2 / square feet, 3 for cubic units; else None

    @property
    def decorated(self) -> bool:
        return self.degree or self.currency or self.unit


def strip_delimiters(text: str) -> str:
    """Drop surrounding ``$``/``\\(``/``\\[`` math delimiters and trailing punctuation."""
    previous = None
    text = text.strip()
    while previous != text:
        previous = text
        text = DELIMITERS.sub("", text).strip()
        text = re.sub(r"(?<!\\)[.;,]+$", "", text).strip()
    return text


#: A bold number typeset digit by digit (``\\mathbf{1 4 4 0 0}``, OlympiadBench solutions).
SPACED_BOLD_DIGITS = re.compile(r"\\(?:mathbf|textbf|boldsymbol)\s*\{\s*(-?\s*\d(?:\s+\d)+)\s*(\.?)\s*\}")


def join_spaced_bold_digits(text: str) -> str:
    return SPACED_BOLD_DIGITS.sub(lambda m: re.sub(r"\s+", "", m.group(1)) + m.group(2), text)


def apply_rewrites(text: str) -> str:
    text = join_spaced_bold_digits(text)
    text = re.sub(r",\s*\\!\s*(?=\d{3}(?!\d))", ",", text)  # 111, \! 111: a separator
    for old, new in LITERAL_REWRITES:
        text = text.replace(old, new)
    text = re.sub(r"\\(?:left|right)(?![a-zA-Z])", "", text)
    text = re.sub(r"\\(le|ge)(?![a-zA-Z])", r"\\\1q", text)
    text = ESCAPED_COMMAND.sub(r"\\", text)
    text = re.sub(r"(?<!\\)\\(?:[,;: ]|hspace\s*\{[^}]*\}|phantom\s*\{[^}]*\})", " ", text)
    text = re.sub(r"\\(?:big|Big|bigg|Bigg)(?![a-zA-Z])", "", text)
    return text


def remove_thousands_separators(text: str) -> str:
    """``1,000,000`` -> ``1000000`` (groups of exactly three digits); ``3,4`` stays a list."""
    text = THOUSANDS_COMMA.sub(lambda m: m.group(1) + m.group(2).replace(",", "") + (m.group(3) or ""), text)
    spaced = THOUSANDS_SPACE.match(text)
    if spaced:
        text = spaced.group(1) + spaced.group(2).replace(" ", "") + (spaced.group(3) or "")
    return text


def degree_gap(match: re.Match[str]) -> str:
    """A degree sign at the end goes; one inside leaves a space (``45^\\circ,135^\\circ`` is a
    list, never the number 45135)."""
    return "" if match.end() == len(match.string) else " "


def split_decorations(text: str) -> Normalized:
    """Strip a trailing unit, degree sign, currency sign or percent sign, remembering each."""
    percent = degree = currency = unit = False
    power = None
    for _ in range(3):
        stripped, n = PERCENT.subn("", text)
        if n:
            percent, text = True, stripped.strip()
        stripped, n = DEGREE.subn(degree_gap, text)
        if n and not re.search(r"\\circ", stripped):
            degree, text = True, stripped.strip()
        stripped, n = CURRENCY.subn("", text)
        if n and stripped:
            currency, text = True, stripped.strip()
        if re.search(r"\d", text) and not CLOCK_TIME.search(text):
            stripped, n = TEXT_UNIT.subn("", text)
            if n == 0:
                stripped, n = UNIT_PATTERN.subn("", text)
            if n and stripped.strip() and not stripped.rstrip().endswith(("/", "\\cdot", "*", "-")):
                unit, power, text = True, power or unit_power(text[len(stripped):]), stripped.strip()
    return Normalized(text, percent=percent, degree=degree, currency=currency, unit=unit, unit_power=power)


def unit_power(unit: str) -> int | None:
    """The power a stripped unit states (``cm^2``, ``square feet`` -> 2; ``cubic`` -> 3)."""
    match = re.search(r"\^\s*\{?\s*([23])\s*\}?", unit)
    if match:
        return int(match.group(1))
    if re.search(r"\b(?:square|sq)\b", unit, re.I):
        return 2
    return 3 if re.search(r"\bcubic\b", unit, re.I) else None


def normalize_answer(text: str) -> Normalized:
    """The canonical spelling of one final answer and its split-off decorations."""
    text = strip_delimiters(text.replace("\n", " "))
    text = apply_rewrites(text)
    text = unwrap_command(text, ("boxed", "fbox"))
    text = strip_delimiters(text)
    decorated = split_decorations(text)
    body = unwrap_command(decorated.text, FORMATTING_COMMANDS)
    body = re.sub(r"\s+", " ", body).strip()
    body = strip_delimiters(body)
    unstripped = body
    body, compound_unit = strip_unit_suffix(body)
    power = decorated.unit_power or (unit_power(unstripped[len(body):]) if compound_unit else None)
    body = remove_thousands_separators(body)
    return Normalized(body, decorated.percent, decorated.degree, decorated.currency,
                      decorated.unit or compound_unit, power)


UNIT_SET = frozenset(u for u in UNIT_WORDS if " " not in u and "/" not in u and "^" not in u)
UNIT_TOKEN = re.compile(r"(?:\s*(?:/|\\cdot|·|\*|-)?\s*([A-Za-z]+)(?:\s*\^\s*\{?-?[1-3]\}?)?)\s*$")


def strip_unit_suffix(text: str) -> tuple[str, bool]:
    """Strip a compound unit such as ``m / s`` or ``lb-sec/ft`` after a number (every word
    must be a known unit; ``m/s`` alone is not stripped: there must be a number before it)."""
    end = len(text)
    while True:
        match = UNIT_TOKEN.search(text, 0, end)
        word = match.group(1) if match else ""
        if match is None or (word if len(word) == 1 else word.lower()) not in UNIT_SET:
            break
        if len(match.group(1)) == 1 and not re.match(r"\s|\s*(?:/|\\cdot|·|\*|-)", match.group(0)):
            break  # "5m" may be 5 times m; "5 m" is five metres
        end = match.start()
    if end == len(text):
        return text, False
    head = text[:end].rstrip()
    if not head or not re.search(r"[\d)}.]$", head) or head.endswith("^"):
        return text, False
    return head, True


def canonical_text(text: str) -> str:
    """A spacing/case-insensitive key for text answers and cheap string equality."""
    text = re.sub(r"(?<=\d)\s+(?=\d)", "_", text)  # "1 2" is two numbers, not 12
    text = re.sub(r"\s+", "", text).lower()
    text = re.sub(r"\{(\w)\}", r"\1", text)  # \frac{1}{2} = \frac12, but \sqrt{2}x != \sqrt{2x}
    return text.strip(".")
