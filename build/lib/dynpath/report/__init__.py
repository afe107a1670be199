"""The ablation report: results per variant (tables), what they show (analysis, summary),
figures (plots), the document (sections, document) and renderers (html).

``dynpath.steps.report`` reads the inputs and writes reports/report.html, report.md and
summary.json from them.
"""
