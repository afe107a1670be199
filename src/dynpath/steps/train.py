"""``train`` stage: one ablation variant -> ``outputs/models/<variant>/``.

Outputs (rank 0 only, each written atomically):

- ``best.pt``: the checkpoint with the best VALIDATION ``cfg.eval.selection_metric`` (the test
  split is never looked at during training); ``last.pt``: the latest state, for ``--resume``.
- ``history.json``: one flat record per epoch (``epoch``, ``step``, ``train_loss`` and its parts,
  ``val_<metric>``, ``lr``, ``seconds``, ``samples_per_s``); a JSON list, which DVC plots read.
- ``train_summary.json``: variant, arch, parameters, train_seconds, best_epoch, best_val,
  mlflow_run_id, pretrained_features (from the feature store), feature_dim, and how it ran.

MLflow (through :func:`~dynpath.tracking.tracker.start_tracking`, a no-op when disabled): the
resolved config as params, per-epoch curves named ``epoch_<history key>`` (``epoch_train_loss``,
``epoch_val_r1_iou0.5``, ...) with step = epoch, and at the end ``val_<metric>`` = the metrics of
the SELECTED checkpoint (so a run's ``val_r1_iou0.5``, which promotion compares, is that of the
model it registered), the history and summary as artifacts, and ``best.pt`` as a pyfunc model
registered as the new ``challenger``. ``--resume`` continues the same MLflow run.

Under ``torchrun`` the same entry point trains with DDP (see :mod:`dynpath.engine.trainer`);
``train.batch_size`` is the global batch.

Seeds (``cfg.seeds``, layout in :mod:`dynpath.seeds`): one stage trains the variant once per
training seed, the primary (``seeds[0]``) into ``out_dir`` and seed S into ``out_dir/seeds/S``
(``--seed S`` trains one of them). The training seed sets the model initialisation and the
sample order; the data (splits, validation carve, features) stay those of ``cfg.seed``, and so
does the checkpoint's config, which the localizer reads to rebuild the random-init backbone; the
seed trained is ``meta["train_seed"]`` and ``seed`` in train_summary.json. Only the primary run is
tracked in MLflow (and registered): the other seeds are for the report's spread and intervals,
not candidates for promotion.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Subset

from dynpath.data.annotations import load_splits, recorded_carve
from dynpath.data.batch import Batch
from dynpath.data.dataset import MomentDataset, collate
from dynpath.data.features import FeatureStore
from dynpath.data.vocab import load_vocab
from dynpath.engine.checkpoint import load_checkpoint, make_meta, seed_everything
from dynpath.engine.distributed import (
    DistInfo,
    amp_dtype,
    init_distributed,
    shutdown_distributed,
    train_device,
)
from dynpath.engine.evaluator import predict, score
from dynpath.engine.from_config import eval_loader, ranking_ks, train_options
from dynpath.engine.resume import LAST
from dynpath.engine.trainer import Trainer
from dynpath.errors import CheckpointError
from dynpath.io import write_json
from dynpath.model.output import ModelOutput
from dynpath.schemas import HISTORY, TRAIN_SUMMARY, TrainSummary
from dynpath.seeds import SEEDS_DIR, seed_dir, selected_seeds

if TYPE_CHECKING:
    from dynpath.config import Config
    from dynpath.tracking.protocol import RunTracker

log = logging.getLogger(__name__)

SUMMARY = TRAIN_SUMMARY  # the file name lives in dynpath.schemas


@contextlib.contextmanager
def _tracking(
    cfg: Config, variant: str, arch: str, main: bool, run_id: str | None
) -> Iterator[Any]:
    """The MLflow tracker on rank 0, a no-op tracker on the other ranks."""
    from dynpath.tracking.protocol import NullTracker
    from dynpath.tracking.tracker import start_tracking

    if not main:
        yield NullTracker()
        return
    with start_tracking(cfg, variant, arch, resume_run_id=run_id) as tracker:
        yield tracker


def _previous_run_id(out_dir: Path, variant: str, arch: str) -> str | None:
    if not (out_dir / LAST).exists():
        return None
    rid = load_checkpoint(out_dir / LAST, variant=variant, arch=arch)["meta"].get("mlflow_run_id")
    return str(rid) if rid else None


def run(
    cfg: Config,
    variant: str,
    vocab_dir: Path,
    out_dir: Path,
    resume: bool,
    seed: int | None = None,
) -> TrainSummary:
    """Train ``variant`` (a key of ``cfg.variants``) once per training seed (only ``seed`` when
    given); return the summary of the primary seed's run, or of ``seed``'s."""
    arch, vcfg = cfg.variant(variant)
    todo = selected_seeds(vcfg.seeds, seed)
    workers = min(vcfg.train.parallel_seeds, len(todo))
    info = init_distributed(vcfg.train.device)
    out_dir = Path(out_dir)
    try:
        if workers > 1 and not info.enabled:
            summary = _run_in_processes(
                vcfg, variant, arch, Path(vocab_dir), out_dir, resume, todo, workers
            )
        else:
            if vcfg.train.threads > 0:
                torch.set_num_threads(vcfg.train.threads)
            summaries = [
                _run(
                    vcfg,
                    variant,
                    arch,
                    Path(vocab_dir),
                    seed_dir(out_dir, vcfg.seeds, s),
                    resume,
                    info,
                    train_seed=s,
                    track=s == vcfg.seeds[0],
                )
                for s in todo
            ]
            summary = summaries[0]
        # a DVC output of the stage even with one seed; made after training so that a run that
        # fails on its inputs leaves nothing behind (not even empty directories)
        if info.is_main:
            (out_dir / SEEDS_DIR).mkdir(parents=True, exist_ok=True)
        return summary
    finally:
        shutdown_distributed(info)


def seed_threads(cfg: Config, workers: int) -> int:
    """Intra-op threads of each of ``workers`` concurrent seed runs: ``train.threads`` shared
    out (at least 1). With ``train.threads`` set, the count, and with it the float rounding,
    depends on params only; 0 shares out torch's default, which depends on the machine."""
    total = cfg.train.threads or torch.get_num_threads()
    return max(1, total // workers)


def _run_in_processes(
    cfg: Config,
    variant: str,
    arch: str,
    vocab_dir: Path,
    out_dir: Path,
    resume: bool,
    todo: Sequence[int],
    workers: int,
) -> TrainSummary:
    """Train the seeds ``todo``, ``workers`` at once (``train.parallel_seeds``): the first in
    this process, the others in fresh worker processes.

    Why: the models of a small profile use two cores poorly (measured on the synthetic default:
    two 1-thread runs side by side take ~1.3x the time of one 2-thread run, not 2x). Each run
    trains one seed exactly as a sequential run with ``seed_threads`` threads would; the primary
    seed still logs to MLflow. Workers are spawned, not forked: no torch/OpenMP state is
    inherited. The first seed trains here rather than in a worker because this process has
    already paid for its imports (~3 s of a worker's start): it opens MLflow and trains while
    the workers start.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = seed_threads(cfg, workers)
    log.info(
        "%s: training seeds %s, %d at a time, %d thread(s) each", variant, todo, workers, threads
    )
    # the variant's resolved config, pickled as is: a worker resolves nothing again
    args = [(cfg, variant, arch, vocab_dir, out_dir, resume, s, threads) for s in todo]
    ctx = multiprocessing.get_context("spawn")
    # round robin: this process trains args[0], args[workers], ...; worker k args[k::workers],
    # one after the other (runs of one variant take about the same time)
    chunks = [args[k::workers] for k in range(workers)]
    with ProcessPoolExecutor(workers - 1, mp_context=ctx, initializer=_init_worker) as pool:
        futures = [pool.submit(_seed_chunk, chunk) for chunk in chunks[1:]]
        threads_before = torch.get_num_threads()
        try:
            summary = _seed_chunk(chunks[0])[0]
        except BaseException:
            for f in futures:
                f.cancel()
            raise
        finally:
            torch.set_num_threads(threads_before)
        for f in futures:
            f.result()
    return summary


def _seed_chunk(
    chunk: Sequence[tuple[Config, str, str, Path, Path, bool, int, int]],
) -> list[TrainSummary]:
    return [_seed_worker(a) for a in chunk]


def _init_worker() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def _seed_worker(
    args: tuple[Config, str, str, Path, Path, bool, int, int],
) -> TrainSummary:
    """One seed's run in a worker process (module-level, so that it pickles)."""
    cfg, variant, arch, vocab_dir, out_dir, resume, train_seed, threads = args
    torch.set_num_threads(threads)
    return _run(
        cfg,
        variant,
        arch,
        vocab_dir,
        seed_dir(out_dir, cfg.seeds, train_seed),
        resume,
        DistInfo(),
        train_seed=train_seed,
        track=train_seed == cfg.seeds[0],
    )


def _check_resumed_seed(out_dir: Path, variant: str, arch: str, train_seed: int) -> None:
    """Refuse to resume a run of another training seed (the primary's seed can change in
    params.yaml while its directory stays the same)."""
    if not (out_dir / LAST).exists():
        return
    meta = load_checkpoint(out_dir / LAST, variant=variant, arch=arch)["meta"]
    theirs = meta.get("train_seed", (meta.get("config") or {}).get("seed"))
    if theirs is not None and int(theirs) != train_seed:
        raise CheckpointError(
            f"{out_dir / LAST}: trained with seed {theirs}, not {train_seed}; resuming would not "
            "reproduce the run: start afresh without --resume"
        )


@dataclass
class _TrainData:
    """What one training run reads: the splits, the vocabulary, the feature store's facts and
    the two datasets."""

    splits: dict[str, list[Any]]
    report: Any  # DataReport: its sources are logged as the run's dataset
    vocab: Any
    store: FeatureStore
    feature_dim: int
    attrs: dict[str, Any]
    pretrained: bool
    train_ds: MomentDataset
    val_ds: MomentDataset


def _load_data(cfg: Config, vocab_dir: Path, info: DistInfo) -> _TrainData:
    """The splits, vocabulary and features of ``cfg``; warns (rank 0) when the features come
    from a backbone with random weights."""
    splits, report = load_splits(cfg, recorded_carve(vocab_dir))
    vocab = load_vocab(vocab_dir)
    store = FeatureStore(cfg.data.features)
    attrs = store.attrs
    pretrained = bool(attrs.get("pretrained", False))
    if not pretrained and info.is_main:
        log.warning(
            "%s: features come from a randomly initialised %s (no pretrained weights); "
            "results are not comparable with the paper",
            store.path,
            attrs.get("backbone", "backbone"),
        )
    mql = cfg.vocab.max_query_len
    train_ds = MomentDataset(splits["train"], store, vocab, cfg.data.max_len, mql)
    val_ds = MomentDataset(splits["val"], store, vocab, cfg.data.max_len, mql)
    return _TrainData(splits, report, vocab, store, store.dim, attrs, pretrained, train_ds, val_ds)


def _build_model(
    cfg: Config, variant: str, arch: str, data: _TrainData, train_seed: int
) -> tuple[nn.Module, int, dict[str, Any]]:
    """The model of ``arch`` initialised from ``train_seed`` alone, its parameter count and the
    checkpoints' metadata."""
    from dynpath.model.registry import build_model, count_parameters

    seed_everything(train_seed)  # model initialisation depends on the training seed only
    assert data.vocab.embeddings is not None
    model = build_model(arch, cfg, data.vocab.embeddings, data.feature_dim)
    if cfg.model.normalize_features:
        # training videos only: validation and test must not leak into the preprocessing
        model.video.set_statistics(*data.store.statistics(m.vid for m in data.splits["train"]))
    n_params = count_parameters(model)
    meta = make_meta(
        variant,
        arch,
        cfg.model_dump(mode="json"),
        data.feature_dim,
        len(data.vocab),
        pretrained_features=data.pretrained,
        backbone=str(data.attrs.get("backbone", "")),
        train_seed=train_seed,
        vocab_sha256=data.vocab.fingerprint(),
        features_identity=data.store.identity(),
    )
    # per-pathway logits cost three head passes per pathway: only when the loss uses them
    model.pathway_heads = cfg.train.lambda_pathway > 0.0 or cfg.train.lambda_route > 0.0
    return model, n_params, meta


def _loader_fn(
    train_ds: MomentDataset, cfg: Config, device: torch.device
) -> Callable[[Sequence[int], int], Iterable[Batch]]:
    """The trainer's loader of the training moments at ``indices`` (its shuffled shard)."""
    pin = device.type == "cuda"

    def loader_fn(indices: Sequence[int], batch_size: int) -> Iterable[Batch]:
        return DataLoader(
            Subset(train_ds, list(indices)),
            batch_size=batch_size,
            shuffle=False,
            collate_fn=collate,
            num_workers=cfg.train.num_workers,
            pin_memory=pin,
        )

    return loader_fn


def _validate_fn(
    val_ds: MomentDataset, cfg: Config, device: torch.device
) -> Callable[[nn.Module], dict[str, float]]:
    """The validation the trainer selects checkpoints with: decode and score the validation
    moments, at the precision the trainer trains with."""
    val_loader = eval_loader(val_ds, cfg, device)
    ks = ranking_ks(cfg)
    amp = amp_dtype(cfg.train.amp, device)  # the dtype the Trainer trains with, too

    def validate(m: nn.Module) -> dict[str, float]:
        preds = predict(m, val_loader, device, cfg.eval.topk, cfg.eval.nms_iou, amp)
        return score(preds, ks, cfg.eval.iou_thresholds)

    return validate


def _log_start(
    trainer: Trainer, variant: str, arch: str, train_seed: int, n_params: int, data: _TrainData
) -> None:
    info, device = trainer.dist, trainer.device
    log.info(
        "training %s (%s), seed %d: %d parameters, %d train / %d val moments, global "
        "batch %d (%d per rank x %d), %d steps/epoch on %s%s",
        variant,
        arch,
        train_seed,
        n_params,
        len(data.train_ds),
        len(data.val_ds),
        trainer.local_batch * info.world_size,
        trainer.local_batch,
        info.world_size,
        trainer.steps_per_epoch,
        device,
        f", AMP {trainer.amp_dtype}" if trainer.amp_dtype else "",
    )


def _summary(
    cfg: Config,
    variant: str,
    arch: str,
    train_seed: int,
    n_params: int,
    data: _TrainData,
    trainer: Trainer,
    result: Any,
    run_id: str | None,
    t_start: float,
) -> TrainSummary:
    """train_summary.json (dynpath.schemas.TrainSummary) of a finished run."""
    world_size = trainer.dist.world_size
    return {
        "variant": variant,
        "arch": arch,
        "seed": train_seed,
        "parameters": n_params,
        "train_seconds": round(result.train_seconds, 3),
        "best_epoch": result.best_epoch,
        "best_val": result.best_val,
        "selection_metric": cfg.eval.selection_metric,
        "mlflow_run_id": run_id,
        "pretrained_features": data.pretrained,
        "feature_dim": data.feature_dim,
        "backbone": data.attrs.get("backbone"),
        "epochs": cfg.train.epochs,
        "epochs_trained": result.epochs_trained,
        "stopped_early": result.stopped_early,
        "patience": cfg.train.patience,
        "steps": result.global_step,
        "samples_per_s": _mean([e.get("samples_per_s") for e in result.history]),
        "device": str(trainer.device),
        "amp": str(trainer.amp_dtype) if trainer.amp_dtype else None,
        "gemm": trainer.gemm,
        "world_size": world_size,
        "global_batch": trainer.local_batch * world_size,
        "resumed_from": result.resumed_from,
        "wall_seconds": round(time.perf_counter() - t_start, 3),
    }


def _run(
    cfg: Config,
    variant: str,
    arch: str,
    vocab_dir: Path,
    out_dir: Path,
    resume: bool,
    info: DistInfo,
    train_seed: int,
    track: bool,
) -> TrainSummary:
    """One training run of ``variant`` with ``train_seed`` into ``out_dir``; MLflow if ``track``."""
    from dynpath.model.loss import localization_loss

    t_start = time.perf_counter()
    device = train_device(cfg.train.device, info)
    data = _load_data(cfg, vocab_dir, info)
    if resume:
        _check_resumed_seed(out_dir, variant, arch, train_seed)
    model, n_params, meta = _build_model(cfg, variant, arch, data, train_seed)

    def loss_fn(out: ModelOutput, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        return localization_loss(
            out,
            batch,
            cfg.train.lambda_bound,
            cfg.train.lambda_inner,
            cfg.train.lambda_pathway,
            cfg.train.lambda_route,
            cfg.train.lambda_balance,
            cfg.train.inner_average,
        )

    loader_fn = _loader_fn(data.train_ds, cfg, device)
    validate = _validate_fn(data.val_ds, cfg, device)

    tracked = info.is_main and track
    run_id = _previous_run_id(out_dir, variant, arch) if resume and tracked else None
    with _tracking(cfg, variant, arch, tracked, run_id) as tracker:
        meta["mlflow_run_id"] = tracker.run_id
        if info.is_main:
            _log_inputs(
                tracker,
                cfg,
                data.report.sources,
                data.splits,
                n_params,
                data.feature_dim,
                data.pretrained,
                info,
            )

        def on_epoch_end(entry: dict[str, Any]) -> None:
            step = int(entry["epoch"])
            tracker.log_metrics({f"epoch_{k}": v for k, v in entry.items() if k != "epoch"}, step)

        options = train_options(cfg, seed=train_seed)
        trainer = Trainer(
            model,
            loss_fn,
            len(data.train_ds),
            loader_fn,
            validate,
            options,
            out_dir,
            meta,
            device=device,
            dist=info,
            on_epoch_end=on_epoch_end,
        )
        if info.is_main:
            _log_start(trainer, variant, arch, train_seed, n_params, data)
        result = trainer.fit(resume=resume)
        summary = _summary(
            cfg, variant, arch, train_seed, n_params, data, trainer, result, tracker.run_id, t_start
        )
        if info.is_main:
            write_json(out_dir / SUMMARY, summary)
            _log_outputs(tracker, out_dir, vocab_dir, result.best_val, result.best_epoch, summary)
    return summary


def _mean(values: Sequence[Any]) -> float | None:
    nums = [float(v) for v in values if isinstance(v, int | float)]
    return round(sum(nums) / len(nums), 3) if nums else None


def _log_inputs(
    tracker: RunTracker,
    cfg: Config,
    sources: dict[str, str],
    splits: dict[str, Any],
    n_params: int,
    feature_dim: int,
    pretrained: bool,
    info: DistInfo,
) -> None:
    tracker.log_params(
        {
            "parameters": n_params,
            "feature_dim": feature_dim,
            "pretrained_features": pretrained,
            "world_size": info.world_size,
        }
    )
    files = [Path(cfg.data.features), *(Path(p) for p in sorted(set(sources.values())))]
    tracker.log_dataset(
        name=cfg.data.name,
        paths=[p for p in files if p.is_file()],
        context="train",
        profile={f"{k}_moments": len(v) for k, v in splits.items()},
    )


def _log_outputs(
    tracker: RunTracker,
    out_dir: Path,
    vocab_dir: Path,
    best_val: dict[str, float],
    best_epoch: int | None,
    summary: TrainSummary,
) -> None:
    final = {f"val_{k}": v for k, v in best_val.items()}
    final.update(
        best_epoch=float(best_epoch or 0),
        train_seconds=float(summary["train_seconds"]),
        parameters=float(summary["parameters"]),
    )
    tracker.log_metrics(final, step=best_epoch or 0)
    for name in (HISTORY, SUMMARY):
        tracker.log_artifact(out_dir / name)
    if tracker.enabled:
        # The checkpoints are already on disk: a model that cannot be logged must not turn a
        # finished training into a failed stage (the tracker itself never raises for MLflow).
        try:
            tracker.log_model(out_dir, vocab_dir)
            tracker.register_model()
        except Exception as err:
            log.warning("could not log the model to MLflow (training outputs are kept): %s", err)
