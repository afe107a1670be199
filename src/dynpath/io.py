"""Atomic file writes: outputs appear complete or not at all (write to a temp path, then rename)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dynpath.errors import LockedError, OutputError, UsageError

# Write failures that mean "no room for this output": reported as OutputError naming the output
# (a bare ``OSError: [Errno 28] No space left on device`` does not say which file).
SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})
_LIBRARY_ERRNO = re.compile(r"errno = (\d+)")
# ``scheme://...``, also as ``pathlib`` leaves it (``Path("s3://b/k")`` is ``s3:/b/k``); a scheme
# has two letters at least, so a Windows drive (``C:/``) is not one.
_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/")


def refuse_uri(path: str | os.PathLike[str], what: str = "", output: bool = False) -> Path:
    """``path`` as a local :class:`Path`, or a :class:`UsageError` when it is a URI.

    ``s3://bucket/x.h5`` given where dynpath reads or writes a local file is never taken as
    the local name ``s3:/bucket/x.h5`` (a directory ``s3:`` in the working directory) nor
    reported as a missing file: the error says how to move the file to or from S3. ``what``
    names the argument or key (``--output``, ``data.features``); ``output`` picks the advice.
    """
    text = os.fspath(path)
    match = _URI.match(text)
    if match is None:
        return Path(text)
    scheme = match.group(1).lower()
    where = f"{what} {text}" if what else text
    if output:
        advice = "write a local file, then upload it (`python -m dynpath.s3 upload FILE URI`)"
    elif scheme == "s3":
        advice = "download it first (`python -m dynpath.s3 download URI FILE`, or `dvc pull`)"
    else:
        advice = "give a local path"
    raise UsageError(f"{where}: a URI ({scheme}://), but a local path is expected; {advice}")


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
    path = refuse_uri(path, output=True)
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
        if isinstance(err, OSError) and not isinstance(err, OutputError) and not err.filename:
            # a short write reported without a file (numpy: "11400 requested and 992 written",
            # a full disk): name the output rather than "(unknown file)"
            strerror = err.strerror or str(err) or type(err).__name__
            raise OutputError(err.errno or errno.EIO, strerror, str(path)) from err
        raise


@contextlib.contextmanager
def staged_dir(out_dir: str | Path) -> Iterator[Path]:
    """Yield an empty staging directory beside ``out_dir``; when the block succeeds, move every
    file written there into ``out_dir`` (same relative path, replacing a previous file of that
    name, keeping the others), else remove it.

    For steps that write several files into one directory (evaluate, report): a failure or a
    Ctrl-C part-way leaves the previous outputs as they were instead of a mix of new and old
    files, and no empty ``out_dir`` when there was none. The moves are renames on one file
    system (the staging directory shares the parent), done only after all the work.
    """
    out_dir = Path(refuse_uri(out_dir, output=True))
    created = _missing_dirs(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(
        tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".staging", dir=out_dir.parent)
    )
    done = False
    try:
        yield stage
        out_dir.mkdir(exist_ok=True)
        for src in sorted(stage.rglob("*")):
            dst = out_dir / src.relative_to(stage)
            if src.is_dir():
                dst.mkdir(exist_ok=True)
            else:
                os.replace(src, dst)
        done = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not done:
            remove_empty_dirs(created)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks (checkpoints can be hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- output locks

_HELD: set[str] = set()  # outputs this process holds (nested steps, e.g. pipeline run-local)
LOCK_SUFFIX = ".dynpath-lock"


def lock_path(path: str | Path) -> Path:
    """The lock file of the output ``path``: ``.<name>.dynpath-lock`` beside the output's REAL
    path (symlinks resolved), in its parent directory.

    Every process that writes the output sees that directory, whatever its ``TMPDIR``, its user
    or its working directory, and two spellings of one output (a symlinked parent, ``..``) name
    one lock. Not inside the output: a lock file there would be an output (DVC would track it).
    """
    real = Path(os.path.realpath(path))
    return real.parent / f".{real.name}{LOCK_SUFFIX}"


def _missing_dirs(path: Path) -> list[Path]:
    """``path`` and its ancestors that do not exist yet, deepest first (to remove them again)."""
    missing = []
    probe = Path(os.path.abspath(path))
    while not probe.exists() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    return missing


def remove_empty_dirs(dirs: list[Path]) -> None:
    """Remove each directory of ``dirs`` (deepest first) that is empty: those a failed step
    created, so that it leaves no empty output directory behind."""
    for d in dirs:
        try:
            d.rmdir()
        except FileNotFoundError:  # never made (the step failed before)
            continue
        except OSError:  # not empty: a file was kept, so are its parents
            break


def check_writable(path: str | Path) -> None:
    """Raise :class:`OutputError` now if ``path`` (a file or directory to be created or
    replaced) cannot be written: its nearest existing ancestor is a file, is read-only, or is not
    writable by this user; ``path`` itself being a directory where a file is expected is checked
    by the callers that know which one they want.

    Steps call this before any work, so that an output on a read-only disk fails in a second
    instead of after an hour of extraction or training.
    """
    path = Path(os.path.abspath(path))
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe != path and not probe.is_dir():
        raise OutputError(
            errno.ENOTDIR, "a part of the path is a file, not a directory", str(path), _NOTHING
        )
    target = probe if probe.is_dir() else probe.parent
    try:
        read_only = bool(os.statvfs(target).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        raise OutputError(errno.EROFS, "read-only file system", str(path), _NOTHING)
    if not os.access(target, os.W_OK | os.X_OK):
        raise OutputError(errno.EACCES, f"{target} is not writable", str(path), _NOTHING)


_NOTHING = "nothing was written; choose a writable location"


@contextlib.contextmanager
def output_lock(path: str | Path) -> Iterator[None]:
    """Hold an advisory lock on the output ``path`` (a directory or a file) for the block.

    A second dynpath process writing the same output fails at once with a :class:`LockedError`
    naming the output and the PID holding it, instead of interleaving its files with the first
    one's (best.pt of one run, summary of the other). The lock is an ``flock`` on
    :func:`lock_path` (beside the output's real path, so processes with different ``TMPDIR``
    share it), released by the kernel when the holder dies: a killed run never leaves a stale
    lock, only an unlocked file the next run takes over. The file is removed on release; a
    run that locked a file since unlinked retries on the new one, so two runs never hold two
    files of one path. Re-entrant within a process. The output is checked for writability
    first (:func:`check_writable`); parent directories made for the lock are removed again
    when the block leaves them empty.
    """
    import fcntl

    refuse_uri(path, output=True)
    key = os.path.realpath(path)
    if key in _HELD:
        yield
        return
    check_writable(key)
    created = _missing_dirs(Path(key).parent)
    Path(key).parent.mkdir(parents=True, exist_ok=True)
    lock = lock_path(key)
    try:
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644 & ~_UMASK)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.read(fd, 64).decode("utf-8", "replace").split() or ["?"]
                os.close(fd)
                raise LockedError(
                    f"{path}: in use by PID {pid[0]} (another dynpath process is writing it); "
                    "wait for it to finish or choose another output"
                ) from None
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(lock))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # its holder removed that file on release: lock the new one
    except BaseException:
        remove_empty_dirs(created)
        raise
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {key}\n".encode("utf-8", "surrogateescape"))
        _HELD.add(key)
        yield
    finally:
        _HELD.discard(key)
        with contextlib.suppress(OSError):
            lock.unlink()  # while still holding it: a waiter then sees a new file
        os.close(fd)
        remove_empty_dirs(created)
