"""Atomic file writes for the reports (which import nothing outside ``reports``: the same rule as
:mod:`sim.atomic_write`). A page goes to ``.NAME.tmp`` in the target's folder, then is renamed
over the target, so readers never see half a page; if writing fails the temp file is removed
and the ``OSError`` names the target (``filename``), for a one-line message naming the file.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class WriteError(OSError):
    """Writing an output file failed; ``filename`` is the file, ``strerror`` why."""


_OS_ERROR = re.compile(r"os error (\d+)")  # how polars (Rust) reports the errno of an IO error


def write_error(exc: BaseException, path: Path) -> WriteError:
    """A :class:`WriteError` naming ``path`` for ``exc`` (an ``OSError``, or polars'
    ``ComputeError`` wrapping one): its errno and text, ``filename`` the target."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return WriteError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path))
    found = _OS_ERROR.search(str(exc))
    if found:
        code = int(found.group(1))
        return WriteError(code, os.strerror(code), str(path))
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return WriteError(errno.EIO, first, str(path))


@contextmanager
def atomic_path(path: Path, tag: str = "") -> Iterator[Path]:
    """Yield the temp path to write ``path``'s content to; on success rename it to ``path``.
    ``tag`` makes the temp name unique to a writer (``.NAME.TAG.tmp``) when several processes
    may write the same file at once.

    On any failure the temp file is removed; an ``OSError`` (or polars' IO error) becomes a
    :class:`WriteError` naming ``path`` (:func:`write_error`), anything else propagates unchanged.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}{'.' + tag if tag else ''}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) or type(exc).__name__ == "ComputeError":
            raise write_error(exc, path) from exc
        raise
