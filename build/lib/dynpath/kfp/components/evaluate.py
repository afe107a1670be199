"""Component ``evaluate``: test-split metrics of one trained variant."""

from kfp.dsl import Dataset, Input, Metrics, Model, Output


def evaluate(
    params: str,
    variant: str,
    code_version: str,
    data_digest: str,
    data: Input[Dataset],
    features: Input[Dataset],
    vocab: Input[Dataset],
    model: Input[Model],
    evaluation: Output[Dataset],
    metrics: Output[Metrics],
) -> str:
    """Evaluate ``variant`` into ``<evaluation>/<variant>/`` (metrics.json, predictions.jsonl)
    via ``dynpath.steps.evaluate.run``, and log its numeric metrics to the KFP UI."""
    import json
    from pathlib import Path

    from dynpath.kfp.runtime import component_errors, log_metrics, task_config
    from dynpath.steps import evaluate as step

    with component_errors("evaluate"):
        cfg = task_config(params, data=data.path, features=features.path)
        out_dir = Path(evaluation.path) / variant
        summary = step.run(
            cfg,
            variant=variant,
            vocab_dir=Path(vocab.path),
            model_dir=Path(model.path) / variant,
            out_dir=out_dir,
            split="test",
        )
        log_metrics(json.loads((out_dir / "metrics.json").read_text()), metrics)
        evaluation.metadata.update({"variant": variant})
        return json.dumps(summary, sort_keys=True, default=str)
