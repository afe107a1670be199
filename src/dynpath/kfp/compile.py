"""Kubeflow Pipelines: compile, submit and run locally the DAG of ``pipeline/`` (and its runtime).

The DAG itself lives in ``pipeline/dag.py`` and its components in ``components/`` at the root of
the source checkout, beside ``params.yaml``. This module is the bridge the CLI calls
(``dynpath pipeline compile|submit|run-local``):

- :func:`compile_pipeline` builds the DAG from a :class:`~dynpath.config.Config` and writes the
  pipeline YAML atomically;
- :func:`submit` compiles afresh (so a run always matches params.yaml) and creates a run with
  ``kfp.Client``, under the experiment and run names of ``pipeline:``;
- :func:`run_local` executes the whole DAG on this machine with ``kfp.local`` and the subprocess
  runner in the current environment (no container, no package install).

It also holds the few runtime helpers the components call inside their pods (components hold no
logic: :func:`task_config`, :func:`merge_variant_dirs`, :func:`fetch_dvc_paths`,
:func:`log_metrics`). kfp and dvc are imported inside functions so that importing this module
from a component or from ``dynpath --help`` stays cheap.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import dynpath
from dynpath.config import Config
from dynpath.errors import DataError, DynpathError
from dynpath.io import atomic_path

log = logging.getLogger(__name__)

#: File name of the HDF5 store inside the ``features`` artifact directory.
FEATURES_FILE = "features.h5"

#: Config keys (sections or dotted keys) each data step depends on: the ``params:`` of its
#: dvc.yaml stage. Passing only these to the step keeps its cache key stable when an unrelated
#: key changes: editing ``train.epochs`` must not re-extract features. The rest of the Config
#: takes its defaults, which these steps do not read.
STEP_SECTIONS: dict[str, tuple[str, ...]] = {
    # the synthetic clip length follows the extractor's stride and frame rate, and the GloVe
    # file's width follows vocab.dim (dynpath.steps.synth.params_from_config)
    "synth": ("seed", "data", "synth", "extract.frame_rate", "extract.stride", "vocab.dim"),
    "extract": ("seed", "data", "extract"),
    "vocab": ("seed", "data", "vocab"),
}

#: Environment variables the pods read from Kubernetes objects (never from pipeline literals).
#: Secrets hold credentials; the config map holds endpoints, which are not secret.
MLFLOW_SECRET_KEYS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
S3_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
CONFIG_MAP_KEYS = (
    "MLFLOW_TRACKING_URI",
    "MLFLOW_S3_ENDPOINT_URL",
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
)


# --------------------------------------------------------------------------- locating the DAG


def project_root() -> Path:
    """The source checkout holding ``pipeline/dag.py`` and ``components/``.

    The current directory wins (the CLI is run beside params.yaml); otherwise the checkout this
    package was installed from in editable mode. A wheel install (e.g. inside the image) has
    neither, and compiling needs the checkout anyway, so say so.
    """
    here = Path(__file__).resolve().parents[2]
    for root in (Path.cwd(), here):
        if (root / "pipeline" / "dag.py").is_file() and (root / "components").is_dir():
            return root.resolve()
    raise DynpathError(
        "the Kubeflow DAG (pipeline/dag.py, components/) was not found in the current "
        f"directory {Path.cwd()} nor in {here}: run `dynpath pipeline` from the source checkout"
    )


def _import_dag() -> Any:
    """Import ``pipeline.dag`` from the checkout (top-level packages beside params.yaml)."""
    root = project_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    module = importlib.import_module("pipeline.dag")
    origin = Path(module.__file__ or "").resolve()
    if root not in origin.parents:
        raise DynpathError(
            f"imported pipeline.dag from {origin}, not from {root}: another installed package "
            "named 'pipeline' shadows the project's; uninstall it or run from the checkout"
        )
    return module


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


def data_paths(cfg: Config) -> list[str]:
    """The project-relative inputs a real (non-synthetic) dataset needs inside the pods."""
    candidates = [cfg.data.root, cfg.data.videos, cfg.vocab.embeddings, cfg.extract.weights]
    out: list[str] = []
    for path in candidates:
        if path and not Path(path).is_absolute() and path not in out:
            if any(Path(path).is_relative_to(Path(p)) for p in out):
                continue  # already inside a fetched directory
            out.append(path)
    return out


def data_digest(cfg: Config, repo: str | Path = ".", rev: str | None = None) -> str:
    """A content digest of the pipeline's input data, used as a cache key.

    The synthetic dataset is a pure function of its parameters (and of the code, keyed
    separately), so those are hashed. A real dataset is hashed through DVC: the md5 that DVC
    records for each input at ``rev`` (read from the git history, no data download).
    """
    h = hashlib.sha256()
    if cfg.data.dataset == "synthetic":
        sections = _subset(cfg.model_dump(mode="json"), STEP_SECTIONS["synth"])
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
    dag = _import_dag()
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
    """
    import kfp

    compile_pipeline(cfg, package)
    try:
        client = kfp.Client(host=host)
        run = client.create_run_from_pipeline_package(
            str(package),
            arguments={},
            run_name=cfg.pipeline.run_name,
            experiment_name=cfg.pipeline.experiment,
        )
    except Exception as err:  # kfp raises urllib3/ApiException/ValueError alike
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DynpathError(
            f"submitting {package} to the Kubeflow Pipelines API at {host or '(in-cluster)'} "
            f"failed: {first}"
        ) from err
    base = (host or "").rstrip("/")
    return {
        "run_id": run.run_id,
        "experiment": cfg.pipeline.experiment,
        "run_name": cfg.pipeline.run_name,
        "package": str(package),
        "url": f"{base}/#/runs/details/{run.run_id}" if base else None,
    }


