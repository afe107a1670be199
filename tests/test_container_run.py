"""The CPU image built and run for real (issue 27): `make image` then, inside the container,
the `dynpath` entry point, `model-info`, a bad param (exit 2 and one line, as on the host) and
the tiny DAG's steps on a volume mounted from the host, with the same metrics as on the host.

Slow and opt-in: building the image installs the whole lock (about a GB, minutes on 2 cores), so
these tests run only with DYNPATH_CONTAINER_TESTS=1 (`make image-test`) and a container engine
(docker with a running daemon, podman or buildah for the build). The image is built once per
session when the engine lacks it (DYNPATH_IMAGE names another tag to test).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "infra" / "docker"
HOST_DYNPATH = str(Path(sys.executable).parent / "dynpath")
VARIANT = "dynamic"


def _engine() -> str | None:
    out = subprocess.run([str(DOCKER / "engine.sh")], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


ENGINE = _engine()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("DYNPATH_CONTAINER_TESTS") != "1",
        reason="container tests are opt-in: DYNPATH_CONTAINER_TESTS=1 (`make image-test`) builds "
        "and runs the CPU image (minutes, about a GB)",
    ),
    pytest.mark.skipif(
        ENGINE is None,
        reason="no container engine here (docker with a running daemon, or podman): "
        "infra/docker/engine.sh found none",
    ),
    pytest.mark.skipif(ENGINE == "buildah", reason="buildah builds but cannot run the image"),
]


def _engine_env() -> dict[str, str]:
    """podman on a cgroups v1/hybrid host needs infra/docker/containers.conf (podman.sh)."""
    env = dict(os.environ)
    hybrid = subprocess.run(["stat", "-fc", "%T", "/sys/fs/cgroup"], capture_output=True, text=True)
    if ENGINE == "podman" and hybrid.stdout.strip() != "cgroup2fs":
        env.setdefault("CONTAINERS_CONF", str(DOCKER / "containers.conf"))
    return env


def _image_exists(tag: str) -> bool:
    sub = ["image", "inspect", tag]
    out = subprocess.run([str(ENGINE), *sub], capture_output=True, env=_engine_env())
    return out.returncode == 0


@pytest.fixture(scope="session")
def image() -> str:
    """The image under test: DYNPATH_IMAGE, else dynpath:cpu, built by `make image` if absent."""
    tag = os.environ.get("DYNPATH_IMAGE", "dynpath:cpu")
    if not _image_exists(tag):
        subprocess.run([str(DOCKER / "build.sh"), "cpu"], check=True, env=_engine_env())
    assert _image_exists(tag), f"{tag} is missing after the build"
    return tag


def run_on_host(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The same ``dynpath`` command on the host, with the workspace's params.yaml."""
    return subprocess.run(
        [HOST_DYNPATH, "--params", str(ws / "params.yaml"), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_in(
    image: str, *args: str, volume: Path | None = None, entrypoint: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``<engine> run --rm`` of ``image`` with ``args``; ``volume`` mounted at /workspace."""
    cmd = [str(ENGINE), "run", "--rm"]
    if volume is not None:
        cmd += ["-v", f"{volume}:/workspace"]
    if entrypoint is not None:
        cmd += ["--entrypoint", entrypoint]
    cmd += [image, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_engine_env(), timeout=600)


def smoke_problems(image: str, volume: Path) -> list[str]:
    """What is wrong with ``image``: the checks a broken image must fail (one line each)."""
    problems = []
    help_ = run_in(image)
    if help_.returncode != 0 or "usage: dynpath" not in help_.stdout:
        problems.append(f"no dynpath entry point: exit {help_.returncode}: {help_.stderr[-300:]}")
    who = run_in(image, "-u", entrypoint="id")
    if who.stdout.strip() in ("", "0"):
        problems.append(f"runs as root or not at all: {who.stdout!r} {who.stderr[-200:]!r}")
    prof = run_in(image, "profile", "tiny", volume=volume)
    if prof.returncode != 0 or not (volume / "params.yaml").is_file():
        problems.append(f"`dynpath profile tiny` failed: {prof.returncode}: {prof.stderr[-300:]}")
    return problems


def _writable_dir(path: Path) -> Path:
    """A host folder the image's user (uid 10001) can write: the volume of the container run."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o777)
    return path


def test_entry_point_non_root_and_packaged_profiles(image: str, tmp_path: Path) -> None:
    assert smoke_problems(image, _writable_dir(tmp_path / "ws")) == []


def test_the_checks_catch_a_planted_fault(image: str, tmp_path: Path) -> None:
    """A wrong entry point and a package file missing from the image fail the smoke checks."""
    broken = "localhost/dynpath:planted-fault"
    containerfile = tmp_path / "Containerfile"
    site = "/opt/venv/lib/python3.11/site-packages/dynpath/profiles"
    containerfile.write_text(
        f'FROM {image}\nUSER 0\nRUN rm {site}/tiny.yaml\nUSER 10001:10001\nENTRYPOINT ["python3"]\n'
    )
    build = [str(ENGINE), "build", "-t", broken, "-f", str(containerfile), str(tmp_path)]
    subprocess.run(build, check=True, capture_output=True, env=_engine_env(), timeout=300)
    try:
        problems = smoke_problems(broken, _writable_dir(tmp_path / "ws"))
        assert any("entry point" in p for p in problems), problems
        # with the entry point put back, the missing profile file still fails
        fixed = run_in(broken, "profile", "tiny", volume=tmp_path / "ws", entrypoint="dynpath")
        assert fixed.returncode != 0 and "tiny" in fixed.stderr, fixed.stderr
    finally:
        subprocess.run([str(ENGINE), "rmi", "-f", broken], capture_output=True, env=_engine_env())


def test_model_info_as_on_the_host(image: str, tmp_path: Path) -> None:
    """The parameter count of every variant (tiny profile: small models, quick to build)."""
    ws = _writable_dir(tmp_path / "ws")
    assert run_in(image, "profile", "tiny", volume=ws).returncode == 0
    inside = run_in(image, "model-info", volume=ws)
    host = run_on_host(ws, "model-info")
    assert inside.returncode == host.returncode == 0, (inside.stderr, host.stderr)
    assert inside.stdout == host.stdout
    assert VARIANT in inside.stdout and len(inside.stdout.splitlines()) == 10


def test_a_bad_param_exits_2_with_one_line_as_on_the_host(image: str, tmp_path: Path) -> None:
    ws = _writable_dir(tmp_path / "ws")
    assert run_in(image, "profile", "tiny", volume=ws).returncode == 0
    raw = yaml.safe_load((ws / "params.yaml").read_text())
    raw["train"]["epochs"] = -1
    (ws / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    inside = run_in(image, "model-info", volume=ws)
    host = run_on_host(ws, "model-info")
    assert inside.returncode == host.returncode == 2, (inside.stderr, host.stderr)
    assert len(inside.stderr.strip().splitlines()) == 1, inside.stderr
    assert "train.epochs" in inside.stderr
    # the same message, up to where the params file lies
    assert inside.stderr.replace("/workspace/", "") == host.stderr.replace(f"{ws}/", "")


STEPS = [
    ["data"],
    ["extract"],
    ["vocab", "--out", "outputs/vocab"],
    ["train", "--variant", VARIANT, "--vocab", "outputs/vocab", "--out", "outputs/models"],
    [
        "evaluate",
        *("--variant", VARIANT, "--vocab", "outputs/vocab", "--models", "outputs/models"),
        *("--out", "outputs/eval", "--split", "test"),
    ],
]


@pytest.fixture(scope="module")
def tiny_runs(image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """The tiny DAG's steps (dvc.yaml's commands), one variant, in the container and on the
    host, each in its own folder from the same params.yaml."""
    root = tmp_path_factory.mktemp("tiny")
    box, host = _writable_dir(root / "container"), root / "host"
    assert run_in(image, "profile", "tiny", volume=box).returncode == 0
    host.mkdir()
    shutil.copy(box / "params.yaml", host / "params.yaml")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for step in STEPS:
        inside = run_in(image, *step, volume=box)
        assert inside.returncode == 0, f"{step} in the container: {inside.stderr[-2000:]}"
        here = subprocess.run(
            [HOST_DYNPATH, *step], cwd=host, capture_output=True, text=True, env=env, timeout=600
        )
        assert here.returncode == 0, f"{step} on the host: {here.stderr[-2000:]}"
    yield {"container": box, "host": host}


def test_tiny_steps_write_their_outputs_on_the_volume(tiny_runs: dict[str, Path]) -> None:
    box = tiny_runs["container"]
    for rel in (
        "data/tiny",
        "data/features/tiny.h5",
        "outputs/vocab",
        f"outputs/models/{VARIANT}/best.pt",
        f"outputs/eval/{VARIANT}/metrics.json",
    ):
        assert (box / rel).exists(), rel
    # written as the image's user, not root
    assert (box / "outputs").stat().st_uid == 10001


def test_tiny_metrics_match_the_host(tiny_runs: dict[str, Path]) -> None:
    """Same code, same torch (2.13.0+cpu), same seed: the same numbers in and out of the box."""
    rel = f"outputs/eval/{VARIANT}/metrics.json"
    inside = json.loads((tiny_runs["container"] / rel).read_text())
    host = json.loads((tiny_runs["host"] / rel).read_text())
    for timing in (inside, host):
        del timing["latency_ms"]  # wall time, the one thing that differs
    assert inside == host
    assert 0.0 <= inside["r1_iou0.5"] <= 100.0 and inside["n"] > 0


def _as_the_engine_lists(image: str) -> str:
    """podman names a local tag ``localhost/NAME``: kfp.local looks the image up by that name
    (and would try to pull ``dynpath:cpu`` from a registry otherwise)."""
    if ENGINE == "podman" and "/" not in image.split(":")[0]:
        return f"localhost/{image}"
    return image


def test_the_pipeline_in_containers_gives_the_steps_metrics(
    image: str, tiny_runs: dict[str, Path], tmp_path: Path
) -> None:
    """Every Kubeflow component in its container (kfp.local DockerRunner through the engine's
    Docker API): the same evaluation as the steps run on the host."""
    raw = yaml.safe_load((tiny_runs["host"] / "params.yaml").read_text())
    raw["variants"] = {VARIANT: raw["variants"][VARIANT]}
    raw["pipeline"]["image"] = _as_the_engine_lists(image)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = dict(_engine_env(), PYTHON=sys.executable)
    out = subprocess.run(
        [str(DOCKER / "pipeline-in-containers.sh"), str(params), str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count(f"Found image {raw['pipeline']['image']!r}") >= 6, out.stdout[-3000:]
    (metrics,) = (tmp_path / "runs").rglob(f"evaluation/{VARIANT}/metrics.json")
    inside = json.loads(metrics.read_text())
    host = json.loads((tiny_runs["host"] / f"outputs/eval/{VARIANT}/metrics.json").read_text())
    for timing in (inside, host):
        del timing["latency_ms"]
    assert inside == host
