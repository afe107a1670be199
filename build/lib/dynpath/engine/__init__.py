"""Training and evaluation engine: span decoding, metrics, checkpoints, trainer, evaluator.

Submodules are imported explicitly (``from dynpath.engine.trainer import Trainer``) so that
importing the package stays cheap; see each module's docstring for the guarantees it gives.
"""
