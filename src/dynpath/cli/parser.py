"""The ``dynpath`` argument parser: the global options, then one builder per group of
subcommands (the DAG's steps, the data tools, the model tools, the project tools), each binding
its subcommands to their handlers in :mod:`dynpath.cli.commands`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any

from dynpath.cli import commands
from dynpath.config import DATASETS, DEFAULT_PARAMS, MAX_TOPK, ConfigError, check_device

#: The parser's description (the first line of the CLI's documentation).
DESCRIPTION = (
    "`dynpath` command line: one sub-command per DAG step plus tools (localize, bench, pipeline)."
)

Handler = Callable[[argparse.Namespace], Any]
#: ``add(name, handler, help)``: a subcommand's parser, bound to its handler.
AddCommand = Callable[[str, Handler, str], argparse.ArgumentParser]


class _ExplicitParams(argparse.Action):
    """``--params``: records that the user named the file (``args.params_explicit``), so that a
    command that can run on defaults (model-info) still fails when an explicit file is missing.
    ``args.params`` stays a string path either way."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        namespace.params_explicit = True


# --------------------------------------------------------------------------- argument types


def _finite_positive(text: str) -> float:
    """argparse type: a finite number > 0 (``inf``, ``nan``, ``1e400`` are refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _topk(text: str) -> int:
    """argparse type: ``--topk``, an integer in 1..MAX_TOPK."""
    value = _positive_int(text)
    if value > MAX_TOPK:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_TOPK}, got {value}")
    return value


def _device(text: str) -> str:
    """argparse type: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (syntax only; availability is
    checked where the device is used)."""
    try:
        return check_device(text, "--device", available=False)
    except ConfigError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    """The whole parser: the global options (``--params``, ``-v``), then the subcommands by
    group, in the order ``dynpath --help`` lists them."""
    parser = argparse.ArgumentParser(prog="dynpath", description=DESCRIPTION)
    parser.add_argument(
        "--params",
        default=str(DEFAULT_PARAMS),
        action=_ExplicitParams,
        help="params file (default: ./params.yaml)",
    )
    parser.set_defaults(params_explicit=False)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="debug log; tracebacks with errors"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    for group in (_add_step_commands, _add_data_commands, _add_model_commands, _add_tool_commands):
        group(add)
    return parser


def _add_step_commands(add: AddCommand) -> None:
    """The DAG's steps, in the order they run (dvc.yaml's stages, plus ``synth``)."""
    p = add(
        "synth",
        commands.cmd_synth,
        "generate the synthetic benchmark (videos, annotations, GloVe file)",
    )
    p.add_argument("--out", help="output directory (default: data.root)")

    add(
        "data",
        commands.cmd_data,
        "generate the synthetic benchmark, or check a real dataset's annotations",
    )

    p = add("extract", commands.cmd_extract, "extract clip features from videos into an HDF5 store")
    p.add_argument("--videos", help="directory of videos (default: data.videos)")
    p.add_argument("--output", help="HDF5 feature store (default: data.features)")
    p.add_argument("--backbone", help="registered backbone: i3d | c3d | ...")
    p.add_argument("--weights", help="backbone checkpoint (state_dict); none = random init")

    p = add(
        "vocab",
        commands.cmd_vocab,
        "build the vocabulary and embedding matrix from the training split",
    )
    p.add_argument("--out", default="outputs/vocab")

    p = add("train", commands.cmd_train, "train one variant")
    p.add_argument("--variant", required=True)
    p.add_argument("--vocab", default="outputs/vocab")
    p.add_argument("--out", default="outputs/models")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--seed", type=int, help="train only this one of params.yaml's seeds")

    p = add("evaluate", commands.cmd_evaluate, "evaluate one trained variant")
    p.add_argument("--variant", required=True)
    p.add_argument("--vocab", default="outputs/vocab")
    p.add_argument("--models", default="outputs/models")
    p.add_argument("--out", default="outputs/eval")
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--seed", type=int, help="evaluate only this one of params.yaml's seeds")

    p = add(
        "report", commands.cmd_report, "build the ablation report (HTML + Markdown + summary.json)"
    )
    p.add_argument("--evals", default="outputs/eval")
    p.add_argument("--models", default="outputs/models")
    p.add_argument("--out", default="reports")
    p.add_argument("--summary", action="store_true", help="print the existing report's table")

    p = add("promote", commands.cmd_promote, "move alias 'champion' to a challenger that beats it")
    p.add_argument("--version", help="model version (default: the current challenger)")
    p.add_argument(
        "--variant",
        help="whose registered model: dynamic (default, the paper's model: dynpath-<dataset>) "
        "or an ablation variant (dynpath-<dataset>-<variant>)",
    )


def _add_data_commands(add: AddCommand) -> None:
    """The tools of annotations, features and predictions."""
    p = add("data-stats", commands.cmd_data_stats, "data report of an annotation set")
    p.add_argument(
        "--dataset",
        required=True,
        choices=DATASETS,
    )
    p.add_argument("--root", required=True)
    p.add_argument("--json", action="store_true")

    p = add(
        "features",
        commands.cmd_features,
        "import a downloaded feature release (folder of <vid>.npy, or an HDF5 file with one "
        "dataset per video) into the HDF5 store, checked against the annotations",
    )
    p.add_argument("action", choices=["import"])
    p.add_argument("source", help="folder of <video id>.npy files, or an HDF5 file")
    p.add_argument("--output", help="HDF5 feature store to write (default: data.features)")
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        help="annotation format whose videos must all be present (default: data.dataset)",
    )
    p.add_argument("--root", help="annotation directory (default: data.root)")
    p.add_argument("--backbone", help="backbone name to record (default: extract.backbone)")
    p.add_argument(
        "--pretrained",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="whether the features come from pretrained weights (default: yes)",
    )

    p = add(
        "score",
        commands.cmd_score,
        "R@1/R@5 at eval.iou_thresholds and mIoU of a predictions file (dynpath predictions.jsonl "
        "or Moment-DETR/Lighthouse pred_relevant_windows) against a dataset's annotations",
    )
    p.add_argument("predictions", help="the .jsonl file, one JSON object per query")
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        help="annotation format (default: data.dataset)",
    )
    p.add_argument("--root", help="annotation directory (default: data.root)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="score only the predicted queries when some annotated ones have no prediction",
    )


def _add_model_commands(add: AddCommand) -> None:
    """The tools of a trained model: its size, a query localized, the web demo."""
    p = add("model-info", commands.cmd_model_info, "parameter count of every registered variant")
    p.add_argument("--json", action="store_true")

    p = add("localize", commands.cmd_localize, "localize a query in a video with a trained model")
    p.add_argument(
        "--model", required=True, help="models:/NAME@ALIAS, runs:/ID/model or a directory"
    )
    p.add_argument(
        "--query",
        action="append",
        help="the sentence to localize; repeat it for several (the video is decoded once)",
    )
    p.add_argument("--queries", help="text file of queries, one a line (blank lines skipped)")
    p.add_argument("--video", help="video file (features extracted on the fly)")
    p.add_argument("--features", help="HDF5 feature store instead of a video")
    p.add_argument("--video-id", help="video id in --features")
    p.add_argument(
        "--duration", type=_finite_positive, help="seconds (feature stores without durations)"
    )
    p.add_argument("--topk", type=_topk, default=5, help=f"spans to return (1..{MAX_TOPK})")
    p.add_argument("--device", type=_device, default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument(
        "--json",
        action="store_true",
        help="JSON: one object, or a list of one object per query (several, or --queries)",
    )

    p = add(
        "demo", commands.cmd_demo, "serve a local web page to try a model on a video and a sentence"
    )
    p.add_argument(
        "--model",
        default="outputs/models/dynamic",
        help="initial model: a training directory, models:/NAME@ALIAS or runs:/ID/model",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--videos", help="directory of videos to list (default: data.videos)")
    p.add_argument("--device", type=_device, default="auto", help="auto | cpu | cuda[:N]")


def _add_tool_commands(add: AddCommand) -> None:
    """The project's tools: benchmark, profiles, the study, Kubeflow."""
    p = add("bench", commands.cmd_bench, "benchmark suite (writes a JSON and prints a table)")
    p.add_argument("--output", default="outputs/bench.json")
    p.add_argument("--quick", action="store_true", help="fewer repeats, smaller shapes")
    p.add_argument("--device", type=_device, default="auto")
    p.add_argument(
        "--sections",
        default=None,
        help="comma-separated: paper,data,inference,mslstm,extraction,dvc,default,localize,"
        "charades or 'all' (default: all but charades)",
    )
    p.add_argument(
        "--localize-model",
        default=None,
        help="the model the localize section loads: a training output directory or an MLflow "
        "URI such as models:/dynpath-synthetic@champion (default: outputs/models/dynamic)",
    )
    p.add_argument(
        "--charades-scale",
        type=float,
        default=None,
        help="run the Charades-STA-shaped workload, timing this fraction of an epoch per "
        "variant (0 < S <= 1; e.g. 0.02)",
    )

    p = add(
        "profile",
        commands.cmd_profile,
        "switch params.yaml to a profile (synthetic, tiny, charades_sta, tacos)",
    )
    p.add_argument("name")

    p = add(
        "study",
        commands.cmd_study,
        "run (or resume) a profile's whole DAG in a directory of its own (docs/study.md)",
    )
    p.add_argument("--profile", default="study", help="profile of a new study (default: study)")
    p.add_argument("--dir", default="study", help="the study's directory (default: ./study)")

    p = add("pipeline", commands.cmd_pipeline, "Kubeflow pipeline: compile, submit, or run locally")
    p.add_argument("action", choices=["compile", "submit", "run-local"])
    p.add_argument("--output", default="outputs/pipeline.yaml")
    p.add_argument("--host", help="Kubeflow Pipelines API URL (submit)")
    p.add_argument("--workdir", default="outputs/kfp-local")
