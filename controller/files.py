"""Reading the files people hand us: plans, scenarios, sinks, kubeconfigs, secrets.

A file is trusted with nothing. Each is read through `read_text`, which refuses a
path that is not a regular file, more bytes than the kind of file may hold, and
bytes that are not UTF-8 (naming the offset), always with one sentence that names
the file and never with a traceback.
"""

from __future__ import annotations

import stat
from pathlib import Path

DOCUMENT_BYTES = 1024 * 1024
SMALL_FILE_BYTES = 64 * 1024


class FileUnusable(ValueError):
    """A file that cannot be read as the text it should hold."""


def read_text(path: Path, what: str, *, limit: int = DOCUMENT_BYTES) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes; FileUnusable otherwise."""
    shown = _shown(path)
    try:
        info = path.stat()
    except OSError as error:
        raise FileUnusable(f"{what} {shown} {_reason(error)}") from None
    if stat.S_ISDIR(info.st_mode):
        raise FileUnusable(f"{what} {shown} is a directory, not a file")
    if not stat.S_ISREG(info.st_mode):
        raise FileUnusable(f"{what} {shown} is not a regular file")
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except OSError as error:
        raise FileUnusable(f"{what} {shown} {_reason(error)}") from None
    if len(raw) > limit:
        raise FileUnusable(f"{what} {shown} is larger than {_size(limit)}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise FileUnusable(
            f"{what} {shown} is not UTF-8 text: byte {error.start} (0x{raw[error.start]:02x}) "
            "cannot be decoded"
        ) from None


def _reason(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "does not exist"
    if isinstance(error, PermissionError):
        return "cannot be read: permission denied"
    return f"cannot be read: {error.strerror or type(error).__name__}"


def _shown(path: Path) -> str:
    text = str(path)
    return text if len(text) <= 120 else f"{text[:120]}…"


def _size(count: int) -> str:
    return f"{count // (1024 * 1024)} MiB" if count >= 1024 * 1024 else f"{count // 1024} KiB"