def run_local(cfg: Config, workdir: Path) -> dict[str, Any]:
    """Run the whole DAG here with ``kfp.local`` (subprocess runner, current environment).

    Every task runs the same component code as on the cluster, in this Python environment, and
    writes its artifacts under ``workdir``. Platform settings (GPUs, node selectors, secrets)
    have no local meaning and are ignored by kfp.local; MLflow and S3 settings come from this
    process's environment instead.
    """
    import warnings

    from kfp import local

    # kfp.local warns that the project image is "not a Python image": irrelevant here, the
    # subprocess runner uses this environment, which is what the image is built from.
    warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
    # GPU requests, node selectors and secrets are cluster settings; locally they mean nothing.
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    pipeline_func = build_pipeline(cfg)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(workdir),
        raise_on_error=True,
    )
    task = pipeline_func()
    report = Path(task.output.path)
    summary_file = report / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else None
    return {
        "pipeline_root": str(workdir),
        "report": str(report),
        "files": sorted(str(p.relative_to(report)) for p in report.rglob("*") if p.is_file()),
        "summary": summary,
    }


# --------------------------------------------------------------------------- pod runtime


def pipeline_env_names(cfg: Config) -> dict[str, str]:
    """Names of the Kubernetes objects the pods read their environment from."""
    return {
        "mlflow_secret": cfg.pipeline.mlflow_secret,
        "s3_secret": cfg.pipeline.s3_secret,
        "config_map": f"{cfg.pipeline.name}-config",
    }


def step_params(cfg: Config, step: str) -> str:
    """The params JSON a component receives: only the sections ``step`` depends on (see
    :data:`STEP_SECTIONS`), the whole config for the variant steps."""
    raw = cfg.model_dump(mode="json")
    keys = STEP_SECTIONS.get(step)
    if keys is not None:
        raw = _subset(raw, keys)
    return json.dumps(raw, sort_keys=True, separators=(",", ":"))


