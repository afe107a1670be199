"""Models fetched from MLflow for the Localizer: :func:`download_model` (any model URI, into a
temporary directory) and :func:`cached_registry_model` (a registry version, downloaded once into
:func:`cache_dir` and reused). Short HTTP timeouts; no half-written directory is left behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from dynpath.errors import DynpathError

log = logging.getLogger(__name__)


def download_model(uri: str, tracking_uri: str | None = None) -> Path:
    """Download an MLflow model URI into a temporary directory (short HTTP timeouts)."""
    import mlflow

    from dynpath.tracking.mlflow_env import configure_mlflow_env, existing_store, mlflow_uris

    configure_mlflow_env()
    uri_store = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or _params_tracking_uri()
    if uri.startswith(("models:/", "runs:/")):  # read through a store: it must exist
        uri_store = existing_store(uri_store, f"cannot download model {uri}")
    dst = Path(tempfile.mkdtemp(prefix="dynpath-model-"))
    try:
        # models:/ URIs resolve through MLflow's global registry URI: set it for this download
        # only (mlflow_uris puts the previous globals and their variables back)
        with mlflow_uris(uri_store):
            local = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst))
    except BaseException as err:
        shutil.rmtree(dst, ignore_errors=True)  # a failed download leaves no temp directory
        if not isinstance(err, Exception):
            raise
        raise DynpathError(f"cannot download model {uri}: {str(err).splitlines()[0]}") from None
    return Path(local)


CACHE_ENV = "DYNPATH_CACHE"


def cache_dir() -> Path:
    """Where downloaded registry models are kept: ``$DYNPATH_CACHE``, else
    ``$XDG_CACHE_HOME/dynpath``, else ``~/.cache/dynpath``."""
    explicit = os.environ.get(CACHE_ENV, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "dynpath"


def _registry_ref(uri: str) -> tuple[str, str | None, str | None] | None:
    """``models:/NAME@ALIAS`` -> (NAME, ALIAS, None); ``models:/NAME/3`` -> (NAME, None, "3");
    anything else (a stage such as ``models:/NAME/Production``, ``latest``, a sub-path): None."""
    rest = uri.removeprefix("models:/").strip("/")
    if not uri.startswith("models:/") or not rest:
        return None
    if "@" in rest and "/" not in rest:
        name, alias = rest.rsplit("@", 1)
        return (name, alias, None) if name and alias else None
    parts = rest.split("/")
    if len(parts) == 2 and parts[1].isdigit():
        return parts[0], None, parts[1]
    return None


def cached_registry_model(uri: str, tracking_uri: str | None = None) -> Path | None:
    """The pyfunc directory of a registry model version, downloaded once into
    :func:`cache_dir` and reused by later calls; None when ``uri`` does not name a version or
    an alias (stages, runs, artifact URIs: downloaded each time) or when the cache cannot be
    written (then the caller downloads to a temporary directory, as before).

    The alias is resolved whenever the registry may have changed (a promotion moves it), the
    download is not: a version of a registered model never changes. The cache entry is keyed by
    the registry, the name, the version, its run and its creation time, so a registry that was
    wiped and refilled (a new ``version 1``) never reuses an old download. The download lands
    in a hidden temporary directory beside the entry and is renamed into place: a crash leaves
    no half entry, and two processes downloading at once both end with a complete one.

    A SQLite registry that has not been written since the last resolution (same file
    identity, size and modification time, :func:`_store_fingerprint`) cannot have moved an
    alias, so the remembered answer is used without importing MLflow or opening its
    SQLAlchemy store: a cached ``dynpath localize`` went from 6.1 to 2.8 s on the 2-core machine
    (docs/performance.md, "Answering one query").
    """
    ref = _registry_ref(uri)
    if ref is None:
        return None
    name, alias, version = ref
    from dynpath.tracking.mlflow_env import existing_store

    uri_store = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or _params_tracking_uri()
    uri_store = existing_store(uri_store, f"cannot download model {uri}")
    fingerprint = _store_fingerprint(uri_store)
    remembered = _resolved_entry(uri_store, uri, fingerprint)
    if remembered is not None:
        log.debug("model %s: registry unchanged, cached in %s", uri, remembered)
        return remembered
    entry = _fetch_version(uri, uri_store, name, alias, version)
    if entry is not None:
        _remember_entry(uri_store, uri, fingerprint, entry)
    return entry


def _fetch_version(
    uri: str, uri_store: str, name: str, alias: str | None, version: str | None
) -> Path | None:
    """Resolve the alias or version through MLflow and return its cache entry, downloading it
    unless already there (None: the cache is not writable)."""
    import hashlib
    import json

    import mlflow

    from dynpath.tracking.mlflow_env import configure_mlflow_env, mlflow_uris

    configure_mlflow_env()
    try:
        with mlflow_uris(uri_store):
            registry = mlflow.get_registry_uri()
            client = mlflow.MlflowClient()
            if alias is not None:
                mv = client.get_model_version_by_alias(name, alias)
            else:
                mv = client.get_model_version(name, str(version))
    except Exception as err:
        raise DynpathError(f"cannot download model {uri}: {str(err).splitlines()[0]}") from None
    ident = json.dumps([registry, name, str(mv.version), mv.run_id, mv.creation_timestamp])
    key = hashlib.sha256(ident.encode("utf-8")).hexdigest()[:16]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    entry = cache_dir() / "models" / safe / f"v{mv.version}-{key}"
    if (entry / "MLmodel").is_file():
        log.debug("model %s: cached in %s", uri, entry)
        return entry
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=entry.parent))
    except OSError as err:
        log.warning("model cache %s not writable (%s): downloading without it", entry, err)
        return None
    try:
        with mlflow_uris(uri_store):
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{name}/{mv.version}", dst_path=str(tmp / "model")
                )
            )
        if not (local / "MLmodel").is_file():
            raise DynpathError(f"{uri}: the download has no MLmodel file")
        try:
            local.rename(entry)
        except OSError:
            if not (entry / "MLmodel").is_file():  # not another process's complete entry
                raise
    except DynpathError:
        raise
    except Exception as err:
        raise DynpathError(f"cannot download model {uri}: {str(err).splitlines()[0]}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("model %s (version %s) cached in %s", uri, mv.version, entry)
    return entry


RESOLVED_FILE = "resolved.json"


def _store_fingerprint(store: str) -> str | None:
    """Identity, size, modification time (ns) and header of a SQLite store's file and of its
    journal and WAL files where present; None for any other store (an HTTP server, a database
    server), whose aliases are then resolved on every call.

    Every committed write changes the main file's header (bytes 24-27, SQLite's file change
    counter, in rollback-journal mode) or the WAL's size and header (WAL mode), so an unchanged
    fingerprint means an unchanged registry even where a write keeps the size and lands within
    the file system's mtime granularity."""
    if not store.startswith("sqlite:///"):
        return None
    path = Path(store.removeprefix("sqlite:///").split("?", 1)[0]).resolve()
    parts = []
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-journal")):
        try:
            st = p.stat()
            with p.open("rb") as fh:
                head = fh.read(100)
        except FileNotFoundError:
            continue
        except OSError:
            return None
        parts.append(f"{p.name}:{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{head.hex()}")
    return "|".join(parts) if parts else None


