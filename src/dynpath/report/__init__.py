"""The ablation report: results per variant (tables), figures (plots) and renderers (html).

``dynpath.steps.report`` assembles them into reports/report.html, report.md and summary.json.
"""
