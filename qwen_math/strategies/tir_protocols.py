"""TIR protocols: the rules around the model in a tool-integrated trajectory, one frozen object each.

The Qwen team ships two TIR runtimes and this project has its own; they differ in every rule
that touches the model's programs, and each difference moves accuracy. A ``TirProtocol`` names
its rules; ``TirStrategy`` (``qwen_math.strategies.tir``) consults it at each step:

| rule | ``qwen-agent`` (Qwen-Agent ``TIRMathAgent``) | ``math-eval`` (Qwen2.5-Math ``math_eval.py``) | ``notebook`` (ours) |
|---|---|---|---|
| stop | "```output" | "```output", "\\n\\n---", "</s>", "<|im_end|>", "<|endoftext|>" | "```output" |
| a turn runs code when | it holds a complete ```python block (line-wise; the last block unclosed: no) | the right-stripped turn ends with ``` and has no "boxed" | it stopped at "```output", or ended (EOS) right after a closed block, and its prose has no ``\\boxed{}`` |
| the program | the turn's last block | every earlier block of the whole text whose output shows success, ``print(`` lines removed (failed blocks give only their import lines), then the new one | the turn's last block |
| state | fresh | fresh (the earlier blocks are replayed as text) | one persistent session |
| shown | stdout when it ran (empty when silent), else the error's last line | "auto mode": stdout when the last line prints, else ``str(eval(last line))``; empty: ``Done`` / error line | stdout and error together |
| truncation | 128 + "..." + 128 over 256 characters | 200 + "..." + 200 over 400 | none |
| rounds | 10 programs; the 10th runs and ends the trajectory | 4; the 4th runs, then "\\nReach max function call limit." ends it | 4; one more generation; a 5th request ends it unrun |
| cell timeout | 20 s (``Timeout Error``) | 5 s (``Timeout Error``) | 5 s |

Both Qwen runtimes also refuse a program that contains ``input(`` (Qwen-Agent: or
``os?system(``) with a bare ``RuntimeError``. ``max_tool_calls`` given by the user replaces a
protocol's round count (the protocol keeps its shape: whether the last program still runs).

The rule names index the registries below (``RUN_RULES``, ``PROGRAMS``, ``EXECUTIONS``,
``OUTPUTS``); ``TirProtocol.to_json`` is what runs record in their manifest and fingerprint.

What it deliberately does not do: keep per-trajectory state (the strategy does), harden or
isolate execution (``sandbox`` does: every program runs through the public ``Session`` API),
or decide the final answer (the strategy extracts it).
"""

from __future__ import annotations

import ast
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from qwen_math.backends.base import Completion
from qwen_math.errors import UsageError
from qwen_math.prompts import END_TEXTS
from qwen_math.strategies.base import OUTPUT_FENCE, last_python_block

#: What both Qwen runtimes show for a program that ran past its deadline.
TIMEOUT_REPORT = "Timeout Error"
DONE_REPORT = "Done"

#: ``--extract-from``: where the final answer is read.
EXTRACT_FROM = ("full", "first-turn")


# --- one program's outcome -------------------------------------------------------------------
@dataclass(frozen=True)
class CellOutcome:
    """What one program did, with the official runtimes' (result, report) view of it.

    ``program`` is the text that ran (under ``math-eval`` the earlier blocks replayed with the
    new one); ``value`` is the last line's value under auto mode (None elsewhere).
    """

    program: str
    status: str
    stdout: str
    error: str | None
    duration_s: float
    value: str | None = None

    @property
    def result(self) -> str:
        """The official ``result``: the value or stdout when the program ran, else ""."""
        if self.status != "ok":
            return ""
        return self.stdout if self.value is None else self.value

    @property
    def report(self) -> str:
        """The official ``report``: ``Done``, ``Timeout Error`` or the error's last line."""
        if self.status == "ok":
            return DONE_REPORT
        if self.status == "timeout":
            return TIMEOUT_REPORT
        return self.error or self.status

    def notebook_output(self) -> str:
        """Stdout, then the error line when there is one (this project's view)."""
        text = self.stdout
        if self.error:
            text = f"{text}{'' if not text or text.endswith(chr(10)) else chr(10)}{self.error}"
        return text


def outcome_of(program: str, result: Any, *, value: str | None = None) -> CellOutcome:
    """A ``CellOutcome`` from a sandbox ``ExecResult``."""
    return CellOutcome(program, result.status, result.stdout, result.error, result.duration_s, value)


