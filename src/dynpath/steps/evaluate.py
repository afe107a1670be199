"""``evaluate`` stage: a trained variant's ``best.pt`` on a split -> ``outputs/eval/<variant>/``.

Outputs (atomic): ``metrics.json``, ``predictions.jsonl`` and ``val_predictions.jsonl``.

metrics.json keys: ``variant``, ``arch``, ``split``, ``n``, ``r1_iou0.3`` ... ``r5_iou0.7``,
``miou`` (percent, in SECONDS against the clipped ground truth, top-k de-duplicated by temporal
NMS at ``eval.nms_iou``), ``shuffled`` (the same metric keys for the shuffled-video control, {}
when ``eval.shuffled_control`` is off), ``routes`` (per pathway: ``share`` = fraction of queries
in 0..1, ``n`` and the metric keys, null metrics for a route no query took; {} for variants
without a selector), ``latency_ms`` (``p50``/``p95`` of batch-1 forward + decoding over a seeded
sample of up to 50 queries, features already in memory), ``mlflow_run_id``, ``dataset``
(``format``/``name``: the report refuses evaluations of two datasets) and ``checkpoint``
(``path``/``sha256`` of the best.pt scored: the report refuses a file whose best.pt has since
been replaced, e.g. seeds left stale by an evaluate stopped between them).

The shuffled control (see :mod:`dynpath.engine.evaluator`): every query is scored against the
features of ANOTHER video of the split (a seeded derangement of the videos), resampled to the
query's own number of positions; ground truth, duration and masks are the query's own.

predictions.jsonl: one line per query ``{qid, vid, query, topk: [[start, end, score], ...]
(seconds, best first), route: "exploitation" | "exploration" | null, gt: [start, end],
duration}``.

val_predictions.jsonl: the same model on the VALIDATION split, same format (no shuffled control,
no latency, nothing logged): the report chooses its family-routing oracle on it, never on test.
Not written when ``split`` is "val" itself (predictions.jsonl is then the validation split).

MLflow: metrics go to the variant's TRAINING run (its id from ``train_summary.json``) as
``<split>_<metric>``, ``<split>_shuffled_<metric>`` and ``<split>_latency_p50_ms``/``p95``, with
metrics.json and predictions.jsonl as artifacts under ``eval/``.

Seeds (``cfg.seeds``, layout in :mod:`dynpath.seeds`): every training seed's ``best.pt`` is
evaluated, the primary's into ``out_dir`` (logged to its MLflow run) and seed S's into
``out_dir/seeds/S`` (not logged: those runs are not tracked); ``--seed S`` evaluates one. The
shuffled control's derangement and the latency sample use the data ``seed``, the same for all.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from dynpath.data.annotations import Splits, load_splits, recorded_carve
from dynpath.data.dataset import MomentDataset, collate
from dynpath.data.features import FeatureStore
from dynpath.data.vocab import Vocabulary, load_vocab
from dynpath.engine.checkpoint import check_features, check_vocab, load_checkpoint
from dynpath.engine.distributed import amp_dtype, train_device
from dynpath.engine.evaluator import (
    Prediction,
    derangement,
    measure_latency,
    predict,
    route_breakdown,
    score,
    swap_videos,
)
from dynpath.engine.from_config import eval_loader, ranking_ks
from dynpath.engine.resume import BEST
from dynpath.errors import CheckpointError, DataError
from dynpath.io import atomic_path, file_sha256, staged_dir, write_json
from dynpath.schemas import (
    METRICS,
    PREDICTIONS,
    TRAIN_SUMMARY,
    VAL_PREDICTIONS,
    CheckpointRef,
    EvalHeader,
    LatencyMs,
    eval_header,
    metrics_json,
    read_train_summary,
)
from dynpath.seeds import SEEDS_DIR, seed_dir, selected_seeds

if TYPE_CHECKING:
    from dynpath.config import Config

log = logging.getLogger(__name__)

LATENCY_QUERIES = 50


def run(
    cfg: Config,
    variant: str,
    vocab_dir: Path,
    model_dir: Path,
    out_dir: Path,
    split: str = "test",
    seed: int | None = None,
) -> dict[str, Any]:
    """Evaluate every training seed's ``best.pt`` of ``variant`` on ``split`` (only ``seed``'s
    when given); returns the primary seed's metrics.json dict, or ``seed``'s."""
    _arch, vcfg = cfg.variant(variant)
    todo = selected_seeds(vcfg.seeds, seed)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    inputs = _load_inputs(vcfg, Path(vocab_dir), split)  # once: every seed scores the same data
    results = [
        _evaluate(
            cfg,
            variant,
            inputs,
            seed_dir(model_dir, vcfg.seeds, s),
            seed_dir(out_dir, vcfg.seeds, s),
            split,
            track=s == vcfg.seeds[0],
        )
        for s in todo
    ]
    (out_dir / SEEDS_DIR).mkdir(parents=True, exist_ok=True)  # a DVC output even with one seed
    return results[0]


def _write_predictions(path: Path, preds: list[Prediction]) -> None:
    with atomic_path(path, suffix=".jsonl") as tmp, open(tmp, "w") as fh:
        for p in preds:
            fh.write(json.dumps(p.to_json()) + "\n")


def _checkpoint(
    vcfg: Config, variant: str, arch: str, model_dir: Path
) -> tuple[dict[str, Any], Config]:
    """``model_dir/best.pt`` and the config it was trained with. The architecture comes from the
    checkpoint's own config (it is what the weights fit); data paths and the evaluation protocol
    come from the current params."""
    from dynpath.config import Config as ConfigModel

    ckpt = load_checkpoint(model_dir / BEST, variant=variant, arch=arch)
    model_cfg = ConfigModel.model_validate(ckpt["meta"]["config"])
    if model_cfg.model != vcfg.model:
        log.warning(
            "%s: model settings differ from params.yaml; using the checkpoint's", model_dir / BEST
        )
    return ckpt, model_cfg


def _check_vocab(meta: dict[str, Any], vocab: Any, vocab_dir: Path, model_dir: Path) -> None:
    """The vocabulary is the one the checkpoint was trained with (size and word ids)."""
    check_vocab(meta, len(vocab), vocab.fingerprint(), vocab_dir, model_dir / BEST)


def _check_features(meta: dict[str, Any], store: FeatureStore, model_dir: Path) -> None:
    """The features have the width and the extraction the checkpoint was trained on."""
    if store.dim != int(meta["feature_dim"]):
        raise CheckpointError(
            f"{store.path}: features are {store.dim}-d but {model_dir / BEST} was trained on "
            f"{meta['feature_dim']}-d features"
        )
    check_features(meta, store.identity(), store.path, model_dir / BEST)


def _restore(
    arch: str,
    model_cfg: Config,
    ckpt: dict[str, Any],
    vocab: Any,
    store: FeatureStore,
    model_dir: Path,
    device: torch.device,
) -> torch.nn.Module:
    """The checkpoint's model on ``device``, in evaluation mode."""
    from dynpath.model.registry import build_model

    assert vocab.embeddings is not None
    model = build_model(arch, model_cfg, vocab.embeddings, store.dim)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{model_dir / BEST}: does not fit {arch!r}: {err}") from None
    model.to(device).eval()
    return model


