"""Component ``train``: one ablation variant (GPU task, one per ParallelFor iteration)."""

from kfp.dsl import Dataset, Input, Model, Output


def train(
    params: str,
    variant: str,
    code_version: str,
    data_digest: str,
    data: Input[Dataset],
    features: Input[Dataset],
    vocab: Input[Dataset],
    model: Output[Model],
) -> str:
    """Train ``variant`` into ``<model>/<variant>/`` (best.pt, last.pt, history.json,
    train_summary.json), via ``dynpath.steps.train.run``; MLflow settings come from the pod's
    environment."""
    import json
    import os
    from pathlib import Path

    from dynpath.kfp.runtime import component_errors, task_config
    from dynpath.steps import train as step

    with component_errors("train"):
        cfg = task_config(params, data=data.path, features=features.path)
        # the image has no git history: the registered model version's code_version tag is the
        # pipeline's cache key instead (dynpath.tracking.provenance.code_version)
        os.environ["DYNPATH_CODE_VERSION"] = code_version
        summary = step.run(
            cfg,
            variant=variant,
            vocab_dir=Path(vocab.path),
            out_dir=Path(model.path) / variant,
            resume=False,
        )
        model.metadata.update(
            {"variant": variant, "code_version": code_version, "data_digest": data_digest}
        )
        return json.dumps(summary, sort_keys=True, default=str)
