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


def interrupted(err: BaseException) -> bool:
    """Whether ``err`` is, or was raised while handling, a Ctrl-C (torch.save and h5py turn a
    KeyboardInterrupt inside their writers into a RuntimeError chained to it)."""
    seen: set[int] = set()
    cur: BaseException | None = err
    while cur is not None and id(cur) not in seen:
        if isinstance(cur, KeyboardInterrupt):
            return True
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return False


def one_line(text: str) -> str:
    """Several lines (e.g. one per invalid params key) joined into the one error line."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


#: The exit code of a failure the user can act on (bad input, a full disk, no memory): retrying
#: it unchanged fails again. 1 is a bug (an unexpected exception), 130 a Ctrl-C.
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1
EXIT_INTERRUPTED = 130


# What to do after a Ctrl-C, by command: only ``train`` has a --resume; ``extract`` keeps the
# videos already done in its partial store and skips them when rerun; every other step writes
# its outputs at the end (or atomically), so rerunning it is all there is to do.
_INTERRUPT_ADVICE = {
    "train": "`train --resume` continues from the last checkpoint",
    "extract": "rerun the same command: it resumes from the partial store, skipping the videos "
    "already extracted",
    "evaluate": "results are replaced only when complete, so the previous ones are unchanged; "
    "rerun the same command",
    "report": "the report is replaced only when complete, so the previous one is unchanged; "
    "rerun the same command",
}
_RERUN = "rerun the same command"


def interrupt_message(command: str | None = None) -> str:
    """The one line of a Ctrl-C in ``command`` (``None``: a step not known, e.g. a pod)."""
    if command is None:
        advice = "rerun the step (a training continues with `train --resume`)"
    else:
        advice = _INTERRUPT_ADVICE.get(command, _RERUN)
    return f"interrupted; outputs are written atomically, so every file left is complete ({advice})"


def error_message(err: BaseException, command: str | None = None) -> tuple[int, str]:
    """The exit code and the one-line message of a failure: the ONE mapping the CLI
    (``dynpath.cli.main``) and the Kubeflow pods (``dynpath.kfp.runtime.component_errors``)
    share, so that a failure reads and exits the same way wherever a step runs.

    :class:`DynpathError` (ConfigError is one), an OSError (mapped by errno), a decoding error
    and a MemoryError are the user's to fix: exit 2. A Ctrl-C, also wrapped, is 130. Anything
    else is a bug: exit 1, with a message that asks for the traceback. ``command`` (the CLI's
    sub-command) picks the advice after a Ctrl-C (:func:`interrupt_message`).
    """
    if interrupted(err):
        return EXIT_INTERRUPTED, interrupt_message(command)
    if isinstance(err, DynpathError):
        return EXIT_BAD_INPUT, one_line(str(err))
    if isinstance(err, UnicodeDecodeError):
        return EXIT_BAD_INPUT, (
            f"input is not valid UTF-8 (byte {err.start}: {err.reason}); re-save the file as UTF-8"
        )
    if isinstance(err, OSError):
        return EXIT_BAD_INPUT, one_line(os_error_message(err))
    if isinstance(err, MemoryError):
        return EXIT_BAD_INPUT, "out of memory; use smaller inputs or a machine with more memory"
    return EXIT_INTERNAL, (
        f"internal error ({type(err).__name__}: {one_line(str(err))[:300]}); "
        "rerun with -v for the traceback and report it"
    )
