"""The dynpath Kubeflow pipeline, as the project's layout promises it at the top level; compiled
and run by ``dynpath pipeline``. The DAG lives in :mod:`dynpath.kfp.dag`; this package only
re-exports it.
"""

from dynpath.kfp.dag import build_pipeline

__all__ = ["build_pipeline"]
