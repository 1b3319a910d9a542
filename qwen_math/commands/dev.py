"""`qwen-math dev TOOL`: developer tools, one module each, registered in ``DEV_TOOLS``.

Each tool module (``qwen_math/commands/dev_*.py``) exposes ``HELP``, ``configure(parser)`` and
``run(args) -> int`` like a subcommand.
"""

from __future__ import annotations

import argparse
import importlib

HELP = "Developer tools: tiny-model, sandbox-doctor."

#: dev tool name -> module implementing it.
DEV_TOOLS: dict[str, str] = {
    "tiny-model": "qwen_math.commands.dev_tiny_model",
    "sandbox-doctor": "qwen_math.commands.dev_sandbox_doctor",
}


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="tool", metavar="TOOL", parser_class=type(parser))
    sub.required = True
    for name, module_name in DEV_TOOLS.items():
        module = importlib.import_module(module_name)
        child = sub.add_parser(name, help=module.HELP, description=module.__doc__)
        module.configure(child)
        child.set_defaults(_dev_module=module)


def run(args: argparse.Namespace) -> int:
    return int(args._dev_module.run(args))
