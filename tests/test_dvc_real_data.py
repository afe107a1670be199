"""The `data` stage on a real dataset profile: it checks the files and never touches them.

DVC deletes a stage's outputs before running it unless they are `persist`; data.root of a real
dataset is the user's only copy, so this is the property that must hold. Uses the real
Charades-STA annotations of ../shared/data (skipped when absent).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from dvc_project import copy_repo, run

from dynpath.profiles import use_profile

pytestmark = pytest.mark.slow

FILES = ("charades_sta_train.txt", "charades_sta_test.txt", "charades.json")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = copy_repo(tmp_path / "repo")
    use_profile("charades_sta", repo / "params.yaml")
    (repo / "dvc.lock").unlink(missing_ok=True)
    run(repo, "git", "init", "-q", "-b", "main")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "charades profile")
    return repo


def test_data_stage_checks_a_real_dataset_without_touching_it(
    repo: Path, shared_data: Path
) -> None:
    root = repo / "data" / "charades_sta"
    root.mkdir(parents=True)
    for name in FILES:
        shutil.copy(shared_data / "charades_sta" / name, root / name)
        (root / name).chmod(0o644)
    before = {name: (root / name).read_bytes() for name in FILES}
    out = run(repo, "dvc", "repro", "data")
    assert '"generated": false' in out and '"dataset": "charades_sta"' in out  # data report
    assert {name: (root / name).read_bytes() for name in FILES} == before
    assert sorted(p.name for p in root.iterdir()) == sorted(FILES)  # nothing generated
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    (out_entry,) = lock["stages"]["data"]["outs"]
    assert out_entry["path"] == "data/charades_sta" and out_entry["md5"].endswith(".dir")
    assert "Data and pipelines are up to date" in run(repo, "dvc", "status", "data")


def test_data_stage_fails_naming_what_is_missing(repo: Path) -> None:
    (repo / "data" / "charades_sta").mkdir(parents=True)
    out = run(repo, "dvc", "repro", "data", check=False)
    assert "failed to reproduce 'data'" in out
    assert "charades_sta_train.txt" in out or "data/charades_sta" in out
