"""Errors a user can act on. The CLI prints them on one line and exits non-zero."""


class DynpathError(Exception):
    """Base of user-facing errors: the message names the file, line or key at fault."""


class DataError(DynpathError):
    """Bad annotation, feature or video input."""


class CheckpointError(DynpathError):
    """A checkpoint that does not belong to this variant/version or cannot be read safely."""


class TrackingError(DynpathError):
    """MLflow tracking or registry problems the user must fix (URI, permissions)."""
