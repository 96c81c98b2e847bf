"""Where results go, safely: an output path is checked before any work, and a file is replaced
whole or not at all.

- An output is never one of the command's own inputs, whether named directly, through a
  symbolic link, or as a records file inside an input folder (which the next read would take
  as input).
- A folder, or a path below a regular file, or a folder that cannot be written, is one line
  (UsageError, exit 2) before anything runs.
- A replaced file is written beside itself and renamed over it (os.replace), so a reader sees
  the old file or the new one, never half of one, and a symbolic link at the path is replaced,
  not followed.
- A full disk or another write error is one line naming the file and what was kept
  (OutputError, exit 1).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from chipbench.errors import UsageError

RECORD_SUFFIXES = (".jsonl", ".json")  # what a records folder is read for (publishing.record)


class OutputError(RuntimeError):
    """An output could not be written (a full disk, a read-only file system): one line, exit 1."""


def check_output(out: str | Path, inputs: Iterable[str | Path] = (), option: str = "--out") -> Path:
    """`out` as a path this command may write; raises UsageError (one line) when it may not."""
    path = Path(out)
    if str(out) == "":
        raise UsageError(f"{option} is empty; give a file path")
    if path.is_dir():
        raise UsageError(f"{option} {str(out)!r} is a folder; give a file path inside it")
    existing = next((p for p in path.parents if p.exists()), Path("."))
    if not existing.is_dir():
        raise UsageError(f"{option} {str(out)!r}: {str(existing)!r} is a file, not a folder")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise UsageError(f"{option} {str(out)!r} cannot be written")
    elif not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{option} {str(out)!r}: the folder {str(existing)!r} cannot be written")
    target = path.resolve()
    for given in map(Path, inputs):
        if not given.exists():
            continue
        if given.is_dir():
            inside = given.resolve() in target.parents
            if inside and target.suffix in RECORD_SUFFIXES:
                raise UsageError(
                    f"{option} {str(out)!r} is inside the input folder {str(given)!r}, whose records files are "
                    "this command's input; write the output elsewhere"
                )
        elif given.resolve() == target:
            raise UsageError(
                f"{option} {str(out)!r} is " + (f"{str(given)!r}, " if str(given) != str(out) else "")
                + "one of this command's inputs; write the output elsewhere"
            )  # fmt: skip
    return path


def replace_file(path: str | Path, text: str) -> None:
    """Write `text` to `path` whole: to a file beside it, synced, then renamed over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        kept = "the file there before is unchanged" if path.exists() else "nothing was written"
        raise OutputError(f"could not write {str(path)!r}: {e.strerror or e}; {kept}") from None


def append_line(path: Path, line: str) -> None:
    """Append one line to `path`, synced. A write that fails (a full disk) is cut back off, so the
    file never ends in a partial line of this writer's, and raises OutputError."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        start = os.lseek(fd, 0, os.SEEK_END)
        data = line.encode("utf-8") + b"\n"
        if start > 0 and os.pread(fd, 1, start - 1) != b"\n":
            data = b"\n" + data  # never glue this line to an earlier partial one
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except OSError as e:
            try:
                os.ftruncate(fd, start)
            except OSError:
                pass
            raise OutputError(f"could not append to {str(path)!r}: {e.strerror or e}") from None
    finally:
        os.close(fd)


def keep_elsewhere(line: str) -> str:
    """Where a line that could not be written went: a file in the temporary folder, else stderr."""
    spare = Path(tempfile.gettempdir()) / f"chipbench-unsaved-{os.getpid()}.jsonl"
    try:
        append_line(spare, line)
        return f"this record was saved to {str(spare)!r}"
    except (OSError, OutputError):
        sys.stderr.write(line + "\n")
        return "this record was printed above"
