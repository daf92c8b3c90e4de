"""File sources: a path or file:// URI, read only under the pipeline's `source.root`.

The value is resolved like the operating system would open it (symlinks followed, `..`
collapsed) and must then lie under the resolved root; anything else is refused without being
opened, and without saying whether it exists. Called by the Extractor (resolve + stat, for the
source hash); the encode thread then opens the resolved path without following a final
symlink and checks it is the same file (device, inode) that was checked; if not (the file was
replaced, or a folder on the way swapped for a link), the value is resolved and checked again.
The root's own real path is looked up once per process.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlparse

from connector.errors import SourceError


def resolve_under_root(value: str, root: Path | None) -> Path:
    """The real path `value` names, if it lies under `root`; else SourceError."""
    if root is None:
        raise SourceError(
            f"{_short(value)!r} is a file path, but the pipeline has no `source.root`: "
            "paths are read only under a configured root",
            kind="outside_root",
        )
    raw = value
    if value.lower().startswith("file:"):
        u = urlparse(value)
        if u.netloc not in ("", "localhost"):
            raise SourceError(f"file URI {_short(value)!r} names another host ({u.netloc})",
                              kind="unsupported")
        raw = unquote(u.path)
    if not raw or "\x00" in raw:
        raise SourceError(f"{_short(value)!r} is not a usable file path", kind="unsupported")
    real_root = _real_root(str(root))
    candidate = Path(raw)  # no ~ expansion: "~/x" is a folder named "~" under the root
    if not candidate.is_absolute():
        candidate = real_root / candidate
    real = Path(os.path.realpath(candidate))
    if not real.is_relative_to(real_root):
        raise SourceError(
            f"{_short(value)!r} resolves outside the source root {str(root)!r}: not read",
            kind="outside_root",
        )
    return real


@functools.lru_cache(maxsize=256)
def _real_root(root: str) -> Path:
    return Path(os.path.realpath(root))


def stat_file(path: Path, value: str) -> os.stat_result:
    """stat() a resolved path: a regular file, or SourceError (not_found, not_a_file)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SourceError(f"file {_short(value)!r} does not exist", kind="not_found") from None
    except OSError as e:
        raise SourceError(f"file {_short(value)!r} cannot be read: {e.strerror}",
                          kind="unreadable") from None
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(f"{_short(value)!r} is not a regular file", kind="not_a_file")
    return st


def read_file(
    path: Path, value: str, max_bytes: int, *, root: Path | None,
    checked: tuple[int, int] | None,
) -> bytes:
    """Read the file `value` resolved to (`path`, whose (device, inode) was `checked` under
    `root`), at most `max_bytes` (more is `too_large`). Encode thread."""
    f: BinaryIO | None = None
    try:
        f = _open(path, value)
        st = os.fstat(f.fileno())
    except SourceError:
        pass
    if f is None or checked is None or (st.st_dev, st.st_ino) != checked:
        if f is not None:
            f.close()  # not the file that was checked: resolve and check again
        f = _open(resolve_under_root(value, root), value)
        st = os.fstat(f.fileno())
    with f:
        if not stat.S_ISREG(st.st_mode):
            raise SourceError(f"{_short(value)!r} is not a regular file", kind="not_a_file")
        if st.st_size > max_bytes:
            raise SourceError(
                f"file {_short(value)!r} is {st.st_size} bytes, over the limit of {max_bytes}",
                kind="too_large",
            )
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew while we read it
        raise SourceError(f"file {_short(value)!r} is over the limit of {max_bytes} bytes",
                          kind="too_large")
    return data


def _open(path: Path, value: str) -> BinaryIO:
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.fdopen(os.open(path, flags), "rb")
    except FileNotFoundError:
        raise SourceError(f"file {_short(value)!r} does not exist", kind="not_found") from None
    except OSError as e:  # ELOOP: the last component became a symlink
        raise SourceError(f"file {_short(value)!r} cannot be read: {e.strerror}",
                          kind="unreadable") from None


def _short(value: str, limit: int = 200) -> str:
    return value if len(value) <= limit else value[:limit] + "..."
