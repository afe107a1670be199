"""The ``dvc`` section: ``dvc repro`` timings on a copy of the worktree (full and no-op)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def copy_worktree(repo: Path, dest: Path) -> Path:
    """The working tree's tracked and not-ignored files (what a fresh clone would have)."""
    files = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in files:
        rel = raw.decode()
        if rel and (repo / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(repo / rel, dest / rel)
    return dest


def _dvc(
    repo: Path, *args: str, timeout: float = 7200
) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["dvc", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=timeout
    )
    return time.perf_counter() - t0, proc


def dvc_timings(repo: Path, full: bool) -> dict[str, Any]:
    """No-op ``dvc repro`` in ``repo`` (only when it is up to date: otherwise a repro would run
    stages) and, when ``full``, a complete ``dvc repro`` of ``repo``'s params in a fresh
    temporary copy followed by a no-op one there."""
    out: dict[str, Any] = {}
    if shutil.which("git") is None or not (repo / "dvc.yaml").exists():
        return {"skipped": "no dvc.yaml here (run from the project root) or no git"}
    if not (Path(sys.executable).parent / "dvc").exists() and shutil.which("dvc") is None:
        return {"skipped": "dvc is not installed"}
    if (repo / "dvc.lock").exists():
        _, status = _dvc(repo, "status")
        if status.returncode == 0 and "up to date" in status.stdout:
            secs, proc = _dvc(repo, "repro")
            out["noop_here"] = {"seconds": secs, "returncode": proc.returncode}
        else:
            out["noop_here"] = {"skipped": "the pipeline here is not up to date"}
    else:
        out["noop_here"] = {"skipped": "no dvc.lock here: run `dvc repro` once first"}
    if not full:
        out["full"] = {"skipped": "--quick"}
        return out
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "repo"
        copy_worktree(repo, copy)
        for stale in ("dvc.lock", "mlflow.db"):
            (copy / stale).unlink(missing_ok=True)
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
        for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "bench"]):
            subprocess.run(git + cmd, cwd=copy, check=True, capture_output=True)
        secs, proc = _dvc(copy, "repro")
        out["full"] = {"seconds": secs, "returncode": proc.returncode}
        if proc.returncode != 0:
            out["full"]["error"] = (proc.stdout + proc.stderr)[-2000:]
            return out
        secs, proc = _dvc(copy, "repro")
        out["noop"] = {
            "seconds": secs,
            "returncode": proc.returncode,
            "ran_stages": proc.stdout.count("Running stage"),
        }
    return out