# --- the protocol object ---------------------------------------------------------------------
@dataclass(frozen=True)
class TirProtocol:
    """The rules of one TIR runtime; every field is a value or a registry key (see the table)."""

    name: str
    stop: tuple[str, ...]
    run_rule: str  # RUN_RULES key: does this turn ask for execution?
    program: str  # PROGRAMS key: which code runs
    execution: str  # EXECUTIONS key: in what state, with what result
    output: str  # OUTPUTS key: what the model is shown
    truncate_chars: int | None  # over this many characters: first half + "..." + last half
    max_tool_calls: int  # programs per trajectory when the user sets no limit
    last_call_ends: bool  # the limit-th program still runs, then the trajectory ends
    limit_marker: str  # appended after the last program's output when last_call_ends
    timeout_s: float  # per program
    rstrip_generation: bool  # each generation is right-stripped before anything is appended
    refused: tuple[str, ...] = field(default=())  # regexes: a matching program is not run

    def to_json(self) -> dict[str, Any]:
        """Every value the protocol sets, for the run manifest and fingerprint."""
        return {
            "protocol": self.name, "stop": list(self.stop), "run_rule": self.run_rule,
            "program": self.program, "execution": self.execution, "output": self.output,
            "truncate_chars": self.truncate_chars, "max_tool_calls": self.max_tool_calls,
            "last_call_ends": self.last_call_ends, "limit_marker": self.limit_marker,
            "timeout_s": self.timeout_s, "rstrip_generation": self.rstrip_generation,
            "refused": list(self.refused),
        }

    # the steps TirStrategy asks about, each one registry lookup
    def requests_execution(self, completion: Completion, text: str) -> bool:
        return RUN_RULES[self.run_rule](completion, text)

    def select_program(self, text_so_far: str, turn_text: str) -> str | None:
        return PROGRAMS[self.program](text_so_far, turn_text)

    def show(self, outcome: CellOutcome) -> str:
        return OUTPUTS[self.output](outcome, self.truncate_chars)

    def refusal(self, program: str) -> str | None:
        """The official runtimes' bare ``RuntimeError`` for a program they will not run."""
        return "RuntimeError" if any(re.search(p, program) for p in self.refused) else None


# --- 1) does a turn ask for execution? -------------------------------------------------------
def stopped_for_output_without_answer(completion: Completion, text: str) -> bool:
    """notebook: stopped at "```output" (or EOS right after a closed ```python block), and the
    prose holds no ``\\boxed{}`` answer yet."""
    from eval.extract import boxed_spans, split_tool_blocks

    asked = completion.stop_string == OUTPUT_FENCE or (
        completion.finish_reason == "eos" and ends_with_python_block(text))
    return asked and not boxed_spans(split_tool_blocks(text)[0])


def ends_with_python_block(text: str) -> bool:
    stripped = text.rstrip()
    return (last_python_block(stripped) is not None and stripped.endswith("```")
            and stripped.rfind("```python") > stripped.rfind("```output"))


def any_turn_with_a_block(completion: Completion, text: str) -> bool:
    """qwen-agent: every turn is looked at; the program selection decides (no block: no run)."""
    return True


def ends_with_fence_without_boxed(completion: Completion, text: str) -> bool:
    """math-eval: the right-stripped generation ends with ``` and never says "boxed"."""
    stripped = text.rstrip()
    return "boxed" not in stripped and stripped.endswith("```")


RUN_RULES: dict[str, Callable[[Completion, str], bool]] = {
    "output-fence-or-closed-block": stopped_for_output_without_answer,
    "complete-block": any_turn_with_a_block,
    "ends-with-fence-no-boxed": ends_with_fence_without_boxed,
}


# --- 2) which program runs --------------------------------------------------------------------
def last_block_of_turn(text_so_far: str, turn_text: str) -> str | None:
    """notebook: the code of the turn's last complete ```python block (regex, may share a line)."""
    return last_python_block(turn_text)


def last_complete_block_linewise(text_so_far: str, turn_text: str) -> str | None:
    """qwen-agent: lines between a line starting or ending with ```python and the next line
    starting with ```; only the last block counts, and an unclosed last block means none."""
    program, inside = "", False
    for line in turn_text.split("\n"):
        if line.startswith("```python") or line.endswith("```python"):
            program, inside = "", True
        elif line.startswith("```"):
            inside = False
        elif inside:
            program += line + "\n"
    return program if program and not inside else None


def replay_successful_blocks(text_so_far: str, turn_text: str) -> str | None:
    """math-eval: the program of the whole text (prompt and every turn), see ``replay_program``."""
    return replay_program(text_so_far)


#: Words whose presence in a block's shown output marks it failed (case-insensitive).
FAILURE_WORDS = ("error", "exception", "no algorithms", "cannot", "nan", "...")
INVALID_TRAJECTORY_PROGRAM = "raise ValueError('Invalid trajectory')"


