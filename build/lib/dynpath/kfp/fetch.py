"""Fetching DVC-tracked data at a git revision: the ``fetch_data`` component, and the same as a
command (``python -m dynpath.kfp.fetch fetch|fetch-training-inputs``) for containers outside KFP
(the Kubeflow Trainer init container, infra/k8s/training/runtime.yaml).

Data come from the repository's DVC remote (S3 credentials and endpoint from the environment).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dynpath.errors import DataError, DynpathError


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
    """``python -m dynpath.kfp.fetch fetch|fetch-training-inputs``: the data fetch of the
    pipeline as a command, for containers outside KFP (the Kubeflow Trainer init container)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m dynpath.kfp.fetch")
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
