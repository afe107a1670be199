"""Kubeflow Pipelines (kfp v2): everything dynpath needs to build and run its DAG on a cluster.

Submodules are imported explicitly (kfp and dvc are heavy, and the pods import only what their
component needs); see docs/design.md, "Layout".
"""