def _shuffled_control(
    model: torch.nn.Module,
    loader: Any,
    ds: MomentDataset,
    moments: list[Any],
    vcfg: Config,
    split: str,
    device: torch.device,
    amp: torch.dtype | None,
) -> dict[str, float]:
    """The metrics with every query paired with another video's features (a video-blind model
    scores as well as on the real pairs); empty when off or with fewer than two videos."""
    n_videos = len({m.vid for m in moments})
    if vcfg.eval.shuffled_control and n_videos < 2:
        log.warning("shuffled-video control skipped: the %s split has %d video(s)", split, n_videos)
    if not vcfg.eval.shuffled_control or n_videos < 2:
        return {}
    partner = derangement([m.vid for m in moments], vcfg.seed)

    def partner_features(vid: str) -> torch.Tensor:
        return torch.from_numpy(np.array(ds.features(partner[vid])))

    k, nms = vcfg.eval.topk, vcfg.eval.nms_iou
    shuffled_preds = predict(
        model, loader, device, k, nms, amp, transform=lambda b: swap_videos(b, partner_features)
    )
    return score(shuffled_preds, ranking_ks(vcfg), vcfg.eval.iou_thresholds)


def _latency(
    model: torch.nn.Module,
    ds: MomentDataset,
    vcfg: Config,
    device: torch.device,
    amp: torch.dtype | None,
) -> LatencyMs:
    """Batch-1 latency (ms) over a seeded sample of the split's queries."""
    rng = np.random.default_rng(vcfg.seed)
    sample = sorted(rng.choice(len(ds), size=min(LATENCY_QUERIES, len(ds)), replace=False).tolist())
    single = DataLoader(Subset(ds, sample), batch_size=1, shuffle=False, collate_fn=collate)
    k, nms = vcfg.eval.topk, vcfg.eval.nms_iou
    latency = measure_latency(model, single, device, k, nms, amp)
    return {"p50": round(latency["p50"], 3), "p95": round(latency["p95"], 3)}


