"""``dynpath study``: the whole DAG of one profile in a directory of its own, resumable.

Why not ``dvc repro``: the study (docs/study.md) trains fifty models for about an hour on two
cores, and the default run's outputs in the project must survive it. DVC deletes a stage's
outputs before rerunning it, so a stopped ``train`` stage would lose its checkpoints; here each
training resumes from its ``last.pt`` (``dynpath train --resume``), and every stage that finished
is skipped. Each stage runs as its own ``dynpath`` process in ``workdir``, with the same commands
as dvc.yaml, so what the study computes is what ``dvc repro`` computes for that profile.

Layout of ``workdir``: ``params.yaml`` (written from the profile on the first run), the profile's
data and features, ``outputs/`` and ``reports/`` as in the project, and ``.study/<stage>.done``
markers holding the digest of params.yaml when the stage finished. A params.yaml edited since a
stage finished is refused: the finished outputs would no longer match it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from dynpath.config import Config, load_config
from dynpath.errors import DynpathError
from dynpath.io import file_sha256, write_text
from dynpath.profiles import use_profile

log = logging.getLogger(__name__)

MARKERS = ".study"
PARAMS = "params.yaml"


@dataclass(frozen=True)
class StudyStage:
    """One command of the study: its marker name and its ``dynpath`` arguments."""

    name: str
    args: tuple[str, ...]


def stages(cfg: Config) -> list[StudyStage]:
    """The DAG of dvc.yaml for ``cfg``, in order: data, extract, vocab, then per variant its
    training (resumed where it stopped) and evaluation, then the report."""
    out = [
        StudyStage("data", ("data",)),
        StudyStage("extract", ("extract",)),
        StudyStage("vocab", ("vocab", "--out", "outputs/vocab")),
    ]
    for v in cfg.variants:
        out.append(
            StudyStage(
                f"train@{v}",
                (
                    "train",
                    "--variant",
                    v,
                    "--vocab",
                    "outputs/vocab",
                    "--out",
                    "outputs/models",
                    "--resume",
                ),
            )
        )
        out.append(
            StudyStage(
                f"evaluate@{v}",
                (
                    "evaluate",
                    "--variant",
                    v,
                    "--vocab",
                    "outputs/vocab",
                    "--models",
                    "outputs/models",
                    "--out",
                    "outputs/eval",
                    "--split",
                    "test",
                ),
            )
        )
    out.append(
        StudyStage(
            "report",
            ("report", "--evals", "outputs/eval", "--models", "outputs/models", "--out", "reports"),
        )
    )
    return out


def prepare(workdir: Path, profile: str) -> Path:
    """``workdir/params.yaml`` from ``profile`` unless it exists (a resumed study keeps its own)."""
    workdir.mkdir(parents=True, exist_ok=True)
    params = workdir / PARAMS
    if not params.exists():
        use_profile(profile, params)
        log.info("%s: written from profile %r", params, profile)
    return params


def _run_stage(cmd: list[str], workdir: Path) -> int:
    """Run one stage in its own process group and return its exit code.

    Why a group of its own: ``dynpath train`` trains its seeds in worker processes; a SIGTERM
    to the study alone would leave them training with nobody waiting. A Ctrl-C (SIGINT) or a
    SIGTERM of the study is passed on to the whole group, so the training writes its resumable
    ``last.pt`` and stops (exit 130) and no worker outlives the study. (A SIGKILL cannot be
    passed on: then the group's processes are left to the user, as for any killed parent.)
    """
    procs: list[subprocess.Popen[bytes]] = []

    def forward(_signum: int, _frame: FrameType | None) -> None:
        # a Ctrl-C for the whole group: the trainer's deferred Ctrl-C checkpoints, then exits 130
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGINT)

    main = threading.current_thread() is threading.main_thread()
    # The handlers go in BEFORE the stage starts: a process started in the background by a
    # shell (`nohup dynpath study &`) inherits SIGINT *ignored*, and an ignored signal stays
    # ignored across exec, so the stage would never see the forwarded Ctrl-C; a caught one is
    # reset to its default in the child, where the trainer installs its own.
    previous = (
        {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
        if main
        else {}
    )
    try:
        procs.append(subprocess.Popen(cmd, cwd=workdir, start_new_session=True))
        code = procs[0].wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code < 0 or code == 130:  # stopped by a signal: the study stops too, resumable
        raise KeyboardInterrupt
    return code


def _done(workdir: Path, stage: StudyStage, digest: str) -> bool:
    marker = workdir / MARKERS / f"{stage.name}.done"
    if not marker.exists():
        return False
    written = marker.read_text().strip()
    if written != digest:
        raise DynpathError(
            f"{workdir / PARAMS}: changed since stage {stage.name!r} finished (params digest "
            f"{written}, now {digest}); restore it, or start the study afresh in another "
            "directory (--dir)"
        )
    return True


def run(workdir: Path, profile: str, dynpath: tuple[str, ...] | None = None) -> dict[str, object]:
    """Run (or resume) the study in ``workdir``; returns what ran and how long it took.

    ``dynpath``: the command that runs the CLI (default: this interpreter's ``dynpath.cli``).
    A stage that fails stops the study with its exit code; rerunning continues from it. Ctrl-C
    or SIGTERM stops the running stage as its own Ctrl-C would (training checkpoints first) and
    then the study (KeyboardInterrupt: exit 130).
    """
    params = prepare(workdir, profile)
    cfg = load_config(params)
    digest = file_sha256(params)[:16]
    cmd = dynpath or (sys.executable, "-m", "dynpath.cli")
    ran: list[dict[str, object]] = []
    skipped: list[str] = []
    t_all = time.perf_counter()
    for stage in stages(cfg):
        if stage.name != "report" and _done(workdir, stage, digest):
            skipped.append(stage.name)
            continue
        log.info("study %s: %s", workdir, stage.name)
        t0 = time.perf_counter()
        code = _run_stage([*cmd, "--params", PARAMS, *stage.args], workdir)
        if code != 0:
            raise DynpathError(
                f"study stage {stage.name!r} failed (exit {code}); rerun the same "
                "command to resume from it"
            )
        write_text(workdir / MARKERS / f"{stage.name}.done", digest + "\n")
        ran.append({"stage": stage.name, "seconds": round(time.perf_counter() - t0, 1)})
    return {
        "workdir": str(workdir),
        "params": str(params),
        "ran": ran,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - t_all, 1),
        "report": str(workdir / "reports" / "summary.json"),
    }
