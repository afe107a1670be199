"""The stages of the DAG as data: what each runs (its entry modules) and the params keys it reads.

One table for both orchestrators. dvc.yaml's ``params:`` lists are checked against it, and its code
``deps:`` against the import closure of each stage's entry modules (tests/test_dvc_stages.py), so
editing a module a stage runs can never leave ``dvc repro`` with stale outputs. The Kubeflow cache
keys of the data steps (:data:`dynpath.kfp.spec.STEP_SECTIONS`) are derived from the same keys.

Every stage also runs :mod:`dynpath.config` (the CLI loads params.yaml through it: a changed
default changes what the stage computes), so it is an entry of each. ``${key}`` is a variant
name, as in dvc.yaml's ``foreach``. A stage's code includes the package ``__init__`` files it runs,
``src/dynpath/__init__.py`` among them where a module reads ``dynpath.__version__`` (the
checkpoints of train and evaluate). Torch-free and import-free: the CLI and the tests read it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """One stage of the DAG (see module doc)."""

    name: str
    entry: tuple[str, ...]  # modules whose code the stage runs; their import closure is its code
    params: tuple[str, ...]  # params keys (sections or dotted keys) the stage reads
    #: modules of the import closure the stage never executes, with the reason (kept short: each
    #: one is a claim the reviewer must be able to check in the code)
    not_run: tuple[tuple[str, str], ...] = ()


#: Reached from the Localizer's feature extraction for a video file (a function-level import in
#: ``Localizer._features_from_video``); training and evaluation read stored features only.
_EXTRACT_VIA_LOCALIZER = ("dynpath.extract", "only Localizer._features_from_video imports it")

_CONFIG = "dynpath.config"

STAGES: tuple[Stage, ...] = (
    Stage(
        "data",
        ("dynpath.steps.data", _CONFIG),
        (
            "seed",
            "synth",
            "data.dataset",
            "data.root",
            "extract.frame_rate",
            "extract.stride",
            "vocab.dim",
        ),
    ),
    Stage(
        "extract",
        ("dynpath.steps.extract", _CONFIG),
        ("seed", "extract", "data.videos", "data.features"),
    ),
    Stage(
        "vocab",
        ("dynpath.steps.vocab", _CONFIG),
        ("seed", "vocab", "data.dataset", "data.root", "data.val_fraction"),
    ),
    Stage(
        "train",
        ("dynpath.steps.train", _CONFIG),
        (
            "seed",
            "seeds",
            "data.dataset",
            "data.name",
            "data.root",
            "data.features",
            "data.max_len",
            "data.val_fraction",
            "vocab.max_query_len",
            "model",
            "train",
            "eval.selection_metric",
            "variants.${key}",
            "tracking",
        ),
        not_run=(_EXTRACT_VIA_LOCALIZER,),
    ),
    Stage(
        "evaluate",
        ("dynpath.steps.evaluate", _CONFIG),
        (
            "seed",
            "seeds",
            "data.dataset",
            "data.name",
            "data.root",
            "data.features",
            "data.max_len",
            "vocab.max_query_len",
            "model",
            "variants.${key}",
            "eval",
            "tracking",
            "train.device",
            "train.amp",
            "train.threads",
        ),
        not_run=(_EXTRACT_VIA_LOCALIZER,),
    ),
    Stage(
        "report",
        ("dynpath.steps.report", _CONFIG),
        ("seeds", "data.dataset", "data.name", "data.root", "variants", "eval", "tracking"),
    ),
)

#: The stages of dvc.yaml that are no Kubeflow step: ``check`` validates the whole params file
#: before DVC deletes any output (dynpath.steps.check); a pipeline is compiled from validated
#: params, so Kubeflow needs no such step. Every stage of :data:`STAGES` depends on its output.
DVC_ONLY: tuple[Stage, ...] = (Stage("check", ("dynpath.steps.check", _CONFIG), ()),)
#: The file the check stage writes and every other stage depends on.
PARAMS_CHECK = "outputs/params_check.json"

#: Stage name -> stage.
BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}

#: The Kubeflow data steps and the DVC stage each one is (the synthetic generator is the ``data``
#: stage of a synthetic profile).
KFP_DATA_STEPS: dict[str, str] = {"synth": "data", "extract": "extract", "vocab": "vocab"}


def kfp_sections(stage: str) -> tuple[str, ...]:
    """The config keys of a Kubeflow data step's params, i.e. its cache key: the stage's keys, with
    the ``data.*`` keys widened to the whole ``data`` section, because a pod rebases the data
    paths onto its input artifacts (:func:`dynpath.kfp.runtime.task_config`) and needs all of
    them to agree."""
    keys: list[str] = []
    for key in BY_NAME[stage].params:
        key = "data" if key.startswith("data.") else key
        if key not in keys:
            keys.append(key)
    return tuple(keys)
