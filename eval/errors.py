"""Exceptions of the ``eval`` package (the CLI maps them to exit codes 2 and 4)."""


class DataError(ValueError):
    """Bad input data: malformed JSONL (file:line), missing fields, unknown dataset (exit 2)."""


class DataUnavailable(RuntimeError):
    """Data cannot be had here, e.g. the Hugging Face hub while offline (exit 4)."""
