"""Component ``promote``: move the registry alias ``champion`` to a better challenger."""

from kfp.dsl import Dataset, Input


def promote(params: str, code_version: str, report: Input[Dataset]) -> str:
    """Run ``dynpath.steps.promote.run`` once the report exists (``report`` orders the task
    after it). The MLflow registry is state outside the pipeline, so the task is not cached."""
    import json

    from dynpath.kfp.runtime import component_errors, task_config
    from dynpath.steps import promote as step

    with component_errors("promote"):
        cfg = task_config(params)
        summary = step.run(cfg, version=None)
        return json.dumps(summary, sort_keys=True, default=str)
