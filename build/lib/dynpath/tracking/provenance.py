"""What an MLflow run records about the code and the data it was trained on: the code version
(package version + git commit), the git state, a content digest of the input files and the user.

Apart from :mod:`~dynpath.tracking.tracker` so that these plain functions (no mlflow import) are
read and tested on their own.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

CODE_VERSION_ENV = "DYNPATH_CODE_VERSION"  # set by the Kubeflow component (no git in the image)


def code_version(cwd: Path | None = None) -> str:
    """``<package version>+g<12-hex commit>[.dirty]``, or the package version outside a git
    checkout (the same format as the Kubeflow cache key, ``dynpath.kfp.compile.code_version``);
    ``DYNPATH_CODE_VERSION`` wins (a pod has no git history but gets the key as an input)."""
    from dynpath import __version__

    explicit = os.environ.get(CODE_VERSION_ENV)
    if explicit:
        return explicit
    commit, dirty = git_commit(cwd)
    if commit is None:
        return __version__
    return f"{__version__}+g{commit[:12]}{'.dirty' if dirty else ''}"


def digest_files(paths: Iterable[str | Path], chunk: int = 1 << 20) -> str:
    """sha256 over the bytes of ``paths`` (in the given order, names included), read in chunks.

    Directories contribute their files in sorted order. Reading in 1 MiB chunks keeps memory flat
    for multi-GiB feature stores; the digest is computed once per run.
    """
    h = hashlib.sha256()
    files: list[Path] = []
    for p in map(Path, paths):
        files.extend(sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p])
    for f in files:
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()


def git_commit(cwd: Path | None = None) -> tuple[str | None, bool]:
    """(HEAD commit, dirty) of the repository around ``cwd``; (None, False) outside a repo."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None, False
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return head.stdout.strip() or None, bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return None, False


def user_name() -> str:
    """The OS user (``mlflow.user`` of a run); "unknown" where there is none (a container)."""
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
