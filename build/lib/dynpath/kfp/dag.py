"""The dynpath DAG as a Kubeflow pipeline (kfp v2), built from one :class:`Config`.

```
synth | fetch-data ─► extract (GPU) ─┐
                  └─► vocab ─────────┴─► ParallelFor(variants): train (GPU) ─► evaluate
                                                   ─► Collected ─► report ─► promote
```

Everything the DAG needs comes from params.yaml: the image, the variants (one train and one
evaluate task each), GPU requests, node selectors and tolerations of the extract and train
tasks, and the names of the Kubernetes Secrets / ConfigMap the pods read MLflow and S3 settings
from. Credentials never appear in the compiled YAML, only object names.

Cache keys: each task receives ``code_version`` (package version + git commit) and
``data_digest`` (content digest of the inputs) as inputs, so KFP's cache reruns a step when the
code or the data change, and reuses it otherwise. The data steps get only the config sections
they depend on, so tuning training does not re-extract features. ``promote`` acts on the MLflow
registry, state outside the pipeline, and is never cached; with ``tracking.enabled: false``
there is no registry and the DAG ends at the report.
"""

from typing import Any

from dynpath.config import Config, GpuRequest
from dynpath.kfp import components
from dynpath.kfp.spec import (
    CONFIG_MAP_KEYS,
    MLFLOW_SECRET_KEYS,
    S3_SECRET_KEYS,
    data_paths,
    pipeline_env_names,
    step_params,
)
from dynpath.variants import PAPER_VARIANT


def _place_on_gpu(task: Any, request: GpuRequest | None) -> None:
    """GPU limit, node selector and tolerations of a GPU task (nothing when count is 0)."""
    from kfp import kubernetes

    if request is None:
        return
    if request.count > 0:
        task.set_accelerator_type(request.accelerator)
        task.set_accelerator_limit(request.count)
    for key, value in sorted(request.node_selector.items()):
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for tol in request.tolerations:
        seconds = tol.get("toleration_seconds") or tol.get("tolerationSeconds")
        kubernetes.add_toleration(
            task,
            key=tol.get("key"),
            operator=tol.get("operator"),
            value=tol.get("value"),
            effect=tol.get("effect"),
            toleration_seconds=int(seconds) if seconds is not None else None,
        )


def _use_env(task: Any, cfg: Config, mlflow: bool = True, s3: bool = True) -> None:
    """Environment from the cluster's Secrets and ConfigMap (names from params.yaml)."""
    from kfp import kubernetes

    names = pipeline_env_names(cfg)
    kubernetes.use_config_map_as_env(
        task,
        config_map_name=names["config_map"],
        config_map_key_to_env={k: k for k in CONFIG_MAP_KEYS},
    )
    if s3:
        kubernetes.use_secret_as_env(
            task, secret_name=names["s3_secret"], secret_key_to_env={k: k for k in S3_SECRET_KEYS}
        )
    if mlflow:
        kubernetes.use_secret_as_env(
            task,
            secret_name=names["mlflow_secret"],
            secret_key_to_env={k: k for k in MLFLOW_SECRET_KEYS},
        )


def build_pipeline(
    cfg: Config, *, code_version: str, data_digest: str, data_repo: str, data_rev: str
) -> Any:
    """The ``@dsl.pipeline`` for ``cfg``; the keyword values become the pipeline's parameters'
    defaults (overridable at submit time)."""
    from kfp import dsl

    comps = components.load(cfg.pipeline.image)
    variants = list(cfg.variants)
    if not variants:
        raise ValueError("params.yaml has no variants: nothing to train")
    synthetic = cfg.data.dataset == "synthetic"
    inputs = data_paths(cfg)
    full = step_params(cfg, "train")
    gpu = cfg.pipeline.gpu
    # Promotion moves an alias in the MLflow registry: without tracking there is none.
    tracking = cfg.tracking.enabled

    @dsl.pipeline(
        name=cfg.pipeline.name,
        description="dynpath: data -> extract -> vocab -> train/evaluate per variant -> report "
        "-> promote (Dynamic Pathway, IEEE TMM 2024)",
    )
    def dynpath_pipeline(
        code_version: str = code_version,
        data_digest: str = data_digest,
        data_repo: str = data_repo,
        data_rev: str = data_rev,
    ) -> dsl.Dataset:
        keys = {"code_version": code_version, "data_digest": data_digest}
        if synthetic:
            raw = comps["synth"](params=step_params(cfg, "synth"), **keys)
        else:
            raw = comps["fetch_data"](repo_url=data_repo, data_rev=data_rev, paths=inputs, **keys)
            _use_env(raw, cfg, mlflow=False)
        data = raw.outputs["data"]

        ext = comps["extract"](params=step_params(cfg, "extract"), data=data, **keys)
        _place_on_gpu(ext, gpu.get("extract"))
        voc = comps["vocab"](params=step_params(cfg, "vocab"), data=data, **keys)
        features, vocab = ext.outputs["features"], voc.outputs["vocab"]

        with dsl.ParallelFor(items=variants, name="variants") as variant:
            tr = comps["train"](
                params=full, variant=variant, data=data, features=features, vocab=vocab, **keys
            )
            _place_on_gpu(tr, gpu.get("train"))
            _use_env(tr, cfg)
            ev = comps["evaluate"](
                params=full,
                variant=variant,
                data=data,
                features=features,
                vocab=vocab,
                model=tr.outputs["model"],
                **keys,
            )
            _use_env(ev, cfg)

        rep = comps["report"](
            params=full,
            vocab=vocab,
            evaluations=dsl.Collected(ev.outputs["evaluation"]),
            models=dsl.Collected(tr.outputs["model"]),
            **keys,
        )
        _use_env(rep, cfg)
        # promotion is of the paper's model (docs/design.md, "Model registry"): a run of
        # ablation variants alone has nothing to promote
        if tracking and PAPER_VARIANT in cfg.variants:
            pro = comps["promote"](
                params=full, code_version=code_version, report=rep.outputs["report"]
            )
            pro.set_caching_options(enable_caching=False)
            _use_env(pro, cfg)
        return rep.outputs["report"]

    return dynpath_pipeline
