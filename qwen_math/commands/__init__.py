"""One module per ``qwen-math`` subcommand: ``HELP``, ``configure(parser)``, ``run(args) -> int``.

Modules here import only light things at top level; heavy imports go inside ``run``.
"""
