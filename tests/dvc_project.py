"""A copy of the repository to run DVC in, and running commands there: shared by the DVC tests.

A helper module rather than one test module importing another: each test module stays runnable
alone and in any order (pytest-randomly shuffles them).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from dynpath.bench import copy_worktree

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "DVC_NO_ANALYTICS": "1",
    "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    "DYNPATH_SYNTH_WORKERS": "2",
}
RAN = re.compile(r"Running stage '([^']+)'")


def run(repo: Path, *cmd: str, check: bool = True, timeout: int = 900) -> str:
    env = {**os.environ, **ENV}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run(
        list(cmd), cwd=repo, env=env, capture_output=True, text=True, timeout=timeout
    )
    text = out.stdout + out.stderr
    if check:
        assert out.returncode == 0, f"{' '.join(cmd)} failed ({out.returncode}):\n{text[-4000:]}"
    return text


def copy_repo(dest: Path) -> Path:
    """The working tree as a fresh clone would have it (the bench's copy, shared)."""
    return copy_worktree(REPO, dest)


def set_params(repo: Path, **changes: object) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    for dotted, value in changes.items():
        node = params
        *parents, last = dotted.split("/")
        for p in parents:
            node = node[p]
        node[last] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def would_run(repo: Path) -> set[str]:
    return set(RAN.findall(run(repo, "dvc", "repro", "--dry")))


def own_copy(repo: Path, dest: Path) -> Path:
    """A copy of a finished project (git history, DVC cache and outputs included) for a test
    that changes it (``dvc exp run``, edited params): the module's shared project stays as the
    other tests expect it, whatever the order."""
    shutil.copytree(repo, dest, symlinks=True)
    return dest
