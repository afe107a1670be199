"""``dynpath extract`` killed with SIGKILL mid-run, then re-run.

The child is the real CLI extracting real (small) H.264 videos with the real I3D backbone. It is
killed after a random delay (seeded) once its partial HDF5 store exists, and once more in the
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

from dynpath import cli

pytestmark = pytest.mark.slow

FRAMES = [24, 40, 16, 32, 48, 24, 40, 16]  # 1 to 3 clips of 16 frames each
SEEDS = [5, 17]

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
    root = project["root"]
    output = root / f"seed{seed}" / "features.h5"
    partial = output.with_name("features.h5.partial")
    log = root / f"seed{seed}.log"
    cmd = [
        sys.executable,
        "-m",
        "dynpath.cli",
        *_argv(project["params"], project["videos"], output),
    ]
    proc = _spawn(cmd, log)
    deadline = time.monotonic() + 240
    while not partial.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    delay = random.Random(seed).uniform(0.0, project["seconds"])
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    killed = proc.returncode == -signal.SIGKILL
    assert killed or proc.returncode == 0, log.read_text(errors="replace")[-3000:]
    # the final store is absent or complete and readable; never a half-written one
    if output.exists():
        store = _readable(output)
        assert store is not None and len(store) == len(FRAMES)
    kept = _complete(partial) if partial.exists() else set()
    summary = _rerun(project, output, capsys)
    print(
        f"\nextract seed {seed}: {'killed' if killed else 'finished'} after {delay:.2f}s, "
        f"{len(kept)} complete videos in the partial store, re-run extracted "
        f"{summary['extracted']} and kept {summary['skipped']}"
    )
    if killed:
        assert summary["skipped"] >= len(kept)  # every video completed before the kill is kept
    else:
        assert summary["skipped"] == len(FRAMES)
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
    deadline = time.monotonic() + 240
    while "MID-FILE" not in log.read_text(errors="replace"):
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    assert not output.exists()
    with h5py.File(partial, "r") as f:  # the partial store itself is readable
        assert victim in f and not f[victim].attrs.get("complete", False)
        assert _complete(partial) == {"v00", "v01", "v02"}
    summary = _rerun(project, output, capsys)
    assert (summary["skipped"], summary["extracted"]) == (3, len(FRAMES) - 3)
    _assert_same_as_reference(output, project)
