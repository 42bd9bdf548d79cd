"""Writing files so that a reader never sees half of one, and folders whose names never collide.

A run's ``status.json``, a checkpoint, a made dataset's manifest or a cache file may be read by
another process (the app, a second trainer) at any moment, and the writer may be killed halfway.
So every such file is written to a hidden temporary file in the same folder (``.<name>.<random>.tmp``:
every loader skips hidden files, and :mod:`cnnlab.runs` removes leftovers by that name), flushed to
disk, then renamed over the target with :func:`os.replace`, which is atomic: readers see the old
file or the new one, never a mixture.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .i18n import _

#: How many random names :func:`unique_folder` tries before giving up.
UNIQUE_TRIES = 100


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file to write ``path``'s new content into (for writers that want a file object,
    like ``torch.save``). When the block ends normally the content is fsynced and renamed over
    ``path``; when it raises, the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically (see :func:`atomic_file`)."""
    atomic_write_bytes(path, text.encode(encoding))


def unique_folder(parent: str | os.PathLike[str], stem: str) -> Path:
    """Create and return a new folder ``parent/<stem>-<4 random hex digits>`` (``parent`` is created
    if needed). The folder is made with an exclusive ``mkdir``, so two processes naming a folder in
    the same second never share it: on a collision another suffix is tried. OSError when
    :data:`UNIQUE_TRIES` names are all taken or the folder cannot be made."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for _try in range(UNIQUE_TRIES):
        path = parent / f"{stem}-{secrets.token_hex(2)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(_("could not create a new folder '{stem}-...' in {parent}: {tries} names were taken").format(
        stem=stem, parent=parent, tries=UNIQUE_TRIES))
