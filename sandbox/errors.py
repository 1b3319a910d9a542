"""Exceptions of the ``sandbox`` package (the CLI maps ``SandboxUnavailable`` to exit 4)."""


class SandboxUnavailable(RuntimeError):
    """The minimum isolation (process + rlimits + policy + seccomp) cannot be set up here."""
