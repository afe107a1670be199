"""The handlers of the ``dynpath`` subcommands (:mod:`dynpath.cli.parser` binds one to each):
``cmd_<name>(args)`` loads params.yaml, locks its outputs and calls one function of
``dynpath.steps`` (or a tool module); the result is printed as JSON by :func:`dynpath.cli.main`.
Heavy modules are imported inside the handlers so that ``dynpath --help`` stays fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dynpath.config import DEFAULT_PARAMS, Config, ConfigError, check_device, load_config
from dynpath.errors import UsageError
from dynpath.io import output_lock


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


def cmd_synth(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import synth

    out = Path(args.out or cfg.data.root)
    with _writing(out):
        return synth.run(cfg, out_dir=out)


def cmd_data(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import data

    with _writing(Path(cfg.data.root)):
        return data.run(cfg, root=Path(cfg.data.root))


def cmd_extract(args: argparse.Namespace) -> Any:
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


def cmd_vocab(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import vocab

    with _writing(Path(args.out)):
        return vocab.run(cfg, out_dir=Path(args.out))


def cmd_train(args: argparse.Namespace) -> Any:
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


def cmd_evaluate(args: argparse.Namespace) -> Any:
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


def cmd_report(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    if args.summary:
        from dynpath.report.summary import print_summary

        return print_summary(Path(args.out))
    from dynpath.steps import report

    with _writing(Path(args.out)):
        return report.run(
            cfg, eval_dir=Path(args.evals), models_dir=Path(args.models), out_dir=Path(args.out)
        )


def cmd_promote(args: argparse.Namespace) -> Any:
    cfg = _cfg(args)
    from dynpath.steps import promote

    return promote.run(cfg, version=args.version, variant=args.variant)


def cmd_data_stats(args: argparse.Namespace) -> Any:
    from dynpath.data.annotation_stats import data_stats

    report = data_stats(args.dataset, Path(args.root))
    if args.json:
        return report
    from dynpath.data.annotation_stats import format_report

    print(format_report(report))
    return None


def _params_or_defaults(args: argparse.Namespace) -> Config:
    """An explicit --params must exist; without one, ./params.yaml when present, else defaults."""
    explicit = bool(getattr(args, "params_explicit", False))
    return _cfg(args) if explicit or DEFAULT_PARAMS.exists() else Config()


def cmd_score(args: argparse.Namespace) -> Any:
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


def cmd_features(args: argparse.Namespace) -> Any:
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


def cmd_model_info(args: argparse.Namespace) -> Any:
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


def cmd_localize(args: argparse.Namespace) -> Any:
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


def cmd_demo(args: argparse.Namespace) -> Any:
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


def cmd_bench(args: argparse.Namespace) -> Any:
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
            localize_model=args.localize_model,
        )


def cmd_profile(args: argparse.Namespace) -> Any:
    from dynpath.profiles import use_profile

    params = _output_file(_params(args), "--params")
    with _writing(params):
        path = use_profile(args.name, params)
    print(f"{path}: now the {args.name!r} profile")
    return None


def cmd_study(args: argparse.Namespace) -> Any:
    from dynpath.steps import study

    return study.run(Path(args.dir), args.profile)


def cmd_pipeline(args: argparse.Namespace) -> Any:
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
