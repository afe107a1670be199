"""Kubeflow (kfp v2) components of the dynpath DAG: one thin wrapper per step.

Each module holds one Python function that calls one ``dynpath.steps`` function (or, for
``fetch_data``, the DVC fetch helper) and passes data as typed artifacts. KFP ships only the
function's source into the pod, so the modules import nothing but the standard library and
``kfp.dsl`` at the top; everything else is imported inside the function body. Each body runs
its step under :func:`dynpath.kfp.runtime.component_errors` (a decorator would be dropped with
the rest of the module), so bad input ends the pod on one line with exit code 2 and a bug keeps
its traceback and exit code 1 (docs/cluster.md, "Exit codes of the pipeline's pods").

The container image is a property of the deployment (``pipeline.image`` in params.yaml), not of
the code, so the functions are turned into components by :func:`load` with that image, with no
package installed at run time: the image already holds dynpath, kfp and their locked
dependencies.
"""

from collections.abc import Callable
from typing import Any

from dynpath.kfp.components.evaluate import evaluate
from dynpath.kfp.components.extract import extract
from dynpath.kfp.components.fetch_data import fetch_data
from dynpath.kfp.components.promote import promote
from dynpath.kfp.components.report import report
from dynpath.kfp.components.synth import synth
from dynpath.kfp.components.train import train
from dynpath.kfp.components.vocab import vocab

#: The steps, by name: the one list of the components (the DAG looks each up by this name).
FUNCTIONS: dict[str, Callable[..., Any]] = {
    func.__name__: func
    for func in (fetch_data, synth, extract, vocab, train, evaluate, report, promote)
}

#: The step components built for one image (kfp ``PythonComponent`` objects), by step name.
Components = dict[str, Any]


def load(image: str) -> Components:
    """Build every component to run in ``image``, without installing anything at run time."""
    from kfp import dsl

    return {
        name: dsl.component(
            func,
            base_image=image,
            install_kfp_package=False,
            packages_to_install=None,
        )
        for name, func in FUNCTIONS.items()
    }
