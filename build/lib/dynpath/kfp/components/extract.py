"""Component ``extract``: clip features of every video (GPU task)."""

from kfp.dsl import Dataset, Input, Output


def extract(
    params: str,
    code_version: str,
    data_digest: str,
    data: Input[Dataset],
    features: Output[Dataset],
) -> str:
    """Decode the videos of the ``data`` artifact and write ``features.h5`` into the
    ``features`` artifact, via ``dynpath.steps.extract.run``."""
    import json
    from pathlib import Path

    from dynpath.kfp.runtime import component_errors, task_config
    from dynpath.kfp.spec import FEATURES_FILE
    from dynpath.steps import extract as step

    with component_errors("extract"):
        cfg = task_config(params, data=data.path)
        summary = step.run(
            cfg,
            videos=Path(cfg.data.videos),
            output=Path(features.path) / FEATURES_FILE,
            backbone=cfg.extract.backbone,
            weights=cfg.extract.weights,
        )
        features.metadata.update({"backbone": cfg.extract.backbone, "data_digest": data_digest})
        return json.dumps(summary, sort_keys=True, default=str)
