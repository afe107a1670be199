"""The Kubeflow components of the dynpath DAG, as the project's layout promises them at the top
level. The code lives in :mod:`dynpath.kfp.components` (one module per step, inside the package so
that nothing needs the checkout on ``sys.path``); this package only re-exports it.
"""

from dynpath.kfp.components import FUNCTIONS, Components, load

__all__ = ["FUNCTIONS", "Components", "load"]
