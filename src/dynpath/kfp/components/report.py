"""Component ``report``: the fan-in of every variant into the ablation report."""

from kfp.dsl import HTML, Dataset, Input, Markdown, Model, Output


def report(
    params: str,
    code_version: str,
    data_digest: str,
    vocab: Input[Dataset],
    evaluations: Input[list[Dataset]],
    models: Input[list[Model]],
    report: Output[Dataset],
    html: Output[HTML],
    markdown: Output[Markdown],
) -> str:
    """Gather the per-variant evaluations and training summaries (``dsl.Collected``) and build
    report.html / report.md / summary.json / plots via ``dynpath.steps.report.run`` (with the
    data report of the ``vocab`` step); the HTML and Markdown are also published as their own
    artifacts for the KFP UI."""
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from dynpath.kfp.runtime import component_errors, merge_variant_dirs, task_config
    from dynpath.schemas import DATA_REPORT
    from dynpath.steps import report as step

    with component_errors("report"):
        cfg = task_config(params)
        with tempfile.TemporaryDirectory(prefix="dynpath-report-") as tmp:
            eval_dir = Path(tmp) / "eval"
            models_dir = Path(tmp) / "models"
            variants = merge_variant_dirs([a.path for a in evaluations], eval_dir)
            merge_variant_dirs([m.path for m in models], models_dir)
            summary = step.run(
                cfg,
                eval_dir=eval_dir,
                models_dir=models_dir,
                out_dir=Path(report.path),
                data_report=Path(vocab.path) / DATA_REPORT,
            )
        shutil.copyfile(Path(report.path) / "report.html", html.path)
        shutil.copyfile(Path(report.path) / "report.md", markdown.path)
        report.metadata.update({"variants": variants})
        return json.dumps(summary, sort_keys=True, default=str)