@dataclass(frozen=True)
class _Inputs:
    """What every training seed's evaluation reads: the splits, the vocabulary and its
    directory, and the feature store."""

    splits: Splits
    vocab: Vocabulary
    vocab_dir: Path
    store: FeatureStore


def _load_inputs(vcfg: Config, vocab_dir: Path, split: str) -> _Inputs:
    splits, _report = load_splits(vcfg, recorded_carve(vocab_dir))
    if split not in splits:
        raise DataError(f"split {split!r} not found; available: {sorted(splits)}")
    return _Inputs(splits, load_vocab(vocab_dir), vocab_dir, FeatureStore(vcfg.data.features))


def _evaluate(
    cfg: Config,
    variant: str,
    inputs: _Inputs,
    model_dir: Path,
    out_dir: Path,
    split: str,
    track: bool,
) -> dict[str, Any]:
    """Evaluate ``model_dir/best.pt`` of ``variant`` on ``split`` (MLflow if ``track``)."""
    from dynpath.model.registry import variant_metadata

    arch, vcfg = cfg.variant(variant)
    if vcfg.train.threads > 0:
        torch.set_num_threads(vcfg.train.threads)
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    splits, vocab, vocab_dir, store = inputs.splits, inputs.vocab, inputs.vocab_dir, inputs.store
    t0 = time.perf_counter()
    device = train_device(vcfg.train.device)
    # the checkpoint's identity, so the report can tell this file from a stale one
    scored: CheckpointRef = {
        "path": str(model_dir / BEST),
        "sha256": file_sha256(model_dir / BEST) if (model_dir / BEST).is_file() else "",
    }
    ckpt, model_cfg = _checkpoint(vcfg, variant, arch, model_dir)
    moments = splits[split]
    _check_vocab(ckpt["meta"], vocab, vocab_dir, model_dir)
    _check_features(ckpt["meta"], store, model_dir)
    model = _restore(arch, model_cfg, ckpt, vocab, store, model_dir, device)
    amp = amp_dtype(vcfg.train.amp, device)

    ds = MomentDataset(moments, store, vocab, vcfg.data.max_len, vcfg.vocab.max_query_len)
    ks, thresholds = ranking_ks(vcfg), vcfg.eval.iou_thresholds
    k, nms = vcfg.eval.topk, vcfg.eval.nms_iou
    loader = eval_loader(ds, vcfg, device)
    preds = predict(model, loader, device, k, nms, amp)
    metrics = score(preds, ks, thresholds)
    has_selector = bool(variant_metadata(arch)["has_selector"])
    routes = route_breakdown(preds, has_selector, ks, thresholds)
    shuffled = _shuffled_control(model, loader, ds, moments, vcfg, split, device, amp)

    run_id = _training_run_id(model_dir)
    header: EvalHeader = {
        "variant": variant,
        "arch": arch,
        "split": split,
        "n": len(preds),
        "shuffled": shuffled,
        "routes": routes,
        "latency_ms": _latency(model, ds, vcfg, device, amp),
        "mlflow_run_id": run_id,
        "dataset": {"format": vcfg.data.dataset, "name": vcfg.data.name},
        "checkpoint": scored,
    }
    result = metrics_json(header, metrics)

    # the seed's files are written into a staging directory and moved in together at the end:
    # a failure or a Ctrl-C part-way (a full disk, the validation pass) leaves the previous
    # results whole instead of new predictions beside old metrics, or an empty out_dir
    with staged_dir(out_dir) as stage:
        _write_predictions(stage / PREDICTIONS, preds)
        if split != "val":
            val_ds = MomentDataset(
                splits["val"], store, vocab, vcfg.data.max_len, vcfg.vocab.max_query_len
            )
            _write_val_predictions(model, val_ds, vcfg, device, amp, stage / VAL_PREDICTIONS)
        if track:
            result["mlflow_run_id"] = _log_to_mlflow(
                vcfg, variant, arch, run_id, split, result, stage
            )
        write_json(stage / METRICS, result)
    _log_scores(variant, split, len(preds), time.perf_counter() - t0, device, metrics, shuffled)
    return result


