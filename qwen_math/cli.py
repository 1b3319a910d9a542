"""The ``qwen-math`` command line: a thin layer over the library.

``main(argv) -> int`` builds one ``argparse`` parser from the ``SUBCOMMANDS`` table; each
subcommand lives in its own module under ``qwen_math.commands`` exposing ``HELP``,
``configure(parser)`` and ``run(args) -> int``, and imports its heavy dependencies inside
``run``. Logs go to stderr, results to stdout. Library exceptions become one-line messages
and the exit codes of ``qwen_math.errors.ExitCode``; Ctrl-C or SIGTERM at any moment (also
while parsing or importing) end a subcommand with one ``interrupted`` line and exit 3
(``qwen_math.interrupts.stop_on_signals``):

    0 done · 1 internal error · 2 usage/config error · 3 partial (resumable)
    4 environment (model/backend/data unavailable) · 5 resume refused

What it deliberately does not do: any work of its own beyond parsing and error mapping.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType

from qwen_math.errors import ExitCode, QwenMathError
from qwen_math.interrupts import stop_on_signals

log = logging.getLogger("qwen_math")

#: Subcommand name -> module implementing it (imported only to build the parser).
SUBCOMMANDS: dict[str, str] = {
    "solve": "qwen_math.commands.solve",
    "eval": "qwen_math.commands.evaluate",
    "prompts": "qwen_math.commands.prompts",
    "rescore": "qwen_math.commands.rescore",
    "score": "qwen_math.commands.score",
    "report": "qwen_math.commands.report",
    "compare": "qwen_math.commands.compare",
    "serve": "qwen_math.commands.serve",
    "merge": "qwen_math.commands.merge",
    "dev": "qwen_math.commands.dev",
}

#: Exceptions raised by ``eval`` and ``sandbox`` (which cannot import ``qwen_math``), by
#: dotted name -> exit code. Resolved lazily, only when such an exception reaches ``main``.
FOREIGN_EXIT_CODES: dict[str, ExitCode] = {
    "eval.errors.DataError": ExitCode.USAGE,
    "eval.errors.DataUnavailable": ExitCode.ENVIRONMENT,
    "sandbox.errors.SandboxUnavailable": ExitCode.ENVIRONMENT,
}

#: errno values of a full disk: the command stopped by a limit (exit 3), not a bug.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

EXIT_CODES_EPILOG = """exit codes:
  0  done
  1  internal error (a bug; please report it)
  2  usage or configuration error
  3  partial: stopped by a limit, resumable by rerunning the same command
  4  environment: model, backend, accelerator or data unavailable
  5  resume refused: the run directory has a different configuration
"""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with prefix abbreviation off and one-line usage errors (exit 2)."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="qwen-math",
        description="Math reasoning with Qwen2.5-Math: solve, evaluate, grade, report.",
        epilog=EXIT_CODES_EPILOG,
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging on stderr")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        child = sub.add_parser(
            name, help=module.HELP, description=module.__doc__, epilog=EXIT_CODES_EPILOG
        )
        module.configure(child)
        child.set_defaults(_module=module)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; Ctrl-C/SIGTERM at any moment end it with one line and exit 3."""
    command = "command"
    with stop_on_signals() as stopper:
        try:
            parser = build_parser()
            args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
            command = args.command or command
            if stopper is not None:
                stopper.command = command
            return _run(parser, args)
        except KeyboardInterrupt:
            return _fail(command, "interrupted; rerun the same command to continue", ExitCode.PARTIAL)


def _run(parser: ArgumentParser, args: argparse.Namespace) -> int:
    _configure_logging(args.verbose, args.quiet)
    module: ModuleType | None = getattr(args, "_module", None)
    if module is None:
        parser.print_help(sys.stderr)
        return int(ExitCode.USAGE)
    try:
        with hub_progress_bars_off(args.quiet):
            code = int(module.run(args))
        sys.stdout.flush()  # a full disk or closed pipe shows here, not at interpreter exit
        return code
    except QwenMathError as exc:
        return _fail(args.command, str(exc), exc.exit_code)
    except BrokenPipeError:
        _discard_stdout()
        return 0  # stdout closed early (`| head`); nothing left to say
    except Exception as exc:
        if isinstance(exc, OSError) and exc.errno in NO_SPACE_ERRNOS:
            _discard_stdout()
            return _fail(args.command, f"cannot write: {exc.strerror} (free space and rerun)",
                         ExitCode.PARTIAL)
        code = _foreign_exit_code(exc)
        if code is None:
            log.exception("internal error in `%s`", args.command)
            return int(ExitCode.INTERNAL)
        return _fail(args.command, str(exc), code)


def _discard_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail a second time."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _fail(command: str, message: str, code: int) -> int:
    print(f"qwen-math {command}: error: {message}", file=sys.stderr)
    return int(code)


def _foreign_exit_code(exc: BaseException) -> ExitCode | None:
    for cls in type(exc).__mro__:
        code = FOREIGN_EXIT_CODES.get(f"{cls.__module__}.{cls.__qualname__}")
        if code is not None:
            return code
    return None


@contextmanager
def hub_progress_bars_off(quiet: bool) -> Iterator[None]:
    """With ``-q``, no "Loading weights" / download bars from transformers and the hub: they
    read ``HF_HUB_DISABLE_PROGRESS_BARS`` when first imported, i.e. inside the subcommand. The
    variable is restored afterwards (``main`` may run in-process, e.g. in tests)."""
    name = "HF_HUB_DISABLE_PROGRESS_BARS"
    previous = os.environ.get(name)
    if quiet:
        os.environ[name] = "1"
    try:
        yield
    finally:
        if quiet and previous is None:
            os.environ.pop(name, None)
        elif quiet:
            os.environ[name] = previous


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=level, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")


if __name__ == "__main__":
    sys.exit(main())