def _subset(raw: dict[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """The part of ``raw`` named by sections / dotted keys, nested as in ``raw``."""
    out: dict[str, Any] = {}
    for dotted in keys:
        *parents, last = dotted.split(".")
        src, dst = raw, out
        for key in parents:
            src = src[key]
            dst = dst.setdefault(key, {})
        dst[last] = src[last]
    return out


def _rebase(path: str | None, root: str | Path) -> str | None:
    if path is None or Path(path).is_absolute():
        return path
    return str(Path(root) / path)


def task_config(
    params: str, data: str | Path | None = None, features: str | Path | None = None
) -> Config:
    """The Config a component hands its step: ``params`` with the data paths moved into the
    task's input artifacts.

    ``data`` is the directory of the raw-data artifact, laid out like the project (the synthetic
    generator or the DVC fetch writes ``data/<name>/...`` inside it), so every project-relative
    data path is rebased onto it. ``features`` is the directory of the features artifact.
    """
    try:
        raw: dict[str, Any] = json.loads(params)
    except json.JSONDecodeError as err:
        raise DynpathError(f"component input 'params' is not JSON: {err}") from None
    if data is not None:
        d = raw.setdefault("data", {})
        for key in ("root", "videos"):
            if key in d:
                d[key] = _rebase(d[key], data)
        if "vocab" in raw:
            raw["vocab"]["embeddings"] = _rebase(raw["vocab"].get("embeddings"), data)
        if "extract" in raw:
            raw["extract"]["weights"] = _rebase(raw["extract"].get("weights"), data)
    if features is not None:
        raw.setdefault("data", {})["features"] = str(Path(features) / FEATURES_FILE)
    return Config.model_validate(raw)


def merge_variant_dirs(artifact_dirs: Iterable[str | Path], dest: Path) -> list[str]:
    """Gather the ``<variant>/`` sub-directories of fanned-in artifacts under ``dest``.

    Each train/evaluate artifact holds exactly the directory the step wrote for its variant, so
    the report step sees the same ``models/<variant>`` and ``eval/<variant>`` layout as under
    DVC. Symlinks, not copies: the inputs are read-only and can be large.
    """
    dest.mkdir(parents=True, exist_ok=True)
    variants: list[str] = []
    for art in artifact_dirs:
        subdirs = [p for p in Path(art).iterdir() if p.is_dir()] if Path(art).is_dir() else []
        if len(subdirs) != 1:
            raise DataError(f"{art}: expected one <variant>/ directory, found {len(subdirs)}")
        name = subdirs[0].name
        if (dest / name).exists():
            raise DataError(f"variant {name!r} arrives twice in the fan-in ({art})")
        (dest / name).symlink_to(subdirs[0].resolve(), target_is_directory=True)
        variants.append(name)
    return sorted(variants)


def fetch_dvc_paths(
    repo_url: str,
    rev: str,
    paths: Iterable[str],
    dest: Path,
    exclude: Iterable[str] = (),
) -> dict[str, Any]:
    """Copy DVC-tracked ``paths`` of ``repo_url`` at ``rev`` into ``dest`` (same layout),
    leaving out anything under the ``exclude`` paths (e.g. the videos inside a data root).

    Data come from the repository's DVC remote (S3 credentials and endpoint from the
    environment); the pod needs git to read the repository at ``rev``.
    """
    from dvc.api import DVCFileSystem

    if not repo_url:
        raise DynpathError(
            "no data repository: set pipeline.data_repo in params.yaml or pass the pipeline "
            "parameter data_repo (the git URL of the project holding the DVC-tracked data)"
        )
    fs = DVCFileSystem(repo_url, rev=rev)
    fetched: dict[str, Any] = {}
    for path in paths:
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            info = fs.info(path)
        except FileNotFoundError:
            raise DataError(f"{path}: not found at revision {rev} of {repo_url}") from None
        skip = [Path(e) for e in exclude if Path(e).is_relative_to(Path(path))]
        if info["type"] != "directory":
            fs.get(path, str(target))
        elif not skip:
            fs.get(path, str(target), recursive=True)
        else:
            for file in fs.find(path):
                rel = Path(file.lstrip("/"))
                if not any(rel.is_relative_to(e) for e in skip):
                    (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                    fs.get_file(file, str(dest / rel))
        md5 = info.get("md5") or (info.get("dvc_info") or {}).get("md5")
        fetched[path] = {"type": info["type"], "md5": md5}
    return {"repo": repo_url, "rev": rev, "paths": fetched}


def log_metrics(metrics: Mapping[str, Any], sink: Any, prefix: str = "") -> int:
    """Log the numeric leaves of a metrics.json to a KFP ``Metrics`` artifact (flattened keys)."""
    count = 0
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            count += log_metrics(value, sink, prefix=f"{name}.")
        elif isinstance(value, int | float) and not isinstance(value, bool):
            sink.log_metric(name, float(value))
            count += 1
    return count


def environment_summary() -> dict[str, bool]:
    """Which of the pod-side variables are set (names only: values may be credentials)."""
    names = (*MLFLOW_SECRET_KEYS, *S3_SECRET_KEYS, *CONFIG_MAP_KEYS)
    return {name: bool(os.environ.get(name)) for name in names}


def fetch_training_inputs(
    repo_url: str, rev: str, dest: Path, vocab_dir: str = "outputs/vocab"
) -> dict[str, Any]:
    """Bring what ``dynpath train`` reads into ``dest``: params.yaml, then (as that file says)
    the annotations, the feature store and the vocabulary, all at ``rev`` (Kubeflow Trainer's
    init container; the stage outputs must have been ``dvc push``-ed)."""
    from dynpath.config import load_config

    first = fetch_dvc_paths(repo_url, rev, ["params.yaml"], dest)
    cfg = load_config(dest / "params.yaml")
    paths = [p for p in (cfg.data.root, cfg.data.features, vocab_dir) if not Path(p).is_absolute()]
    rest = fetch_dvc_paths(repo_url, rev, paths, dest, exclude=[cfg.data.videos])
    return {**rest, "paths": {**first["paths"], **rest["paths"]}}


def main(argv: list[str] | None = None) -> int:
    """``python -m dynpath.kfp_pipeline fetch|fetch-training-inputs``: the data fetch of the
    pipeline as a command, for containers outside KFP (the Kubeflow Trainer init container)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dynpath.kfp_pipeline")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="copy DVC-tracked paths at a revision")
    fetch.add_argument("paths", nargs="+")
    inputs = sub.add_parser("fetch-training-inputs", help="params.yaml + what training reads")
    inputs.add_argument("--vocab", default="outputs/vocab")
    for p in (fetch, inputs):
        p.add_argument("--repo", required=True, help="git URL (or path) of the DVC project")
        p.add_argument("--rev", default="HEAD")
        p.add_argument("--dest", default=".", type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "fetch":
            result = fetch_dvc_paths(args.repo, args.rev, args.paths, args.dest)
        else:
            result = fetch_training_inputs(args.repo, args.rev, args.dest, args.vocab)
    except DynpathError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
