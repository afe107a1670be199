"""A full disk while checkpointing, writing JSON, or writing features.

Two ways to fill a disk for real:

- a small ``tmpfs`` mounted for the test (needs root and a kernel that allows it; the test is
  skipped elsewhere): ``dynpath train`` runs with its output directory on it, so the second
  epoch's checkpoint does not fit: ENOSPC;
- ``RLIMIT_FSIZE`` in a child process (any Linux user; SIGXFSZ ignored so ``write`` fails with
  EFBIG instead of killing the process): the writers and the ``train``/``extract`` commands run
  under a file-size limit.

Every case must end with a clear error that names the output (the CLI exits 2 with one line),
leave the previous file intact and leave no temp file behind; after space is freed the same
command resumes and finishes.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from reliability_workspace import (
    VARIANT,
    Workspace,
    assert_checkpoints_loadable,
    build_workspace,
    child_env,
    extract_params,
    load_weights_only,
    read_store,
    temp_files,
    write_videos,
)

from dynpath import cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return build_workspace(tmp_path_factory.mktemp("disk_full"))


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """``mount(size)`` -> a fresh tmpfs of that size (``remount`` by calling it again)."""
    mounted: list[Path] = []

    def mount(size: str) -> Path:
        target = tmp_path / "fs"
        target.mkdir(exist_ok=True)
        opts = f"remount,size={size}" if target in mounted else f"size={size}"
        cmd = ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(target)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as err:
            pytest.skip(f"cannot mount a tmpfs here: {err}")
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        if target not in mounted:
            mounted.append(target)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


def test_train_on_a_full_disk_fails_clearly_and_resumes_after_space_is_freed(
    ws: Workspace, tmpfs: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = 700 * 1024  # about the size of one checkpoint of this model (672 KB)
    fs = tmpfs(f"{(2 * ckpt + ckpt // 2) // 1024}k")  # room for epoch 1's best.pt + last.pt only
    model_dir = fs / VARIANT
    threads = torch.get_num_threads()
    try:
        assert cli.main(ws.train_argv(out=fs)) == 2
        err = capsys.readouterr().err
        assert "dynpath train: error: " in err and "No space left on device" in err
        assert f"{model_dir}/" in err and ".pt: cannot write" in err
        assert "Traceback" not in err
        # epoch 1 is intact and loadable; nothing half-written stays behind
        assert assert_checkpoints_loadable(model_dir) == ["best.pt", "last.pt"]
        assert load_weights_only(model_dir / "last.pt")["progress"]["epoch"] == 1
        assert [e["epoch"] for e in json.loads((model_dir / "history.json").read_text())] == [1]
        assert not (model_dir / "train_summary.json").exists()
        assert temp_files(model_dir) == []

        tmpfs("8m")  # space freed: the same command with --resume finishes from epoch 1
        assert cli.main(ws.train_argv("--resume", out=fs)) == 0
    finally:
        torch.set_num_threads(threads)
    summary = json.loads((model_dir / "train_summary.json").read_text())
    assert summary["resumed_from"]["epoch"] == 1 and summary["steps"] == 4 * 5
    assert len(json.loads((model_dir / "history.json").read_text())) == 4
    assert temp_files(model_dir) == []


# --------------------------------------------------------------------------- RLIMIT_FSIZE child

# Writes a small valid file with each writer, lowers RLIMIT_FSIZE below the size of the next
# write, then tries to overwrite each file with a bigger one; prints what happened as JSON.
WRITERS = r"""
import hashlib, json, os, resource, signal, sys
from pathlib import Path
import numpy as np, torch
from dynpath.data.features import write_features
from dynpath.engine.checkpoint import save_checkpoint
from dynpath.io import write_json

