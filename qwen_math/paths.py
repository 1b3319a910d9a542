"""Checks on the folders and files a user names: input files read with a clear error, output
folders and files checked before anything is written.

``read_input_text(path, what=...)`` reads a file the user named as UTF-8 text (missing, a
folder, not UTF-8 or unreadable is a ``UsageError`` naming the flag and the path);
``output_folder(path, what=...)`` creates a folder to write into (a file in the way, a missing
permission or a read-only file system is a ``UsageError`` naming the flag and the path);
``check_output_file(path, what=..., inputs=...)`` refuses an output file that is a folder,
sits in a missing folder, or is one of the command's own inputs (which writing would destroy).

What it deliberately does not do: decide whether an existing folder's contents may be
replaced (run directories, merges and checkpoints each have their own rule).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from qwen_math.errors import UsageError


def read_input_text(path: str | os.PathLike[str], *, what: str) -> str:
    """The text of an input file the user named (``what``: the flag or role, for the message)."""
    file = Path(path)
    try:
        return file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{what} {file}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {file}: is a directory") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise UsageError(f"{what} {file}: cannot read it ({exc.strerror or exc})") from None


def output_folder(path: str | os.PathLike[str], *, what: str) -> Path:
    """``path`` as an existing folder, created (with its parents) when missing."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{what} {folder}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{what} {folder}: cannot create it ({exc.strerror or exc})") from None
    return folder


def check_output_file(path: str | os.PathLike[str], *, what: str,
                      inputs: Iterable[str | os.PathLike[str]] = ()) -> Path:
    """``path`` when a file can be written there without destroying an input."""
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"{what} {target}: is a folder, not a file")
    if not target.parent.is_dir():
        raise UsageError(f"{what} {target}: folder {target.parent} does not exist")
    for source in inputs:
        if same_file(target, Path(source)):
            raise UsageError(f"{what} {target} is also an input file; writing it would destroy "
                             "that input, choose another path")
    return target


def same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file (links and relative spellings included)."""
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()
