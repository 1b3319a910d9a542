"""Crash-safe JSONL files: an append-only writer and a reader that drops a torn last line.

``AppendOnlyJsonl`` writes each record as one complete line with a single ``os.write`` on a
file opened ``O_APPEND``, so a process killed at any moment (SIGKILL, Ctrl-C) leaves at most
one torn line at the end, and every line written before is already in the kernel's page cache.
``fsync`` runs at most once per ``fsync_interval_s`` (and on close), bounding what a power loss
can take to that interval. A failed write (``ENOSPC``, ``EDQUOT``, ``EFBIG``) truncates the file
back to its last complete line and raises ``DiskFull``: the file stays valid JSONL.

``read_jsonl_records`` returns the complete lines and reports a torn tail (no final newline,
or a final line that is not JSON) instead of failing; ``repair_torn_tail`` cuts such a tail off
before a resumed run appends to the file. A malformed line *before* the last one is not a
crash artefact: it raises ``UsageError`` naming file and line.

What it deliberately does not do: know what a record means (callers validate the objects).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen_math.errors import PartialRun, UsageError

log = logging.getLogger(__name__)

#: errno values that mean "no room left"; the run stops, resumable once space is freed.
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class DiskFull(PartialRun):
    """A write failed for lack of space; the file was cut back to its last complete line."""


@dataclass(frozen=True)
class JsonlContents:
    """The complete records of a JSONL file, and where a torn tail (if any) starts."""

    records: tuple[dict[str, Any], ...]
    valid_bytes: int  # length of the prefix holding complete lines
    torn_bytes: int  # bytes after it (0 when the file ends cleanly)


def read_jsonl_records(path: Path) -> JsonlContents:
    """Every complete JSON line of ``path``; a torn last line is reported, not raised."""
    data = path.read_bytes() if path.exists() else b""
    lines = data.split(b"\n")
    tail = lines.pop()  # bytes after the last newline: empty when the file ends cleanly
    records: list[dict[str, Any]] = []
    valid = 0
    for number, line in enumerate(lines, start=1):
        parsed = _parse_line(line)
        if parsed is None:
            if number == len(lines) and not tail:
                break  # a torn final line that happens to end in a newline byte
            raise UsageError(f"{path}:{number}: not a JSON object line; the file was edited or corrupted")
        records.append(parsed)
        valid += len(line) + 1
    # a tail without its newline is torn even when it parses: the writer always writes the
    # object and its newline in one call, so the resumed run regenerates that sample
    return JsonlContents(tuple(records), valid, len(data) - valid)


def repair_torn_tail(path: Path) -> int:
    """Cut a torn last line off ``path``; returns the number of bytes dropped."""
    contents = read_jsonl_records(path)
    if contents.torn_bytes:
        with open(path, "r+b") as handle:
            handle.truncate(contents.valid_bytes)
            os.fsync(handle.fileno())
        log.warning("%s: dropped a torn last line (%d bytes) left by an interruption",
                    path, contents.torn_bytes)
    return contents.torn_bytes


def _parse_line(line: bytes) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        value = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


class AppendOnlyJsonl:
    """Append JSON objects to a file, one complete line per ``os.write``; a context manager."""

    def __init__(self, path: Path, *, fsync_interval_s: float = 1.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._size = os.fstat(self._fd).st_size
        self._fsync_interval_s = fsync_interval_s
        self._last_fsync_time = time.monotonic()

    def append(self, record: Mapping[str, Any]) -> None:
        """Write ``record`` as one line; on a full disk cut back and raise ``DiskFull``."""
        line = (json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n").encode("utf-8")
        try:
            self._write_all(line)
        except OSError as exc:
            self._cut_back()
            if exc.errno in NO_SPACE_ERRNOS:
                raise DiskFull(
                    f"disk full while writing {self.path} ({os.strerror(exc.errno)}); the file "
                    "holds every sample up to the last complete line. Free space and rerun the "
                    "same command to resume."
                ) from None
            raise
        self._size += len(line)
        if time.monotonic() - self._last_fsync_time >= self._fsync_interval_s:
            self.sync()

    def sync(self) -> None:
        os.fsync(self._fd)
        self._last_fsync_time = time.monotonic()

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            self.sync()
        except OSError as exc:  # a failing fsync at close must not hide the original error
            log.warning("%s: fsync at close failed: %s", self.path, exc)
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> AppendOnlyJsonl:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def _cut_back(self) -> None:
        try:
            os.ftruncate(self._fd, self._size)
        except OSError as exc:
            log.error("%s: could not cut back a partial line (%s); the next resume drops it",
                      self.path, exc)


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object file of a run; a damaged one is a ``UsageError`` naming it."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not valid JSON ({exc}); the run directory is damaged") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if not isinstance(value, dict):
        raise UsageError(f"{path}: expected a JSON object, got {type(value).__name__}; "
                         "the run directory is damaged")
    return value


def write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON through a temporary file and an atomic rename."""
    write_text_atomic(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: Path, records: list[Mapping[str, Any]]) -> None:
    """Write a whole JSONL view at once (through a temporary file and a rename)."""
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in NO_SPACE_ERRNOS:
            raise DiskFull(f"disk full while writing {path}; free space and rerun") from None
        raise
