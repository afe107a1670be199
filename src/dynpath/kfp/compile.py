"""Kubeflow Pipelines: compile, submit and run locally the DAG of :mod:`dynpath.kfp.dag`.

The DAG lives in :mod:`dynpath.kfp.dag` and its components in :mod:`dynpath.kfp.components`
(re-exported by the top-level ``pipeline/`` and ``components/`` packages of the checkout). This
module is the bridge the CLI calls
(``dynpath pipeline compile|submit|run-local``):

- :func:`compile_pipeline` builds the DAG from a :class:`~dynpath.config.Config` and writes the
  pipeline YAML atomically;
- :func:`submit` compiles afresh (so a run always matches params.yaml) and creates a run with
  ``kfp.Client``, under the experiment and run names of ``pipeline:``;
- :func:`run_local` executes the whole DAG on this machine with ``kfp.local``: the subprocess
  runner in the current environment (no container, no package install), or each task in its
  container of ``pipeline.image`` through a Docker API (``runner="docker"``).

The pods' helpers live in :mod:`dynpath.kfp.runtime`, the DAG's data (cache-key sections,
Kubernetes object names) in :mod:`dynpath.kfp.spec`, the DVC fetch in :mod:`dynpath.kfp.fetch`.
kfp and dvc are imported inside functions so that ``dynpath --help`` stays cheap.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dynpath
from dynpath.config import Config
from dynpath.errors import DataError, DynpathError
from dynpath.io import atomic_path
from dynpath.kfp.spec import STEP_SECTIONS, data_paths, subset_config
from dynpath.schemas import REPORT_SUMMARY

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- locating the DAG


def project_root() -> Path:
    """The source checkout whose git commit keys the cache (:func:`code_version`) and whose
    ``origin`` holds the data: the current directory when it is one (the CLI is run beside
    params.yaml), else the checkout this package was installed from in editable mode. A wheel
    install (e.g. inside the image) has neither, so say so.
    """
    here = Path(__file__).resolve().parents[3]
    for root in (Path.cwd(), here):
        if (root / "src" / "dynpath").is_dir() and (root / "pyproject.toml").is_file():
            return root.resolve()
    raise DynpathError(
        "the dynpath source checkout (src/dynpath, pyproject.toml) was not found in the current "
        f"directory {Path.cwd()} nor in {here}: run `dynpath pipeline` from the source checkout"
    )


# --------------------------------------------------------------------------- cache keys


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def code_version(root: Path | None = None) -> str:
    """``<package version>+g<commit>[.dirty]``: the key that makes a code change rerun steps.

    The image tag is part of each component's spec already; the commit catches code changes
    made without bumping the tag, which is the common case while iterating.
    """
    root = root or project_root()
    sha = _git(["rev-parse", "--short=12", "HEAD"], root)
    if sha is None:
        return dynpath.__version__
    dirty = _git(["status", "--porcelain", "--untracked-files=no"], root)
    return f"{dynpath.__version__}+g{sha}{'.dirty' if dirty else ''}"


def resolve_rev(rev: str, root: Path | None = None) -> str:
    """The commit ``rev`` names in the local checkout, or ``rev`` itself when it cannot be
    resolved here (a revision that only exists in the remote data repository)."""
    sha = _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], root or Path.cwd())
    return sha or rev


def data_digest(cfg: Config, repo: str | Path = ".", rev: str | None = None) -> str:
    """A content digest of the pipeline's input data, used as a cache key.

    The synthetic dataset is a pure function of its parameters (and of the code, keyed
    separately), so those are hashed. A real dataset is hashed through DVC: the md5 that DVC
    records for each input at ``rev`` (read from the git history, no data download).
    """
    h = hashlib.sha256()
    if cfg.data.dataset == "synthetic":
        sections = subset_config(cfg.model_dump(mode="json"), STEP_SECTIONS["synth"])
        h.update(json.dumps(sections, sort_keys=True).encode())
        return "synthetic-" + h.hexdigest()[:16]
    from dvc.api import DVCFileSystem

    rev = rev or cfg.pipeline.data_rev
    try:
        fs = DVCFileSystem(str(repo), rev=rev)
        for path in data_paths(cfg):
            info = fs.info(path)
            md5 = info.get("md5") or (info.get("dvc_info") or {}).get("md5")
            if not md5:
                raise DataError(f"{path}: not tracked by DVC at revision {rev} of {repo}")
            h.update(f"{path}\0{md5}\n".encode())
    except Exception as err:
        # Compiling for a cluster whose data repository is not this checkout is legitimate: the
        # revision then stands for the data (a commit pins every DVC pointer file).
        log.warning("data digest from the revision only (%s): %s", rev, err)
        h = hashlib.sha256(f"{rev}\0{sorted(data_paths(cfg))}".encode())
        return "rev-" + h.hexdigest()[:16]
    return "dvc-" + h.hexdigest()[:16]


# --------------------------------------------------------------------------- compile / submit


def build_pipeline(cfg: Config) -> Any:
    """The ``@dsl.pipeline`` function for ``cfg`` with its cache keys resolved from the checkout."""
    from dynpath.kfp import dag  # imports kfp.dsl (the components' module level)

    root = project_root()
    rev = resolve_rev(cfg.pipeline.data_rev, root)
    return dag.build_pipeline(
        cfg,
        code_version=code_version(root),
        data_digest=data_digest(cfg, repo=root, rev=rev),
        data_repo=_default_data_repo(cfg, root),
        data_rev=rev,
    )


def _default_data_repo(cfg: Config, root: Path) -> str:
    """Where the pods clone the DVC-tracked inputs from: ``pipeline.data_repo`` when the config
    has it, else this checkout's ``origin`` remote (empty for the synthetic dataset)."""
    configured = cfg.pipeline.data_repo
    if configured:
        return str(configured)
    if cfg.data.dataset == "synthetic":
        return ""
    return _git(["remote", "get-url", "origin"], root) or ""


