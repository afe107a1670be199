"""`dynpath` command line: one sub-command per DAG step plus tools (localize, bench, pipeline).

Each command parses arguments, loads params.yaml, and calls one function of ``dynpath.steps`` (or
a tool module); no logic lives here. Heavy modules are imported inside the handlers so that
``dynpath --help`` stays fast. Errors a user can act on (:class:`DynpathError`, ConfigError) are
printed on one line with a non-zero exit instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dynpath.config import DEFAULT_PARAMS, Config, ConfigError, load_config
from dynpath.errors import DynpathError

log = logging.getLogger("dynpath")

Handler = Callable[[argparse.Namespace], Any]


def _cfg(args: argparse.Namespace) -> Config:
    return load_config(args.params)


def _print(result: Any, as_json: bool = True) -> None:
    if result is None:
        return
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(result)


# --------------------------------------------------------------------------- step handlers


def _synth(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import synth

    return synth.run(cfg, out_dir=Path(args.out or cfg.data.root))


def _data(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import data

    return data.run(cfg, root=Path(cfg.data.root))


def _extract(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import extract

    return extract.run(
        cfg,
        videos=Path(args.videos or cfg.data.videos),
        output=Path(args.output or cfg.data.features),
        backbone=args.backbone or cfg.extract.backbone,
        weights=args.weights if args.weights is not None else cfg.extract.weights,
    )


def _vocab(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import vocab

    return vocab.run(cfg, out_dir=Path(args.out))


def _train(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import train

    return train.run(
        cfg,
        variant=args.variant,
        vocab_dir=Path(args.vocab),
        out_dir=Path(args.out) / args.variant,
        resume=args.resume,
        seed=args.seed,
    )


def _evaluate(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import evaluate

    return evaluate.run(
        cfg,
        variant=args.variant,
        vocab_dir=Path(args.vocab),
        model_dir=Path(args.models) / args.variant,
        out_dir=Path(args.out) / args.variant,
        split=args.split,
        seed=args.seed,
    )


def _report(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import report

    if args.summary:
        return report.print_summary(Path(args.out))
    return report.run(
        cfg, eval_dir=Path(args.evals), models_dir=Path(args.models), out_dir=Path(args.out)
    )


def _promote(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import promote

    return promote.run(cfg, version=args.version)


def _data_stats(args: argparse.Namespace) -> Any:
    from dynpath.data.annotations import data_stats

    report = data_stats(args.dataset, Path(args.root))
    if args.json:
        return report
    from dynpath.data.annotations import format_report

    print(format_report(report))
    return None


def _model_info(args: argparse.Namespace) -> Any:
    from dynpath.model.registry import model_info

    info = model_info(load_config(args.params) if Path(args.params).exists() else Config())
    if args.json:
        return info
    for row in info:
        print(f"{row['variant']:<22} {row['parameters']:>12,d}")
    return None


def _localize(args: argparse.Namespace) -> Any:
    from dynpath.tracking.localizer import Localizer, format_spans

    loc = Localizer.load(args.model, device=args.device)
    result = loc.predict(
        video=args.video,
        query=args.query,
        features=args.features,
        video_id=args.video_id,
        topk=args.topk,
        duration=args.duration,
    )
    if args.json:
        return result
    print(format_spans(result))
    return None


def _bench(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.bench import DEFAULT_SECTIONS, parse_sections, run_bench

    try:
        sections = parse_sections(args.sections) if args.sections else DEFAULT_SECTIONS
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.charades_scale is not None and "charades" not in sections:
        sections = (*sections, "charades")
    if args.charades_scale is not None and not 0 < args.charades_scale <= 1:
        raise ConfigError(f"--charades-scale: {args.charades_scale} is not in (0, 1]")
    return run_bench(
        cfg,
        output=Path(args.output),
        quick=args.quick,
        device=args.device,
        sections=sections,
        charades_scale=args.charades_scale or 0.02,
    )


def _profile(args: argparse.Namespace) -> Any:
    from dynpath.profiles import use_profile

    path = use_profile(args.name, Path(args.params))
    print(f"{path}: now the {args.name!r} profile")
    return None


def _pipeline(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath import kfp_pipeline

    if args.action == "compile":
        return {"output": str(kfp_pipeline.compile_pipeline(cfg, Path(args.output)))}
    if args.action == "submit":
        return kfp_pipeline.submit(cfg, host=args.host, package=Path(args.output))
    return kfp_pipeline.run_local(cfg, workdir=Path(args.workdir))


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dynpath", description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(DEFAULT_PARAMS), help="params file (params.yaml)")
    parser.add_argument("-v", "--verbose", action="store_true")
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

    p = add("data-stats", _data_stats, "data report of an annotation set")
    p.add_argument(
        "--dataset", required=True, choices=["charades_sta", "tacos", "jsonl", "synthetic"]
    )
    p.add_argument("--root", required=True)
    p.add_argument("--json", action="store_true")

    p = add("model-info", _model_info, "parameter count of every registered variant")
    p.add_argument("--json", action="store_true")

    p = add("localize", _localize, "localize a query in a video with a trained model")
    p.add_argument(
        "--model", required=True, help="models:/NAME@ALIAS, runs:/ID/model or a directory"
    )
    p.add_argument("--query", required=True)
    p.add_argument("--video", help="video file (features extracted on the fly)")
    p.add_argument("--features", help="HDF5 feature store instead of a video")
    p.add_argument("--video-id", help="video id in --features")
    p.add_argument("--duration", type=float, help="seconds (feature stores without durations)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--json", action="store_true")

    p = add("bench", _bench, "benchmark suite (writes a JSON and prints a table)")
    p.add_argument("--output", default="outputs/bench.json")
    p.add_argument("--quick", action="store_true", help="fewer repeats, smaller shapes")
    p.add_argument("--device", default="auto")
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

    p = add("pipeline", _pipeline, "Kubeflow pipeline: compile, submit, or run locally")
    p.add_argument("action", choices=["compile", "submit", "run-local"])
    p.add_argument("--output", default="outputs/pipeline.yaml")
    p.add_argument("--host", help="Kubeflow Pipelines API URL (submit)")
    p.add_argument("--workdir", default="outputs/kfp-local")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        result = args.handler(args)
    except (DynpathError, ConfigError) as err:
        print(f"dynpath {args.command}: error: {err}", file=sys.stderr)
        return 2
    if os.environ.get("RANK", "0") == "0":  # under torchrun only rank 0 reports
        _print(result, as_json=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