def split_roles(text: str) -> list[tuple[str, str]] | None:
    """The text as (role, content) items: rationale, program, output, ...; None when a
    ```python line opens outside prose or a program closes empty (the official parser fails)."""
    items: list[tuple[str, str]] = []
    role, content = "rationale", ""
    lines = text.split("\n")
    for number, line in enumerate(lines):
        if line == "```python":
            if role != "rationale":
                return None
            if content:
                items.append((role, content))
            role, content = "program", ""
        elif role == "program" and line == "```":
            if not content:
                return None
            items.append((role, content))
            role, content = "output", ""
        elif role == "output" and line.startswith(OUTPUT_FENCE):
            if content:
                return None
        elif role == "output" and line == "```":
            items.append((role, content))
            role, content = "rationale", ""
        else:
            content += line + ("\n" if number < len(lines) - 1 else "")
    if content:
        items.append((role, content))
    return items


def failed_output(output: str) -> bool:
    lowered = output.lower()
    return any(word in lowered for word in FAILURE_WORDS)


def replay_program(text: str) -> str:
    """Every program of ``text``: earlier ones only when their output shows success (their
    ``print(`` lines dropped), failed ones only for their import lines (put first), the last
    one whole."""
    items = split_roles(text)
    if items is None:
        return INVALID_TRAJECTORY_PROGRAM
    programs: list[str] = []
    imports: list[str] = []
    for index, (role, content) in enumerate(items):
        if role != "program":
            continue
        if index == len(items) - 1 or not failed_output(items[index + 1][1].strip()):
            programs.append(content)
        else:
            imports += [line for line in content.split("\n") if line.startswith(("import", "from"))]
    programs = programs or [""]
    if imports:
        programs[0] = "\n".join(imports) + "\n" + programs[0]
    kept = ["\n".join(line for line in p.split("\n") if not line.strip().startswith("print(")) for p in programs[:-1]]
    return "\n".join([*kept, programs[-1]])


PROGRAMS: dict[str, Callable[[str, str], str | None]] = {
    "last-block": last_block_of_turn,
    "last-complete-block": last_complete_block_linewise,
    "replay-successful": replay_successful_blocks,
}


# --- 3) execution semantics (through the public sandbox Session API) --------------------------
def run_in_persistent_session(program: str, trajectory: Any, sandbox: Any, timeout: float) -> CellOutcome:
    """notebook: the trajectory's own session; variables persist between its programs."""
    if trajectory.session is None:
        trajectory.session = sandbox.open_session(trajectory.resources, timeout=timeout)
    return outcome_of(program, trajectory.session.run(program))


def run_fresh(program: str, trajectory: Any, sandbox: Any, timeout: float) -> CellOutcome:
    """qwen-agent: a fresh session per program; the result is its stdout (nothing else)."""
    with sandbox.fresh_session(timeout=timeout) as session:
        return outcome_of(program, session.run(stdout_only(program)))


def stdout_only(program: str) -> str:
    """``program`` such that only what it prints is shown: the sandbox echoes a trailing bare
    expression like a notebook (``x`` shows ``x``'s repr), which ``exec`` never does, so a
    program ending with one gets a ``pass`` after it (only then: line numbers stay put)."""
    try:
        body = ast.parse(program).body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return program  # the sandbox reports the error itself, unchanged
    return f"{program}\npass" if body and isinstance(body[-1], ast.Expr) else program


def run_fresh_auto(program: str, trajectory: Any, sandbox: Any, timeout: float) -> CellOutcome:
    """math-eval's auto mode, in a fresh session under one deadline for the whole program:
    a last line containing ``print(`` runs the program whole (result: stdout); otherwise all
    but the last line run (their stdout is dropped) and the last line is evaluated (result:
    ``str`` of its value; a statement there is ``SyntaxError: invalid syntax``)."""
    lines = program.strip().split("\n")
    with sandbox.fresh_session(timeout=timeout) as session:
        if "print(" in lines[-1]:
            return outcome_of(program, session.run(stdout_only("\n".join(lines))))
        start = time.monotonic()
        head = session.run("\n".join(lines[:-1]))  # its stdout is dropped: no need to strip it
        if not head.ok:
            return outcome_of(program, head)
        syntax = eval_syntax_error(lines[-1])
        if syntax is not None:
            return CellOutcome(program, "error", "", syntax, time.monotonic() - start)
        # the rest of the program's deadline; Session.timeout is read per cell
        session.timeout = max(0.05, timeout - (time.monotonic() - start))
        tail = session.run(f"print((\n{lines[-1]}\n), end='')")
        return replace(outcome_of(program, tail, value=tail.stdout if tail.ok else None),
                       stdout=head.stdout + tail.stdout if tail.ok else head.stdout,
                       duration_s=time.monotonic() - start)