def _resolved_key(store: str, uri: str) -> str:
    if store.startswith("sqlite:///"):
        path = Path(store.removeprefix("sqlite:///").split("?", 1)[0]).resolve()
        store = f"sqlite:///{path}"
    return f"{store} {uri}"


def _resolved_entry(store: str, uri: str, fingerprint: str | None) -> Path | None:
    """The cache entry remembered for ``uri`` in ``store`` when the store is unchanged since."""
    import json

    if fingerprint is None:
        return None
    try:
        index = json.loads((cache_dir() / RESOLVED_FILE).read_text(encoding="utf-8"))
        hit = index[_resolved_key(store, uri)]
        entry = Path(hit["entry"])
        if hit["store"] != fingerprint or not (entry / "MLmodel").is_file():
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return entry


def _remember_entry(store: str, uri: str, fingerprint: str | None, entry: Path) -> None:
    """Record ``uri`` -> ``entry`` with the store's fingerprint (best effort: a lost or
    unwritable index only costs the next call a resolution)."""
    import json

    from dynpath.io import write_json

    if fingerprint is None:
        return
    path = cache_dir() / RESOLVED_FILE
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or damaged: start afresh
        index = {}
    if not isinstance(index, dict):
        index = {}
    index[_resolved_key(store, uri)] = {"store": fingerprint, "entry": str(entry)}
    try:
        write_json(path, index)
    except OSError as err:
        log.debug("model cache index %s not written: %s", path, err)


def _params_tracking_uri() -> str | None:
    """``tracking.uri`` of ./params.yaml when present (the project's default store)."""
    from dynpath.config import DEFAULT_PARAMS, ConfigError, load_config

    if not DEFAULT_PARAMS.is_file():
        return None
    try:
        return load_config(DEFAULT_PARAMS).tracking.uri
    except ConfigError:
        return None