def _write_val_predictions(
    model: torch.nn.Module,
    val_ds: MomentDataset,
    vcfg: Config,
    device: torch.device,
    amp: torch.dtype | None,
    path: Path,
) -> None:
    """The validation split's predictions beside the test's (the single-module oracle chooses a
    module per family on them, never on test)."""
    k, nms = vcfg.eval.topk, vcfg.eval.nms_iou
    val_preds = predict(model, eval_loader(val_ds, vcfg, device), device, k, nms, amp)
    _write_predictions(path, val_preds)


def _log_scores(
    variant: str,
    split: str,
    n: int,
    seconds: float,
    device: torch.device,
    metrics: dict[str, float],
    shuffled: dict[str, float],
) -> None:
    """One log line of an evaluation: the headline scores and the shuffled-video control."""
    log.info(
        "%s on %s (%d queries, %.1fs on %s): R@1 IoU0.5 %.2f, mIoU %.2f; shuffled R@1 IoU0.5 %s",
        variant,
        split,
        n,
        seconds,
        device,
        metrics.get("r1_iou0.5", float("nan")),
        metrics["miou"],
        f"{shuffled['r1_iou0.5']:.2f}" if "r1_iou0.5" in shuffled else "-",
    )


def _training_run_id(model_dir: Path) -> str | None:
    try:
        rid = read_train_summary(model_dir / TRAIN_SUMMARY).get("mlflow_run_id")
    except (DataError, OSError):  # a damaged summary only costs the link to the training run
        return None
    return str(rid) if rid else None


def _log_to_mlflow(
    cfg: Config,
    variant: str,
    arch: str,
    run_id: str | None,
    split: str,
    result: dict[str, Any],
    out_dir: Path,
) -> str | None:
    """Log test metrics into the variant's training run (a new run if it had none);
    ``out_dir`` holds the files to log (the staging directory of :func:`_evaluate`)."""
    if not cfg.tracking.enabled:
        return run_id
    from dynpath.engine.metrics import metric_keys
    from dynpath.tracking.tracker import start_tracking

    keys = metric_keys(ranking_ks(cfg), cfg.eval.iou_thresholds)
    values = {f"{split}_{k}": result[k] for k in keys}
    header = eval_header(result, str(out_dir / METRICS))
    values.update({f"{split}_shuffled_{k}": v for k, v in header["shuffled"].items()})
    values[f"{split}_latency_p50_ms"] = header["latency_ms"]["p50"]
    values[f"{split}_latency_p95_ms"] = header["latency_ms"]["p95"]
    for route, entry in header["routes"].items():
        values[f"{split}_{route}_share"] = entry["share"]
        values.update(
            {f"{split}_{route}_{k}": v for k, v in entry.items() if k in keys and v is not None}
        )
    with start_tracking(cfg, variant, arch, resume_run_id=run_id) as tracker:
        tracker.log_metrics(values)
        tracker.log_artifact(out_dir / PREDICTIONS, "eval")
        tracker.log_dict({k: v for k, v in result.items()}, f"eval/{split}_{METRICS}")
        return tracker.run_id or run_id