def eval_syntax_error(line: str) -> str | None:
    """The error line ``eval(line)`` raises before running, or None when it is an expression."""
    try:
        compile(line, "<string>", "eval")
    except SyntaxError as exc:
        return f"{type(exc).__name__}: {exc.msg}"
    except ValueError as exc:  # e.g. a NUL byte
        return f"ValueError: {exc}"
    return None


EXECUTIONS: dict[str, Callable[[str, Any, Any, float], CellOutcome]] = {
    "persistent-session": run_in_persistent_session,
    "fresh-stdout": run_fresh,
    "fresh-auto": run_fresh_auto,
}


# --- 4) what the model is shown ------------------------------------------------------------------
def truncate_middle(text: str, limit: int | None) -> str:
    """Over ``limit`` characters: the first and last ``limit // 2`` around "..."."""
    if limit is None or len(text) <= limit:
        return text
    half = limit // 2
    return text[:half] + "..." + text[-half:]


def stdout_when_done(outcome: CellOutcome, limit: int | None) -> str:
    """qwen-agent: the (stripped, truncated) stdout when the program finished, else its report."""
    result, report = truncate_middle(outcome.result.strip(), limit), truncate_middle(outcome.report.strip(), limit)
    return (result if report == DONE_REPORT else report).strip()


def result_else_report(outcome: CellOutcome, limit: int | None) -> str:
    """math-eval: the (stripped, truncated) result, or the report when the result is empty."""
    result, report = truncate_middle(outcome.result.strip(), limit), truncate_middle(outcome.report.strip(), limit)
    return result if result else report


def stdout_and_error(outcome: CellOutcome, limit: int | None) -> str:
    """notebook: stdout and the error line together, fences escaped so output cannot open or
    close a block."""
    from sandbox import escape_fences

    return escape_fences(truncate_middle(outcome.notebook_output(), limit).rstrip())


OUTPUTS: dict[str, Callable[[CellOutcome, int | None], str]] = {
    "stdout-or-report": stdout_when_done,
    "result-else-report": result_else_report,
    "stdout-and-error": stdout_and_error,
}


def output_block(shown: str) -> str:
    """The text appended after a program ran: what it showed, in an ```output block."""
    return f"{OUTPUT_FENCE}\n{shown}\n```\n"


def first_turn_text(transcript: str, stop: tuple[str, ...]) -> str:
    """math-eval's extraction text: the transcript stripped, then cut at each stop string in
    turn (in practice: everything before the first "```output")."""
    text = transcript.strip()
    for word in stop:
        if word in text:
            text = text.split(word)[0].strip()
    return text


# --- the three protocols ---------------------------------------------------------------------
QWEN_AGENT = TirProtocol(
    name="qwen-agent", stop=(OUTPUT_FENCE,), run_rule="complete-block",
    program="last-complete-block", execution="fresh-stdout", output="stdout-or-report",
    truncate_chars=256, max_tool_calls=10, last_call_ends=True, limit_marker="", timeout_s=20.0,
    rstrip_generation=False, refused=(r"(\s|^)?input\(", r"(\s|^)?os.system\("),
)
MATH_EVAL = TirProtocol(
    name="math-eval", stop=(*END_TEXTS, "\n\n---", OUTPUT_FENCE), run_rule="ends-with-fence-no-boxed",
    program="replay-successful", execution="fresh-auto", output="result-else-report",
    truncate_chars=400, max_tool_calls=4, last_call_ends=True,
    limit_marker="\nReach max function call limit.", timeout_s=5.0, rstrip_generation=True,
    refused=(r"(\s|^)?input\(",),
)
NOTEBOOK = TirProtocol(
    name="notebook", stop=(OUTPUT_FENCE,), run_rule="output-fence-or-closed-block",
    program="last-block", execution="persistent-session", output="stdout-and-error",
    truncate_chars=None, max_tool_calls=4, last_call_ends=False, limit_marker="", timeout_s=5.0,
    rstrip_generation=False,
)

#: ``--tir-protocol`` name -> protocol.
PROTOCOLS: dict[str, TirProtocol] = {p.name: p for p in (QWEN_AGENT, MATH_EVAL, NOTEBOOK)}
DEFAULT_PROTOCOL = QWEN_AGENT.name
#: What a run directory made before protocols existed was run with.
LEGACY_PROTOCOL = NOTEBOOK.name


def get_protocol(name: str) -> TirProtocol:
    """The protocol registered as ``name``; unknown names are a ``UsageError``."""
    protocol = PROTOCOLS.get(name)
    if protocol is None:
        raise UsageError(f"unknown TIR protocol {name!r}; choose one of: {', '.join(PROTOCOLS)}")
    return protocol


def check_extract_from(value: str) -> str:
    if value not in EXTRACT_FROM:
        raise UsageError(f"extract_from must be one of {', '.join(EXTRACT_FROM)}, got {value!r}")
    return value
