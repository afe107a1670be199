"""`dynpath` command line: one sub-command per DAG step plus tools (localize, bench, pipeline).

Each command parses arguments, loads params.yaml, and calls one function of ``dynpath.steps`` (or
a tool module); no logic lives here. Heavy modules are imported inside the handlers so that
``dynpath --help`` stays fast.

One error path (docs/reliability.md, "Bad input"): every failure a user can act on
(:class:`DynpathError`, ConfigError, an OSError or a decoding error at the boundary) is printed
as ONE line ``dynpath <cmd>: error: <file/key/argument>: <what to do>`` with exit code 2 and no
traceback (``-v`` adds it); Ctrl-C exits 130 (checkpoints are written atomically, so the last one
on disk is complete; ``train`` first finishes its step and checkpoints it). The mapping from
exception to exit code and line is :func:`dynpath.errors.error_message`, shared with the Kubeflow
pods (:func:`dynpath.kfp.runtime.component_errors`). Every output a
command writes is locked first (:func:`output_lock`): a second writer fails at once naming the
PID that holds it, before any work.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from dynpath.config import (
    DATASETS,
    DEFAULT_PARAMS,
    MAX_TOPK,
    Config,
    ConfigError,
    check_device,
    load_config,
)
from dynpath.errors import DynpathError, UsageError, error_message
from dynpath.io import output_lock

log = logging.getLogger("dynpath")

Handler = Callable[[argparse.Namespace], Any]


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


def _params(args: argparse.Namespace) -> Path:
    """The params file: ``--params`` when given, else ./params.yaml."""
    return Path(args.params)


def _cfg(args: argparse.Namespace) -> Config:
    return load_config(_params(args))


@contextlib.contextmanager
def _writing(*outputs: Path) -> Iterator[None]:
    """Lock every output of a command (in a fixed order, so two commands never deadlock)."""
    with contextlib.ExitStack() as stack:
        for out in sorted({os.path.abspath(o) for o in outputs}):
            stack.enter_context(output_lock(out))
        yield


def _output_file(path: Path, flag: str) -> Path:
    """An output that must be a file: refuse an existing directory before any work is done."""
    if path.is_dir():
        raise UsageError(f"{flag} {path}: is a directory; give the path of the file to write")
    return path


def _render(result: Any) -> str | None:
    """The JSON printed on stdout; strict JSON (no NaN/Infinity, which no parser accepts)."""
    if result is None:
        return None
    try:
        return json.dumps(result, indent=2, default=str, allow_nan=False)
    except ValueError:
        raise DynpathError(
            "the result holds a non-finite number (NaN or Infinity) and cannot be printed as "
            "JSON; check the inputs (features, duration) for out-of-range values"
        ) from None


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


# --------------------------------------------------------------------------- step handlers


def _synth(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import synth

    out = Path(args.out or cfg.data.root)
    with _writing(out):
        return synth.run(cfg, out_dir=out)


def _data(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import data

    with _writing(Path(cfg.data.root)):
        return data.run(cfg, root=Path(cfg.data.root))


def _extract(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import extract

    output = _output_file(Path(args.output or cfg.data.features), "--output")
    weights = args.weights if args.weights is not None else cfg.extract.weights
    if weights is not None and Path(weights).is_dir():
        raise UsageError(f"--weights {weights}: is a directory; give the checkpoint file")
    check_device(cfg.extract.device, "extract.device")
    with _writing(output):
        return extract.run(
            cfg,
            videos=Path(args.videos or cfg.data.videos),
            output=output,
            backbone=args.backbone or cfg.extract.backbone,
            weights=weights,
        )


def _vocab(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import vocab

    with _writing(Path(args.out)):
        return vocab.run(cfg, out_dir=Path(args.out))


def _train(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import train

    out_dir = Path(args.out) / args.variant
    check_device(cfg.train.device, "train.device")
    with _writing(out_dir):
        return train.run(
            cfg,
            variant=args.variant,
            vocab_dir=Path(args.vocab),
            out_dir=out_dir,
            resume=args.resume,
            seed=args.seed,
        )


def _evaluate(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import evaluate

    out_dir = Path(args.out) / args.variant
    check_device(cfg.train.device, "train.device")
    with _writing(out_dir):
        return evaluate.run(
            cfg,
            variant=args.variant,
            vocab_dir=Path(args.vocab),
            model_dir=Path(args.models) / args.variant,
            out_dir=out_dir,
            split=args.split,
            seed=args.seed,
        )


def _report(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    if args.summary:
        from dynpath.report.summary import print_summary

        return print_summary(Path(args.out))
    from dynpath.steps import report

    with _writing(Path(args.out)):
        return report.run(
            cfg, eval_dir=Path(args.evals), models_dir=Path(args.models), out_dir=Path(args.out)
        )


def _promote(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import promote

    return promote.run(cfg, version=args.version, variant=args.variant)


def _data_stats(args: argparse.Namespace) -> Any:
    from dynpath.data.annotations import data_stats

    report = data_stats(args.dataset, Path(args.root))
    if args.json:
        return report
    from dynpath.data.annotations import format_report

    print(format_report(report))
    return None


def _params_or_defaults(args: argparse.Namespace) -> Config:
    """An explicit --params must exist; without one, ./params.yaml when present, else defaults."""
    explicit = bool(getattr(args, "params_explicit", False))
    return _cfg(args) if explicit or DEFAULT_PARAMS.exists() else Config()


def _score(args: argparse.Namespace) -> Any:
    from dynpath.steps import score

    cfg = _params_or_defaults(args)
    return score.run(
        cfg,
        predictions=Path(args.predictions),
        dataset=args.dataset or cfg.data.dataset,
        root=Path(args.root or cfg.data.root),
        split=args.split,
        allow_missing=args.allow_missing,
    )


def _features(args: argparse.Namespace) -> Any:
    from dynpath.steps import features

    cfg = _params_or_defaults(args)
    output = _output_file(Path(args.output or cfg.data.features), "--output")
    with _writing(output):
        return features.run_import(
            cfg,
            src=Path(args.source),
            output=output,
            dataset=args.dataset or cfg.data.dataset,
            root=Path(args.root or cfg.data.root),
            backbone=args.backbone,
            pretrained=args.pretrained,
        )


def _model_info(args: argparse.Namespace) -> Any:
    from dynpath.model.registry import model_info

    # an explicit --params must exist; without one, ./params.yaml when present, else defaults
    explicit = bool(getattr(args, "params_explicit", False))
    info = model_info(_cfg(args) if explicit or DEFAULT_PARAMS.exists() else Config())
    if args.json:
        return info
    for row in info:
        print(f"{row['variant']:<22} {row['parameters']:>12,d}")
    return None


def _read_queries(path: str) -> list[str]:
    """``--queries FILE``: one query per line (UTF-8); blank lines are skipped."""
    from dynpath.errors import DataError

    file = Path(path)
    if file.is_dir():
        raise DataError(f"--queries {file}: is a directory; give a text file, one query a line")
    if not file.is_file():
        raise DataError(f"--queries {file}: file not found")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"--queries {file}: not UTF-8 text (byte {err.start}); re-save it as UTF-8"
        ) from None
    queries = [line.strip() for line in text.splitlines() if line.strip()]
    if not queries:
        raise DataError(f"--queries {file}: no query in the file (only empty lines)")
    return queries


def _localize(args: argparse.Namespace) -> Any:
    if args.video is not None and args.features is not None:
        raise UsageError("--video and --features: give one source of features, not both")
    if args.video is not None and args.duration is not None:
        raise UsageError(
            "--video and --duration: a video's duration comes from the file; --duration is for "
            "--features stores without durations"
        )
    if args.video_id is not None and args.features is None:
        raise UsageError("--video-id needs --features (the HDF5 store it names a video of)")
    queries = list(args.query or [])
    if args.queries is not None:
        queries += _read_queries(args.queries)
    if not queries:
        raise UsageError("give --query TEXT (repeatable) or --queries FILE (one query a line)")

    from dynpath.inference.localizer import Localizer, format_spans

    loc = Localizer.load(args.model, device=args.device)
    results = loc.predict_queries(
        queries,
        video=args.video,
        features=args.features,
        video_id=args.video_id,
        topk=args.topk,
        duration=args.duration,
    )
    several = len(results) > 1 or args.queries is not None
    if args.json:
        return results if several else results[0]
    print("\n\n".join(format_spans(r) for r in results))
    return None


def _demo(args: argparse.Namespace) -> Any:
    from dynpath import demo

    params = Path(args.params)
    cfg = load_config(params) if params.is_file() else None  # uploads work without a project
    demo.serve(
        model=args.model,
        host=args.host,
        port=args.port,
        cfg=cfg,
        videos_dir=Path(args.videos) if args.videos else None,
        device=args.device,
    )
    return None


def _bench(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.bench import DEFAULT_SECTIONS, parse_sections, run_bench

    output = _output_file(Path(args.output), "--output")
    try:
        sections = parse_sections(args.sections) if args.sections else DEFAULT_SECTIONS
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.charades_scale is not None and "charades" not in sections:
        sections = (*sections, "charades")
    if args.charades_scale is not None and not 0 < args.charades_scale <= 1:
        raise ConfigError(f"--charades-scale: {args.charades_scale} is not in (0, 1]")
    with _writing(output):
        return run_bench(
            cfg,
            output=output,
            quick=args.quick,
            device=args.device,
            sections=sections,
            charades_scale=args.charades_scale or 0.02,
        )


def _profile(args: argparse.Namespace) -> Any:
    from dynpath.profiles import use_profile

    params = _output_file(_params(args), "--params")
    with _writing(params):
        path = use_profile(args.name, params)
    print(f"{path}: now the {args.name!r} profile")
    return None


def _study(args: argparse.Namespace) -> Any:
    from dynpath.steps import study

    return study.run(Path(args.dir), args.profile)


def _pipeline(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.kfp import compile as kfp_pipeline

    if args.action == "compile":
        output = _output_file(Path(args.output), "--output")
        with _writing(output):
            return {"output": str(kfp_pipeline.compile_pipeline(cfg, output))}
    if args.action == "submit":
        return kfp_pipeline.submit(cfg, host=args.host, package=Path(args.output))
    with _writing(Path(args.workdir)):
        return kfp_pipeline.run_local(cfg, workdir=Path(args.workdir))


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynpath", description=__doc__.splitlines()[0])
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

    p = add("synth", _synth, "generate the synthetic benchmark (videos, annotations, GloVe file)")
    p.add_argument("--out", help="output directory (default: data.root)")

    add("data", _data, "generate the synthetic benchmark, or check a real dataset's annotations")

    p = add("extract", _extract, "extract clip features from videos into an HDF5 store")
    p.add_argument("--videos", help="directory of videos (default: data.videos)")
    p.add_argument("--output", help="HDF5 feature store (default: data.features)")
    p.add_argument("--backbone", help="registered backbone: i3d | c3d | ...")
    p.add_argument("--weights", help="backbone checkpoint (state_dict); none = random init")

    p = add("vocab", _vocab, "build the vocabulary and embedding matrix from the training split")
    p.add_argument("--out", default="outputs/vocab")

    p = add("train", _train, "train one variant")
    p.add_argument("--variant", required=True)
    p.add_argument("--vocab", default="outputs/vocab")
    p.add_argument("--out", default="outputs/models")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--seed", type=int, help="train only this one of params.yaml's seeds")

    p = add("evaluate", _evaluate, "evaluate one trained variant")
    p.add_argument("--variant", required=True)
    p.add_argument("--vocab", default="outputs/vocab")
    p.add_argument("--models", default="outputs/models")
    p.add_argument("--out", default="outputs/eval")
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--seed", type=int, help="evaluate only this one of params.yaml's seeds")

    p = add("report", _report, "build the ablation report (HTML + Markdown + summary.json)")
    p.add_argument("--evals", default="outputs/eval")
    p.add_argument("--models", default="outputs/models")
    p.add_argument("--out", default="reports")
    p.add_argument("--summary", action="store_true", help="print the existing report's table")

    p = add("promote", _promote, "move alias 'champion' to a challenger that beats it")
    p.add_argument("--version", help="model version (default: the current challenger)")
    p.add_argument(
        "--variant",
        help="whose registered model: dynamic (default, the paper's model: dynpath-<dataset>) "
        "or an ablation variant (dynpath-<dataset>-<variant>)",
    )

    p = add("data-stats", _data_stats, "data report of an annotation set")
    p.add_argument(
        "--dataset",
        required=True,
        choices=DATASETS,
    )
    p.add_argument("--root", required=True)
    p.add_argument("--json", action="store_true")

    p = add(
        "features",
        _features,
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
        _score,
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

    p = add("model-info", _model_info, "parameter count of every registered variant")
    p.add_argument("--json", action="store_true")

    p = add("localize", _localize, "localize a query in a video with a trained model")
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

    p = add("demo", _demo, "serve a local web page to try a model on a video and a sentence")
    p.add_argument(
        "--model",
        default="outputs/models/dynamic",
        help="initial model: a training directory, models:/NAME@ALIAS or runs:/ID/model",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1: this machine)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--videos", help="directory of videos to list (default: data.videos)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")

    p = add("bench", _bench, "benchmark suite (writes a JSON and prints a table)")
    p.add_argument("--output", default="outputs/bench.json")
    p.add_argument("--quick", action="store_true", help="fewer repeats, smaller shapes")
    p.add_argument("--device", type=_device, default="auto")
    p.add_argument(
        "--sections",
        default=None,
        help="comma-separated: paper,data,inference,mslstm,extraction,dvc,charades or 'all' "
        "(default: all but charades)",
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
        _profile,
        "switch params.yaml to a profile (synthetic, tiny, charades_sta, tacos)",
    )
    p.add_argument("name")

    p = add(
        "study",
        _study,
        "run (or resume) a profile's whole DAG in a directory of its own (docs/study.md)",
    )
    p.add_argument("--profile", default="study", help="profile of a new study (default: study)")
    p.add_argument("--dir", default="study", help="the study's directory (default: ./study)")

    p = add("pipeline", _pipeline, "Kubeflow pipeline: compile, submit, or run locally")
    p.add_argument("action", choices=["compile", "submit", "run-local"])
    p.add_argument("--output", default="outputs/pipeline.yaml")
    p.add_argument("--host", help="Kubeflow Pipelines API URL (submit)")
    p.add_argument("--workdir", default="outputs/kfp-local")
    return parser


# Arguments that name a local file or directory (dest -> whether it is written). ``--model``
# is not one: it takes models:/, runs:/ and other MLflow URIs.
_LOCAL_PATHS = {
    "params": False,
    "videos": False,
    "vocab": False,
    "models": False,
    "evals": False,
    "root": False,
    "features": False,
    "weights": False,
    "video": False,
    "dir": True,
    "out": True,
    "output": True,
    "workdir": True,
}


def _check_local_paths(args: argparse.Namespace) -> None:
    """Refuse a URI (``s3://...``) given for a local path, naming the flag, before any work:
    ``Path("s3://b/x.h5")`` would silently be the local file ``s3:/b/x.h5``."""
    from dynpath.io import refuse_uri

    for dest, output in _LOCAL_PATHS.items():
        value = getattr(args, dest, None)
        if isinstance(value, str):
            flag = "--params" if dest == "params" else f"--{dest.replace('_', '-')}"
            refuse_uri(value, flag, output=output)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse printed usage + "dynpath <cmd>: error: ..." (or --help)
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        _check_local_paths(args)
        text = _render(args.handler(args))
    except (Exception, KeyboardInterrupt) as err:
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        code, message = error_message(err, args.command)
        print(f"dynpath {args.command}: error: {message}", file=sys.stderr)
        return code
    if text is not None and os.environ.get("RANK", "0") == "0":  # under torchrun: rank 0 only
        try:
            print(text, flush=True)
        except BrokenPipeError:  # the reader (`| head`) closed the pipe: no traceback at exit
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
