"""Component ``vocab``: vocabulary and frozen word-vector matrix of the training split."""

from kfp.dsl import Dataset, Input, Output


def vocab(
    params: str,
    code_version: str,
    data_digest: str,
    data: Input[Dataset],
    vocab: Output[Dataset],
) -> str:
    """Build ``vocab.json`` and ``embeddings.npy`` into the ``vocab`` artifact, via
    ``dynpath.steps.vocab.run``."""
    import json
    from pathlib import Path

    from dynpath.kfp.runtime import component_errors, task_config
    from dynpath.steps import vocab as step

    with component_errors("vocab"):
        cfg = task_config(params, data=data.path)
        summary = step.run(cfg, out_dir=Path(vocab.path))
        return json.dumps(summary, sort_keys=True, default=str)
