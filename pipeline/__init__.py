"""The dynpath Kubeflow pipeline (see ``dag.py``); compiled and run by ``dynpath pipeline``."""