def compile_pipeline(cfg: Config, path: Path) -> Path:
    """Compile the DAG for ``cfg`` to the pipeline YAML ``path`` (written atomically)."""
    from kfp import compiler

    path = Path(path)
    if path.suffix not in (".yaml", ".yml"):
        raise DynpathError(f"{path}: the pipeline package must end in .yaml or .yml")
    pipeline_func = build_pipeline(cfg)
    with atomic_path(path, suffix=path.suffix) as tmp:
        compiler.Compiler().compile(pipeline_func=pipeline_func, package_path=str(tmp))
    log.info("compiled pipeline %r to %s", cfg.pipeline.name, path)
    return path


def submit(cfg: Config, host: str | None, package: Path) -> dict[str, Any]:
    """Compile to ``package`` and create a run on the Kubeflow Pipelines API at ``host``.

    ``host`` None lets ``kfp.Client`` find the in-cluster endpoint. Authentication, when the
    deployment needs it, comes from kfp's own environment (e.g. ``KF_PIPELINES_SA_TOKEN_PATH``).
    The package is compiled to a temporary file beside ``package`` and renamed to it only once
    the run exists: a failed submission leaves no package behind (nor replaces an older one).
    """
    import kfp

    package = Path(package)
    if package.suffix not in (".yaml", ".yml"):
        raise DynpathError(f"{package}: the pipeline package must end in .yaml or .yml")
    with atomic_path(package, suffix=package.suffix) as tmp:
        compile_pipeline(cfg, tmp)
        try:
            client = kfp.Client(host=host)
            run = client.create_run_from_pipeline_package(
                str(tmp),
                arguments={},
                run_name=cfg.pipeline.run_name,
                experiment_name=cfg.pipeline.experiment,
            )
        except Exception as err:  # kfp raises urllib3/ApiException/ValueError alike
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DynpathError(
                f"submitting the pipeline to the Kubeflow Pipelines API at "
                f"{host or '(in-cluster)'} failed: {first} (no package written to {package})"
            ) from err
    base = (host or "").rstrip("/")
    return {
        "run_id": run.run_id,
        "experiment": cfg.pipeline.experiment,
        "run_name": cfg.pipeline.run_name,
        "package": str(package),
        "url": f"{base}/#/runs/details/{run.run_id}" if base else None,
    }


@contextlib.contextmanager
def _caller_state_kept() -> Iterator[None]:
    """Put back ``builtins.print`` and the root logger as they were.

    While its tasks run, kfp.local swaps ``builtins.print`` for an indenting one and the root
    logger's handlers for its own stdout handler; measured: after a local run the caller's process
    kept both (every later ``print`` indented by four spaces, every log line in kfp's format), so a
    notebook or test that runs the pipeline in-process printed JSON that no longer parsed.
    """
    saved_print = builtins.print
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        yield
    finally:
        builtins.print = saved_print
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


#: the kfp.local runners :func:`run_local` knows
RUNNERS = ("subprocess", "docker")


def _local_runner(runner: str) -> Any:
    """The kfp.local runner object for ``runner`` (one of :data:`RUNNERS`).

    ``docker`` runs each task in ``pipeline.image`` through the Docker API of ``DOCKER_HOST``
    (docker, or ``podman system service``; infra/docker/pipeline-in-containers.sh). Two
    settings make a task run there as on Kubernetes: the image's entry point is ``dynpath``,
    which Kubernetes replaces with the component's command while DockerRunner would prefix it, so
    the entry point becomes ``/usr/bin/env``; and the task runs as this process's user, so that
    it can write into the pipeline root that kfp.local creates here (and leaves files owned by
    the caller).
    """
    from kfp import local

    if runner == "subprocess":
        return local.SubprocessRunner(use_venv=False)
    if runner == "docker":
        return local.DockerRunner(entrypoint=["/usr/bin/env"], user=f"{os.getuid()}:{os.getgid()}")
    raise DynpathError(f"unknown kfp.local runner {runner!r}: one of {', '.join(RUNNERS)}")


def run_local(cfg: Config, workdir: Path, runner: str = "subprocess") -> dict[str, Any]:
    """Run the whole DAG here with ``kfp.local``.

    Every task runs the same component code as on the cluster and writes its artifacts under
    ``workdir``: with ``runner="subprocess"`` in this Python environment, with ``"docker"`` in a
    container of ``pipeline.image`` (see :func:`_local_runner`). Platform settings (GPUs, node
    selectors, secrets) have no local meaning and are ignored by kfp.local; MLflow and S3
    settings come from this process's environment instead.
    """
    import warnings

    from kfp import local

    # kfp.local warns that the project image is "not a Python image": irrelevant here, the
    # subprocess runner uses this environment, which is what the image is built from.
    warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
    # GPU requests, node selectors and secrets are cluster settings; locally they mean nothing.
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
    local_runner = _local_runner(runner)
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    pipeline_func = build_pipeline(cfg)
    with _caller_state_kept():
        local.init(
            runner=local_runner,
            pipeline_root=str(workdir),
            raise_on_error=True,
        )
        task = pipeline_func()
    report = Path(task.output.path)
    summary_file = report / REPORT_SUMMARY
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else None
    return {
        "pipeline_root": str(workdir),
        "report": str(report),
        "files": sorted(str(p.relative_to(report)) for p in report.rglob("*") if p.is_file()),
        "summary": summary,
    }
