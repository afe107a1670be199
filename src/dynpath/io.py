"""Atomic file writes: outputs appear complete or not at all (write to a temp path, then rename)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dynpath.errors import OutputError

# Write failures that mean "no room for this output": reported as OutputError naming the output
# (a bare ``OSError: [Errno 28] No space left on device`` does not say which file).
SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_LIBRARY_ERRNO = re.compile(r"errno = (\d+)")


def space_errno(err: BaseException) -> int | None:
    """The errno of the "no room" write failure behind ``err`` (ENOSPC, EFBIG, EDQUOT), or None.

    Libraries wrap it: PyTorch's zip writer raises ``RuntimeError: unexpected pos`` with the
    OSError as its context (when it writes through a Python file object), and HDF5 (h5py)
    raises an OSError or RuntimeError whose message holds ``errno = N``.
    """
    if isinstance(err, OSError) and err.errno in SPACE_ERRNOS:
        return int(err.errno)
    cause = err.__context__
    if isinstance(err, RuntimeError) and isinstance(cause, OSError) and cause.errno in SPACE_ERRNOS:
        return int(cause.errno)
    if isinstance(err, OSError | RuntimeError):
        found = _LIBRARY_ERRNO.search(str(err))
        if found and int(found.group(1)) in SPACE_ERRNOS:
            return int(found.group(1))
    return None


_UMASK = os.umask(0)
os.umask(_UMASK)  # read once at import: os.umask can only be read by setting it

ROOM_MARGIN = 64 * 1024  # bytes kept free beyond a write: HDF5 metadata, B-tree nodes


def ensure_room(
    path: str | Path, nbytes: int, margin: int = ROOM_MARGIN, name: str | Path | None = None
) -> None:
    """Raise :class:`OutputError` naming ``path`` (or ``name``, e.g. the final path of an
    :func:`atomic_path` temp file) when ``nbytes`` more cannot be written to ``path``.

    For writers that cannot recover from a failed write: HDF5 (h5py) leaves a file whose write
    failed unclosable, and the interpreter then crashes at exit (SIGSEGV). Checked: free space
    on the file system and the process's file-size limit (``RLIMIT_FSIZE``). A quota or a disk
    filled by another process between the check and the write is still caught by
    :func:`atomic_path`'s error mapping; the check only makes the common case clean.
    """
    import resource

    path = Path(path)
    size = path.stat().st_size if path.exists() else 0
    need = int(nbytes) + margin
    free = shutil.disk_usage(path.parent).free
    if free < need:
        raise OutputError(
            errno.ENOSPC,
            f"{os.strerror(errno.ENOSPC)}: {need} bytes needed, {free} free",
            str(name or path),
        )
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    if limit != resource.RLIM_INFINITY and size + need > limit:
        raise OutputError(
            errno.EFBIG,
            f"{os.strerror(errno.EFBIG)}: {size + need} bytes exceed the file-size limit {limit}",
            str(name or path),
        )


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename over it only if the block succeeds.

    The temp file lives in the same directory so the final ``os.replace`` is atomic on POSIX, and
    it is fsynced first so a crash right after the rename cannot leave an empty file behind.
    On any failure the temp file is removed and ``path`` is left as it was; a full disk (or a
    file-size or quota limit) is raised as :class:`~dynpath.errors.OutputError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
            # mkstemp makes 0600 files; outputs get the mode a plain open() would give them
            os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    except BaseException as err:
        tmp_path.unlink(missing_ok=True)
        code = None if isinstance(err, OutputError) else space_errno(err)
        if code is not None:
            raise OutputError(code, os.strerror(code), str(path)) from err
        raise


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
