"""Component ``synth``: the embedded synthetic benchmark (videos, annotations, word vectors)."""

from kfp.dsl import Dataset, Output


def synth(params: str, code_version: str, data_digest: str, data: Output[Dataset]) -> str:
    """Generate the synthetic dataset into the ``data`` artifact at ``<data.root>`` (the same
    project-relative layout a DVC fetch produces), via ``dynpath.steps.synth.run``."""
    import json
    from pathlib import Path

    from dynpath.kfp.runtime import component_errors, task_config
    from dynpath.steps import synth as step

    with component_errors("synth"):
        cfg = task_config(params)
        summary = step.run(cfg, out_dir=Path(data.path) / cfg.data.root)
        data.metadata.update({"data_digest": data_digest, "dataset": cfg.data.name})
        return json.dumps(summary, sort_keys=True, default=str)
