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
