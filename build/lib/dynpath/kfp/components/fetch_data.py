"""Component ``fetch-data``: the DVC-tracked inputs of a real dataset at a git revision."""

from kfp.dsl import Dataset, Output


def fetch_data(
    repo_url: str,
    data_rev: str,
    paths: list,
    code_version: str,
    data_digest: str,
    data: Output[Dataset],
) -> str:
    """Copy ``paths`` of the DVC project ``repo_url`` at ``data_rev`` into the ``data`` artifact,
    laid out as in the project (``data/<name>/...``), from the project's DVC remote.

    ``code_version`` and ``data_digest`` are cache keys only: a new digest means new data, so
    the step (and everything downstream) reruns.
    """
    import json
    from pathlib import Path

    from dynpath.kfp.fetch import fetch_dvc_paths
    from dynpath.kfp.runtime import component_errors

    with component_errors("fetch-data"):
        manifest = fetch_dvc_paths(repo_url, data_rev, [str(p) for p in paths], Path(data.path))
        data.metadata.update({"data_rev": data_rev, "data_digest": data_digest})
        return json.dumps(manifest, sort_keys=True)
