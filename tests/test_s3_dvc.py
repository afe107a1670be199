"""DVC through an S3 remote on loopback: push/pull, the pipeline's fetch step and data digest."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from s3_server import BIN, CREDENTIALS, s3_endpoint, s3_env  # noqa: F401  (fixtures)

from dynpath.config import Config
from dynpath.kfp import compile as kfp_pipeline
from dynpath.kfp import fetch
from dynpath.profiles import resolve

pytestmark = pytest.mark.slow

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@example.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@example.invalid",
    "DVC_NO_ANALYTICS": "1",
}


def _run(repo: Path, *cmd: str) -> str:
    exe = str(BIN / "dvc") if cmd[0] == "dvc" else cmd[0]
    out = subprocess.run(
        [exe, *cmd[1:]],
        cwd=repo,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


TRACKED = ("data/tiny", "data/features/tiny.h5", "outputs/vocab")


def _write_data(repo: Path, version: str) -> dict[str, bytes]:
    """The DVC-tracked inputs (annotations, features, vocabulary) and a params.yaml naming them."""
    from dynpath.profiles import use_profile

    use_profile("tiny", repo / "params.yaml")
    files: dict[str, bytes | str] = {
        "data/features/tiny.h5": f"features {version}",
        "outputs/vocab/vocab.json": '{"<pad>": 0, "<unk>": 1}',
        "params.yaml": (repo / "params.yaml").read_text(),
        "data/tiny/charades_sta_train.txt": f"V1 0.0 2.0##a person opens a door {version}\n",
        "data/tiny/videos/V1.mp4": "same video in both versions",
    }
    for rel, body in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_bytes(body.encode() if isinstance(body, str) else body)
    return {k: v.encode() if isinstance(v, str) else v for k, v in files.items()}


@dataclass
class Project:
    repo: Path
    bucket: str
    revs: dict[str, str]  # version -> commit
    files: dict[str, dict[str, bytes]]  # version -> {path: content}

    def clear_local(self) -> None:
        """Drop the workspace copy and the cache: whatever comes back came from the remote."""
        for rel in TRACKED:  # the outputs, not their .dvc pointer files beside them
            path = self.repo / rel
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        shutil.rmtree(self.repo / ".dvc" / "cache", ignore_errors=True)


@pytest.fixture(scope="module")
def project(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:  # noqa: F811
    """A git + DVC project with two data versions pushed to s3://<bucket>/dvc, set up with the
    commands of docs/cluster.md (built once: DVC commands take seconds each)."""
    from dynpath import s3

    with pytest.MonkeyPatch.context() as mp:
        for key, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": s3_endpoint}.items():
            mp.setenv(key, value)
        name = f"dvc-{uuid.uuid4().hex[:12]}"
        s3.ensure_bucket(name)
        repo = tmp_path_factory.mktemp("dvc") / "project"
        repo.mkdir()
        _run(repo, "git", "init", "-q", "-b", "main")
        _run(repo, "dvc", "init", "-q")
        _run(repo, "dvc", "remote", "add", "-d", "s3remote", f"s3://{name}/dvc")
        _run(repo, "dvc", "remote", "modify", "s3remote", "endpointurl", s3_endpoint)
        revs, files = {}, {}
        for version in ("v1", "v2"):
            files[version] = _write_data(repo, version)
            _run(repo, "dvc", "add", "-q", *TRACKED)
            _run(repo, "git", "add", "-A")
            _run(repo, "git", "commit", "-q", "-m", f"data {version}")
            revs[version] = _run(repo, "git", "rev-parse", "HEAD").strip()
        _run(repo, "dvc", "push", "-q", "--all-commits")
        yield Project(repo, name, revs, files)


def test_dvc_push_then_pull_through_s3(project: Project, s3_env: dict[str, str]) -> None:  # noqa: F811
    from dynpath import s3

    listed = s3.client().list_objects_v2(Bucket=project.bucket, Prefix="dvc/")["Contents"]
    # v1: 2 data files + .dir manifest, features, vocab.json + .dir; v2: new annotation, new
    # .dir manifest, new features (the video and the vocabulary are shared)
    assert len(listed) == 9
    project.clear_local()
    _run(project.repo, "dvc", "pull", "-q")
    for rel, body in project.files["v2"].items():
        assert (project.repo / rel).read_bytes() == body


def test_a_fresh_clone_pulls_with_the_endpoint_from_the_environment(
    project: Project,
    s3_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    """docs/dvc.md, "A DVC remote on S3": `git clone` of the pushed project, the remote's
    endpoint taken out of its config (AWS_ENDPOINT_URL alone says where the server is), then
    `dvc pull` restores every tracked file byte for byte and `dvc status` is clean."""
    clone = tmp_path / "clone"
    _run(tmp_path, "git", "clone", "-q", str(project.repo), str(clone))
    assert not (clone / "data/features/tiny.h5").exists() and not (clone / ".dvc/cache").exists()
    _run(clone, "dvc", "remote", "modify", "--unset", "s3remote", "endpointurl")
    assert "endpointurl" not in (clone / ".dvc" / "config").read_text()
    _run(clone, "dvc", "pull", "-q")
    for rel, body in project.files["v2"].items():
        assert (clone / rel).read_bytes() == body, rel
    assert "up to date" in _run(clone, "dvc", "status")


def test_fetch_step_brings_data_at_a_revision(
    project: Project,
    s3_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    project.clear_local()
    for version, rev in project.revs.items():
        dest = tmp_path / f"fetched-{version}"
        paths = [*TRACKED, "params.yaml"]
        manifest = fetch.fetch_dvc_paths(str(project.repo), rev, paths, dest)
        assert manifest["paths"]["params.yaml"]["md5"] is None  # in git, not DVC
        assert manifest["paths"]["data/tiny"]["type"] == "directory"
        assert manifest["paths"]["data/tiny"]["md5"].endswith(".dir")
        for rel, body in project.files[version].items():
            assert (dest / rel).read_bytes() == body

    raw = resolve("charades_sta")
    raw["data"].update(root="data/tiny", videos="data/tiny/videos")
    raw["vocab"]["embeddings"] = None
    cfg = Config.model_validate(raw)
    d1 = kfp_pipeline.data_digest(cfg, repo=project.repo, rev=project.revs["v1"])
    d2 = kfp_pipeline.data_digest(cfg, repo=project.repo, rev="HEAD")
    assert d1.startswith("dvc-") and d2.startswith("dvc-") and d1 != d2


@pytest.mark.filterwarnings("ignore:.*non-Python base image:RuntimeWarning")
def test_fetch_data_component_runs_in_kfp_local(
    project: Project,
    s3_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The component itself (its shipped source, in a subprocess) fetches from the remote."""
    from kfp import local

    project.clear_local()
    from dynpath.kfp import components

    comps = components.load("ghcr.io/dynpath/dynpath:test")
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    task = comps["fetch_data"](
        repo_url=str(project.repo),
        data_rev=project.revs["v1"],
        paths=[*TRACKED, "params.yaml"],
        code_version="t",
        data_digest="d",
    )
    out = Path(task.outputs["data"].path)
    for rel, body in project.files["v1"].items():
        assert (out / rel).read_bytes() == body
    assert task.outputs["data"].metadata["data_rev"] == project.revs["v1"]


def test_fetch_training_inputs_command(
    project: Project,
    s3_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    """The Kubeflow Trainer init container: params.yaml, then the paths it names."""
    import sys

    project.clear_local()
    dest = tmp_path / "workspace"
    out = subprocess.run(
        [
            *(sys.executable, "-m", "dynpath.kfp.fetch", "fetch-training-inputs"),
            *("--repo", str(project.repo), "--rev", project.revs["v1"], "--dest", str(dest)),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    for rel, body in project.files["v1"].items():
        if not rel.endswith(".mp4"):  # training reads no videos
            assert (dest / rel).read_bytes() == body, rel
    assert not (dest / "data/tiny/videos").exists()


def test_fetch_without_repository_says_what_to_set(tmp_path: Path) -> None:
    from dynpath.errors import DynpathError

    with pytest.raises(DynpathError, match="data_repo"):
        fetch.fetch_dvc_paths("", "HEAD", ["data"], tmp_path)
