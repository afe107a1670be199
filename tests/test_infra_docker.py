"""infra/docker: the images are checked statically (no Docker engine here): hadolint-clean,
pinned bases, multi-stage, non-root, installed from the lock, no credentials baked in."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "infra" / "docker"
DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))
HADOLINT = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        buf += " " + line.rstrip("\\").strip() if buf else line.rstrip("\\").strip()
        if not raw.rstrip().endswith("\\"):
            word, _, rest = buf.partition(" ")
            out.append((word.upper(), rest.strip()))
            buf = ""
    return out


def _stages(path: Path) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions(path):
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def _arg_defaults(path: Path) -> dict[str, str]:
    args = {}
    for word, rest in _instructions(path):
        if word == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
    return args


def test_the_three_images_exist() -> None:
    assert [p.name for p in DOCKERFILES] == [
        "Dockerfile.cpu",
        "Dockerfile.cuda",
        "Dockerfile.mlflow",
    ]


@pytest.mark.skipif(not Path(HADOLINT).exists(), reason="hadolint is not installed")
@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile: Path) -> None:
    out = subprocess.run([HADOLINT, str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.skipif(not Path(HADOLINT).exists(), reason="hadolint is not installed")
def test_hadolint_does_flag_bad_practice(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nUSER root\n")
    out = subprocess.run([HADOLINT, str(bad)], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "DL3013" in out.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_bases_are_pinned_and_builds_are_multi_stage(dockerfile: Path) -> None:
    args = _arg_defaults(dockerfile)
    stages = _stages(dockerfile)
    assert len(stages) >= 2, "multi-stage: the build tools stay out of the final image"
    for stage in stages:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        if image in ("uv", "build"):
            continue
        assert re.search(r":\d[\w.-]*$|@sha256:[0-9a-f]{64}$", image), f"unpinned base {image}"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_final_stage_runs_as_non_root(dockerfile: Path) -> None:
    final = _stages(dockerfile)[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the final stage sets a USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    # the USER comes after every RUN of the final stage (nothing runs as root after it)
    last_user = max(i for i, (w, _) in enumerate(final) if w == "USER")
    assert all(w != "RUN" for w, _ in final[last_user:])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_installs_from_the_lock_without_pip_cache(dockerfile: Path) -> None:
    runs = [rest for word, rest in _instructions(dockerfile) if word == "RUN"]
    pip = [r for r in runs if "pip install" in r]
    assert pip
    for cmd in pip:
        assert "--no-cache-dir" in cmd, cmd
    assert any(re.search(r"-c \S*constraints\.txt", c) for c in pip), "install with the lock"
    if dockerfile.name != "Dockerfile.mlflow":
        assert any(re.search(r"-c constraints\.txt \.($|\s)", c) for c in pip), "the project"
        assert any("torch==2.13.0" in c for c in pip)


def test_cpu_image_takes_torch_from_the_cpu_index_and_cuda_image_from_nvidia_base() -> None:
    cpu = DOCKER / "Dockerfile.cpu"
    assert _arg_defaults(cpu)["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    torch_runs = [r for w, r in _instructions(cpu) if w == "RUN" and "torch==2.13.0" in r]
    assert len(torch_runs) == 1
    assert '--index-url "${TORCH_INDEX}"' in torch_runs[0]
    assert "torch.version.cuda is None" in torch_runs[0], "the build fails on a CUDA wheel"
    cuda = DOCKER / "Dockerfile.cuda"
    final_base = _stages(cuda)[-1][0][1]
    assert final_base == "${CUDA_IMAGE}"
    assert re.fullmatch(
        r"nvidia/cuda:[\d.]+-(cudnn-)?runtime-ubuntu[\d.]+", _arg_defaults(cuda)["CUDA_IMAGE"]
    )
    assert "download.pytorch.org" not in cuda.read_text()  # the default (CUDA) wheel


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_no_credentials_in_images(dockerfile: Path) -> None:
    secretish = re.compile(r"(PASSWORD|SECRET|TOKEN|ACCESS_KEY|API_KEY|CREDENTIAL)", re.I)
    for word, rest in _instructions(dockerfile):
        if word in ("ENV", "ARG", "LABEL"):
            assert not secretish.search(rest), f"{word} {rest}"
        if word in ("COPY", "ADD"):
            assert not re.search(r"\.env\b|secrets?/|\.aws|\.netrc|id_rsa", rest), rest


def test_dockerignore_is_an_allow_list_of_what_the_images_copy() -> None:
    lines = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "allow-list: everything is excluded first"

    def included(path: str) -> bool:
        keep = False
        for pattern in lines:
            neg = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pat) or fnmatch.fnmatch(path, pat + "/*"):
                keep = neg
        return keep

    for dockerfile in DOCKERFILES:
        for word, rest in _instructions(dockerfile):
            if word == "COPY" and "--from" not in rest:
                for src in rest.split()[:-1]:
                    assert included(src.rstrip("/")), f"{dockerfile.name} copies excluded {src}"
    for private in (".git/config", ".venv/bin/python", "data/x.mp4", "mlflow.db", "outputs/m.pt"):
        assert not included(private), private
    for path in ("src/dynpath/__init__.py", "pyproject.toml", "constraints.txt"):
        assert (REPO / path).exists() and included(path)


# --------------------------------------------------------------------------- the build scripts
SCRIPTS = sorted(DOCKER.glob("*.sh"))


def test_the_build_scripts_exist_and_parse() -> None:
    assert [p.name for p in SCRIPTS] == [
        "build.sh",
        "ci.sh",
        "cuda-on-cpu.sh",
        "engine.sh",
        "local-base.sh",
        "pipeline-in-containers.sh",
        "podman.sh",
        "wheelhouse.sh",
    ]
    for script in SCRIPTS:
        out = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert out.returncode == 0, f"{script.name}: {out.stderr}"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_clean() -> None:
    out = subprocess.run(
        ["shellcheck", "-x", *map(str, SCRIPTS)], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0, out.stdout


def test_an_engine_that_is_not_installed_is_one_line_and_exit_3() -> None:
    out = subprocess.run(
        [str(DOCKER / "engine.sh")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "ENGINE": "no-such-engine"},
    )
    assert out.returncode == 3 and out.stdout == ""
    assert out.stderr.strip() == "engine.sh: ENGINE=no-such-engine is not installed"


def test_build_refuses_an_unknown_image_kind() -> None:
    out = subprocess.run(
        [str(DOCKER / "build.sh"), "gpu"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "Dockerfile.gpu" in out.stderr and "cpu, cuda or mlflow" in out.stderr


def test_the_local_folder_is_mounted_never_copied_and_never_committed() -> None:
    """infra/docker/local holds the host's wheels and CA bundle during a build: mounted for pip
    (so it is in the build context) but no COPY takes it into a layer, and git ignores it."""
    ignore = (DOCKER / "local" / ".gitignore").read_text().split()
    assert ignore[ignore.index("*") :] == ["*", "!.gitignore", "!README.md"]
    assert "!infra/docker/local/" in (REPO / ".dockerignore").read_text().split()
    for dockerfile in DOCKERFILES:
        for word, rest in _instructions(dockerfile):
            if word in ("COPY", "ADD"):
                assert "infra/docker/local" not in rest and rest.split()[-1] != "/local"
            if word == "RUN" and ("infra/docker/local" in rest or "target=/local" in rest):
                assert rest.startswith("--mount=type=bind,source=infra/docker/local,target=/local")


def test_cpu_image_entry_point_is_the_cli() -> None:
    final = _stages(DOCKER / "Dockerfile.cpu")[-1]
    assert ("ENTRYPOINT", '["dynpath"]') in final
    assert ("CMD", '["--help"]') in final


def test_make_image_builds_the_cpu_image_with_the_script() -> None:
    make = (REPO / "Makefile").read_text()
    assert "\nimage:\n\tinfra/docker/build.sh cpu\n" in make
    assert "DYNPATH_CONTAINER_TESTS=1" in make and "tests/test_container_run.py" in make


# --------------------------------------------------------------------------- kfp.local runners


def test_run_local_refuses_an_unknown_runner() -> None:
    from dynpath.errors import DynpathError
    from dynpath.kfp.compile import _local_runner

    with pytest.raises(DynpathError, match=r"unknown kfp\.local runner 'k8s': one of subprocess"):
        _local_runner("k8s")


def test_the_docker_runner_resets_the_entry_point_and_runs_as_the_caller() -> None:
    """The image's entry point is `dynpath`: Kubernetes replaces it with the component's
    command, DockerRunner would prefix the command with it. The caller's uid writes the
    pipeline root kfp.local made on the host."""
    from kfp import local

    from dynpath.kfp.compile import _local_runner

    runner = _local_runner("docker")
    assert isinstance(runner, local.DockerRunner)
    assert runner.container_run_args == {
        "entrypoint": ["/usr/bin/env"],
        "user": f"{os.getuid()}:{os.getgid()}",
    }
    assert isinstance(_local_runner("subprocess"), local.SubprocessRunner)
