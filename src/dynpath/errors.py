"""Errors a user can act on. The CLI prints them on one line and exits non-zero."""


class DynpathError(Exception):
    """Base of user-facing errors: the message names the file, line or key at fault."""


class DataError(DynpathError):
    """Bad annotation, feature or video input."""


class CheckpointError(DynpathError):
    """A checkpoint that does not belong to this variant/version or cannot be read safely."""


class TrackingError(DynpathError):
    """MLflow tracking or registry problems the user must fix (URI, permissions)."""


class OutputError(DynpathError, OSError):
    """An output that could not be written (disk full, file too large, quota exceeded).

    Also an :class:`OSError` carrying the ``errno`` and the ``filename`` of the output, so code
    that catches OSError keeps working; as a DynpathError the CLI prints it on one line. ``note``
    says what state the output was left in (by default: nothing was replaced).
    """

    def __init__(
        self,
        errno: int | None,
        strerror: str,
        filename: str,
        note: str = "the previous version, if any, is unchanged",
    ) -> None:
        super().__init__(errno, strerror, filename)
        self.note = note

    def __str__(self) -> str:
        return f"{self.filename}: cannot write ({self.strerror}); {self.note}"


class UsageError(DynpathError, ValueError):
    """Arguments that cannot be used together or are out of range (the message names them).

    Also a :class:`ValueError`, so Python callers that catch ValueError for bad arguments keep
    working; the CLI prints it on one line like every DynpathError.
    """


class InputTypeError(DynpathError, TypeError):
    """An argument of the wrong type at the Python API boundary (``query=123``, ``topk="5"``).

    Raised before anything reaches the model, instead of an AttributeError from deep inside.
    """


class LockedError(DynpathError):
    """An output directory another dynpath process is writing (advisory lock held)."""


# errno -> what the user should do about it. Keyed by errno so that the wording does not depend
# on which library raised the OSError (h5py, torch and open() word them differently).
_OS_ADVICE = {
    "EROFS": "the file system is read-only; choose an output on a writable disk",
    "EACCES": "permission denied; fix the permissions or choose another path",
    "EPERM": "operation not permitted; fix the permissions or choose another path",
    "EISDIR": "is a directory, a file was expected; give a file path",
    "ENOTDIR": "a part of the path is a file, a directory was expected; fix the path",
    "ENOENT": "no such file or directory",
    "ENOSPC": "no space left on the device; free some space or choose another disk",
    "EDQUOT": "disk quota exceeded; free some space or choose another disk",
    "EFBIG": "file too large for this file system or the process's file-size limit",
    "ENAMETOOLONG": "file name too long; use a shorter path",
    "ELOOP": "too many levels of symbolic links; fix the path",
    "EEXIST": "already exists",
}


def os_error_message(err: OSError) -> str:
    """One line naming the file of an OSError and what to do: ``PATH: advice``.

    Used by the CLI for OSErrors no step mapped itself (the boundary catch-all), so that a
    read-only output directory or a directory given as a file never ends in a traceback.
    """
    import errno as errno_mod

    name = errno_mod.errorcode.get(err.errno or 0, "")
    advice = _OS_ADVICE.get(name) or (err.strerror or str(err)).strip()
    where = err.filename if err.filename is not None else "(unknown file)"
    if err.filename2 is not None:
        where = f"{where} -> {err.filename2}"
    return f"{where}: {advice}"


class DataValueError(DataError, ValueError):
    """A value out of its domain in a data computation (a NaN time, a duration <= 0).

    Also a ValueError, what these functions raised before the dynpath error hierarchy covered
    them."""