root, limit, train_argv = Path(sys.argv[1]), int(sys.argv[2]), json.loads(sys.argv[3])
attrs = dict(backbone="t", fps=8, window=16, stride=16, pretrained=False, weights=None)
small = {
    "last.pt": lambda p, n: save_checkpoint(p, {"meta": {}, "model": {"w": torch.ones(n)}}),
    "history.json": lambda p, n: write_json(p, [{"epoch": i} for i in range(n)]),
    "features.h5": lambda p, n: write_features(p, {"v": np.ones((n, 8), np.float32)}, attrs),
}
digest = {}
for name, write in small.items():
    write(root / name, 10)
    digest[name] = hashlib.sha256((root / name).read_bytes()).hexdigest()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
out = {}
for name, write in small.items():
    try:
        write(root / name, 100_000)
        out[name] = {"raised": None}
    except BaseException as err:
        out[name] = {"raised": type(err).__name__, "message": str(err),
                     "oserror": isinstance(err, OSError)}
    out[name]["intact"] = hashlib.sha256((root / name).read_bytes()).hexdigest() == digest[name]
out["files"] = sorted(p.name for p in root.iterdir())
from dynpath import cli
out["train_rc"] = cli.main(train_argv)
print("RESULT " + json.dumps(out))
"""


def _child(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_writers_and_train_under_a_file_size_limit(ws: Workspace, tmp_path: Path) -> None:
    root = tmp_path / "files"
    root.mkdir()
    models = tmp_path / "models"
    argv = ws.train_argv(out=models)
    done = _child(WRITERS, str(root), str(64 * 1024), json.dumps(argv))
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None and done.returncode == 0, done.stderr[-3000:]
    out = json.loads(line.removeprefix("RESULT "))
    for name in ("last.pt", "history.json", "features.h5"):
        case = out[name]
        assert case["raised"] == "OutputError" and case["oserror"], (name, case)
        assert case["message"].startswith(f"{root / name}: cannot write (File too large"), case
        assert case["intact"], name  # the previous file is untouched
    assert out["files"] == ["features.h5", "history.json", "last.pt"]  # no temp file left
    # the real command: its first checkpoint does not fit under the limit
    assert out["train_rc"] == 2
    assert f"dynpath train: error: {models / VARIANT}/" in done.stderr
    assert "cannot write (File too large" in done.stderr and "Traceback" not in done.stderr
    assert temp_files(models / VARIANT) == []
    assert assert_checkpoints_loadable(models / VARIANT) == []


EXTRACT = r"""
import resource, signal, sys
from dynpath import cli
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
sys.exit(cli.main(sys.argv[2:]))
"""


def test_extract_under_a_file_size_limit_fails_clearly_then_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    videos = write_videos(tmp_path / "videos", [16, 24, 16, 30, 20, 16])
    params = extract_params(tmp_path)
    output = tmp_path / "features" / "store.h5"
    argv = ["--params", str(params), "extract", "--videos", str(videos), "--output", str(output)]
    done = _child(EXTRACT, str(100 * 1024), *argv)
    partial = output.with_name("store.h5.partial")
    assert done.returncode == 2, done.stderr[-3000:]
    err = done.stderr.strip().splitlines()[-1]
    assert err.startswith(f"dynpath extract: error: {partial}: cannot write (File too large")
    assert f"{output} is unchanged" in err
    assert not output.exists() and "Traceback" not in done.stderr

    threads = torch.get_num_threads()
    try:
        assert cli.main(argv) == 0  # no limit any more: resumes and finishes
    finally:
        torch.set_num_threads(threads)
    summary = json.loads(capsys.readouterr().out)
    assert summary["videos"] == 6 and summary["failed"] == 0
    assert summary["extracted"] + summary["skipped"] == 6
    print(f"\nextract after a full disk: {summary['skipped']} videos kept from the partial store")
    store = read_store(output)
    assert sorted(store) == [f"v{i:02d}" for i in range(6)]
    assert all(a.shape[1] == 1024 and a.shape[0] >= 1 for a in store.values())
    assert not partial.exists()
    with contextlib.suppress(FileNotFoundError):
        assert json.loads(output.with_name("store.h5.failures.json").read_text()) == []
    assert os.listdir(output.parent) == ["store.h5"]
