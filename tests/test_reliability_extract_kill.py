"""``dynpath extract`` killed with SIGKILL mid-run, then re-run.

The child is the real CLI extracting real (small) H.264 videos with the real I3D backbone. It is
killed at a random moment (seeded) after a seeded number of videos is complete in its partial
HDF5 store (the child announces each completed video on stderr), and once more in the
middle of writing a video's features: a child whose ``create_dataset`` writes the features,
flushes them to disk and then stops before the extractor marks the video complete.

After every kill the final store is either absent or fully readable (never half-written), and the
re-run resumes (keeps the videos completed before the kill, redoes a half-written one) and ends
with the same features as an uninterrupted run.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from reliability_workspace import child_env, extract_params, read_store, write_videos
from waiting import wait_for_line, wait_until

from dynpath import cli

pytestmark = pytest.mark.slow

FRAMES = [24, 40, 16, 32, 48, 24, 40, 16]  # 1 to 3 clips of 16 frames each
SEEDS = [3, 11]  # the kill lands after video 2 and after video 4

MID_FILE = """
import sys, time, h5py
from dynpath import cli
real = h5py.Group.create_dataset
def create_dataset(self, name, *args, **kwargs):
    ds = real(self, name, *args, **kwargs)
    if name == sys.argv[1]:
        self.file.flush()  # the features are on disk, the 'complete' attr is not
        print("MID-FILE", name, file=sys.stderr, flush=True)
        time.sleep(120)
    return ds
h5py.Group.create_dataset = create_dataset
sys.exit(cli.main(sys.argv[2:]))
"""

# The real CLI, announcing each video it has marked complete and flushed (the extractor flushes
# the store once per video, right after setting the ``complete`` attr): the parent's event.
ANNOUNCE = """
import sys, h5py
from dynpath import cli
real = h5py.File.flush
def flush(self):
    real(self)
    print("VIDEO-FLUSHED", file=sys.stderr, flush=True)
h5py.File.flush = flush
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Videos, params and an uninterrupted extraction (the reference), with its duration."""
    root = tmp_path_factory.mktemp("extract_kill")
    videos = write_videos(root / "videos", FRAMES)
    params = extract_params(root)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the children run with one thread too
    t0 = time.monotonic()
    try:
        assert cli.main(_argv(params, videos, root / "reference.h5")) == 0
    finally:
        torch.set_num_threads(threads)
    return {
        "root": root,
        "videos": videos,
        "params": params,
        "reference": read_store(root / "reference.h5"),
        "seconds": time.monotonic() - t0,
    }


def _argv(params: Path, videos: Path, output: Path) -> list[str]:
    return ["--params", str(params), "extract", "--videos", str(videos), "--output", str(output)]


def _spawn(cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as fh:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=fh, env=child_env())


def _readable(path: Path) -> dict[str, np.ndarray] | None:
    """The store's arrays, or None when h5py cannot read it."""
    try:
        return read_store(path)
    except (OSError, KeyError, RuntimeError):
        return None


def _complete(partial: Path) -> set[str]:
    try:
        with h5py.File(partial, "r") as f:
            return {k for k in f if bool(f[k].attrs.get("complete", False))}
    except (OSError, KeyError, RuntimeError):
        return set()


def _rerun(project: dict[str, Any], output: Path, capsys: pytest.CaptureFixture[str]) -> dict:
    capsys.readouterr()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert cli.main(_argv(project["params"], project["videos"], output)) == 0
    finally:
        torch.set_num_threads(threads)
    summary: dict[str, Any] = json.loads(capsys.readouterr().out)
    return summary


def _assert_same_as_reference(output: Path, project: dict[str, Any]) -> None:
    store = read_store(output)
    ref = project["reference"]
    assert sorted(store) == sorted(ref) and len(store) == len(FRAMES)
    for vid, arr in ref.items():
        assert store[vid].shape == arr.shape, vid
        np.testing.assert_allclose(store[vid], arr, rtol=1e-5, atol=1e-6, err_msg=vid)
    assert not output.with_name(output.name + ".partial").exists()


@pytest.mark.parametrize("seed", SEEDS)
def test_sigkill_at_a_random_moment_then_rerun_resumes(
    project: dict[str, Any], seed: int, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed at a random moment (seeded) after the k-th video is complete (k seeded too): the
    partial store holds at least k complete videos, so the re-run has work to keep, and must
    keep exactly those and redo the rest."""
    root = project["root"]
    output = root / f"seed{seed}" / "features.h5"
    partial = output.with_name("features.h5.partial")
    log = root / f"seed{seed}.log"
    rng = random.Random(seed)
    after = rng.randint(1, len(FRAMES) - 3)
    cmd = [sys.executable, "-c", ANNOUNCE, *_argv(project["params"], project["videos"], output)]
    proc = _spawn(cmd, log)
    wait_until(
        lambda: log.read_text(errors="replace").count("VIDEO-FLUSHED") >= after,
        f"video {after} complete in the partial store",
        proc=proc,
        log=log,
    )
    delay = rng.uniform(0.0, 0.5 * project["seconds"] / len(FRAMES))  # within the next video
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, log.read_text(errors="replace")[-3000:]
    # the final store is absent (never a half-written one), the partial one holds the work done
    assert not output.exists()
    kept = _complete(partial)
    assert after <= len(kept) < len(FRAMES), kept
    summary = _rerun(project, output, capsys)
    print(
        f"\nextract seed {seed}: killed {delay:.2f}s after video {after} was complete, "
        f"{len(kept)} complete videos in the partial store, re-run extracted "
        f"{summary['extracted']} and kept {summary['skipped']}"
    )
    # every video completed before the kill is kept, every other one is extracted again
    assert (summary["skipped"], summary["extracted"]) == (len(kept), len(FRAMES) - len(kept))
    _assert_same_as_reference(output, project)


def test_sigkill_while_a_video_is_half_written(
    project: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root = project["root"]
    output = root / "midfile" / "features.h5"
    partial = output.with_name("features.h5.partial")
    log = root / "midfile.log"
    victim = "v03"  # the 4th video: three complete ones are in the partial store before it
    cmd = [
        sys.executable,
        "-c",
        MID_FILE,
        victim,
        *_argv(project["params"], project["videos"], output),
    ]
    proc = _spawn(cmd, log)
    wait_for_line(proc, log, "MID-FILE")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not output.exists()
    with h5py.File(partial, "r") as f:  # the partial store itself is readable
        assert victim in f and not f[victim].attrs.get("complete", False)
        assert _complete(partial) == {"v00", "v01", "v02"}
    summary = _rerun(project, output, capsys)
    assert (summary["skipped"], summary["extracted"]) == (3, len(FRAMES) - 3)
    _assert_same_as_reference(output, project)
