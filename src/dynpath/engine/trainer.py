"""The training loop: Adam + linear decay, clipping, AMP, DDP, and exact kill-and-resume.

Design decisions (each one is what makes ``--resume`` give EXACTLY the metrics of an uninterrupted
run on CPU):

- **The trainer owns the sample order.** Each epoch's order comes from a seeded
  :class:`~torch.utils.data.DistributedSampler` (``seed``, ``set_epoch``; with one process it is a
  plain seeded permutation), and the data loader is asked for an in-order loader over exactly the
  indices still to do. Resuming mid-epoch therefore replays the same order and skips the batches
  already consumed without reading them.
- **All RNG state is checkpointed** (Python, NumPy, torch CPU/CUDA; per rank under DDP) and
  restored after the model is rebuilt, so dropout masks and Gumbel noise continue where they were.
- **Nothing else touches the global RNG**: creating a DataLoader iterator draws a seed from the
  global generator, and validation may run stochastic code; both run inside
  :func:`~dynpath.engine.resume.rng_isolated` so checkpoint frequency and validation cannot
  change the training trajectory.
- **Running sums of the epoch's losses are checkpointed**, so the resumed epoch reports the same
  mean loss as the uninterrupted one.
- Checkpoints (``last.pt`` every ``checkpoint_every_steps`` steps and at every epoch end,
  ``best.pt`` when the validation metric improves) are atomic, so a kill at ANY moment leaves a
  consistent ``last.pt`` to resume from.
- **Ctrl-C is deferred to the next step boundary** (single process, main thread): the first
  SIGINT only sets a flag, so it can never land between ``optimizer.step`` and
  ``scheduler.step``; after the step the loop writes the same resumable ``last.pt`` a
  ``checkpoint_every_steps`` checkpoint would and raises KeyboardInterrupt (the CLI exits 130).
  No work is lost, and ``--resume`` continues exactly. A second Ctrl-C interrupts at once.

Distributed training: launched by ``torchrun`` (WORLD_SIZE/RANK/LOCAL_RANK in the environment),
NCCL on CUDA and gloo on CPU. The configured batch size is the GLOBAL batch, split evenly across
ranks; each rank sees a disjoint shard of every epoch (DistributedSampler pads the last shard by
repeating samples, as PyTorch does). Only rank 0 validates and writes files; the model is wrapped
in DDP with ``find_unused_parameters=True`` because the dynamic model skips a whole module for
some batches.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, cast

import torch
import torch.distributed as torch_dist
from torch import Tensor, nn
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from dynpath import schemas
from dynpath.data.batch import Batch
from dynpath.engine.checkpoint import save_checkpoint, seed_everything
from dynpath.engine.distributed import (
    DistInfo,
    Interrupt,
    amp_dtype,
    configure_determinism,
    deferred_sigint,
    denormals_flushed,
    init_distributed,  # noqa: F401  (re-exported: callers import it from here, as before)
    shutdown_distributed,  # noqa: F401  (re-exported)
    train_device,  # noqa: F401  (re-exported)
)
from dynpath.engine.resume import (
    BEST,
    LAST,
    Progress,
    checkpoint_payload,
    gather_rng,
    restore,
    rng_isolated,
)
from dynpath.errors import DynpathError
from dynpath.io import write_json
from dynpath.model import gemm
from dynpath.model.output import ModelOutput

log = logging.getLogger(__name__)

HISTORY = schemas.HISTORY


class LossFn(Protocol):
    """``dynpath.model.loss.localization_loss`` with its lambdas bound: (loss, parts to log)."""

    def __call__(
        self, out: ModelOutput, batch: Batch
    ) -> tuple[Tensor, Mapping[str, float | Tensor]]: ...


LoaderFn = Callable[[Sequence[int], int], Iterable[Batch]]
"""``loader_fn(indices, batch_size)``: an IN-ORDER loader over those training-sample indices (no
shuffling inside, last partial batch kept); ``batch_size`` is the per-rank batch."""

ValidateFn = Callable[[nn.Module], dict[str, float]]
"""Scores the (unwrapped, eval-mode) model on the validation split; keys as in metrics.json."""


# --------------------------------------------------------------------------- options/state


@dataclass(frozen=True)
class TrainOptions:
    """What the loop needs from ``cfg.train``/``cfg.eval`` (kept small so tests can build it)."""

    epochs: int
    batch_size: int  # GLOBAL batch size, split across ranks
    lr: float
    seed: int
    selection_metric: str
    weight_decay: float = 0.0
    warmup_fraction: float = 0.0
    clip_norm: float = 1.0
    amp: bool = True
    compile: bool = False
    cpu_autocast: str = "fp32"  # "bf16": CPU forward under bf16 autocast (train.autocast)
    gemm: str = "auto"  # fp32 CPU GEMM library (train.gemm, dynpath.model.gemm)
    checkpoint_every_steps: int = 0  # 0: only at epoch ends
    patience: int = 0  # early stopping: epochs without a better validation value; 0 = off
    progress: bool = True
    deterministic: bool = True


@dataclass
class TrainResult:
    best_epoch: int | None
    best_value: float | None
    best_val: dict[str, float]
    history: list[dict[str, Any]]
    train_seconds: float
    global_step: int
    resumed_from: dict[str, int] | None
    epochs_trained: int = 0
    stopped_early: bool = False  # the patience ran out before the epoch cap


def linear_decay(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """LR factor: linear warmup to 1 over ``warmup_steps``, then linear decay to 0 at the end."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        remaining = total_steps - step
        return max(0.0, remaining / max(1, total_steps - warmup_steps))

    return factor


# --------------------------------------------------------------------------- trainer


class Trainer:
    """Trains one model; see the module docstring for the resume and DDP guarantees."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: LossFn,
        num_train: int,
        loader_fn: LoaderFn,
        validate: ValidateFn,
        options: TrainOptions,
        out_dir: str | Path,
        meta: dict[str, Any],
        device: torch.device | str = "cpu",
        dist: DistInfo | None = None,
        on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
        on_step: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if num_train < 1:
            raise DynpathError("the training split is empty: nothing to train on")
        self.model = model
        self.loss_fn = loss_fn
        self.num_train = num_train
        self.loader_fn = loader_fn
        self.validate = validate
        self.opt = options
        self.out_dir = Path(out_dir)
        self.meta = meta
        self.device = torch.device(device)
        self.dist = dist or DistInfo()
        self.on_epoch_end = on_epoch_end
        self.on_step = on_step
        # Injectable so that tests can check the reported rates against known times.
        self.clock = clock
        # The rate the progress bar shows after each step (samples/s of all ranks since this
        # epoch started in this process); exposed for callers and tests.
        self.samples_per_s: float | None = None

        self.local_batch, self.sampler = self._shard(options.batch_size, options.seed)
        self.steps_per_epoch = math.ceil(self.sampler.num_samples / self.local_batch)
        self.total_steps = self.steps_per_epoch * options.epochs
        self.model.to(self.device)
        self.optimizer, self.scheduler = self._optimizer(options)
        self.amp_dtype = amp_dtype(options.amp, self.device)
        if self.amp_dtype is None and options.cpu_autocast == "bf16" and self.device.type == "cpu":
            self.amp_dtype = torch.bfloat16
        # chosen once per process from the params, by capability (not timing): the same
        # kernels on every run and resume of this machine
        self.gemm = gemm.set_backend(options.gemm)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.progress = Progress()
        self.train_module = self._train_module(options.compile)

    def _shard(self, batch_size: int, seed: int) -> tuple[int, DistributedSampler[int]]:
        """This rank's batch size (the global one split over the ranks) and its seeded sampler."""
        world = self.dist.world_size
        local_batch = max(1, math.ceil(batch_size / world))
        if batch_size % world:
            log.warning(
                "global batch %d is not divisible by %d ranks: using %d per rank (global %d)",
                batch_size,
                world,
                local_batch,
                local_batch * world,
            )
        sampler: DistributedSampler[int] = DistributedSampler(
            cast(Any, range(self.num_train)),
            num_replicas=world,
            rank=self.dist.rank,
            shuffle=True,
            seed=seed,
            drop_last=False,
        )
        return local_batch, sampler

    def _optimizer(
        self, options: TrainOptions
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        """Adam over the model's parameters and its linear warmup/decay schedule."""
        # fused=True: one kernel per step for all parameters instead of ~10 tensor ops per
        # parameter (measured 3.8x faster on CPU at d=512, 70.7M parameters: 827 -> 216 ms of a
        # ~13 s step; docs/performance.md); same values as the per-parameter loop, deterministic.
        params = list(self.model.parameters())
        fused = self.device.type in ("cpu", "cuda") and all(
            p.dtype in (torch.float32, torch.float16, torch.bfloat16) for p in params
        )
        optimizer = torch.optim.Adam(
            params, lr=options.lr, weight_decay=options.weight_decay, fused=fused or None
        )
        warmup = round(options.warmup_fraction * self.total_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, linear_decay(self.total_steps, warmup)
        )
        return optimizer, scheduler

    def _train_module(self, compile_it: bool) -> nn.Module:
        """The module the steps run: the model, in DDP under torchrun, compiled on request."""
        module: nn.Module = self.model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            module = DDP(self.model, device_ids=ids, find_unused_parameters=True)
        if compile_it:
            module = cast(nn.Module, torch.compile(module))
        return module

    # ----------------------------------------------------------------- checkpoint I/O

    def _save(self, names: Sequence[str]) -> None:
        """Write checkpoints (rank 0); every rank must call it (RNG states are gathered)."""
        rng_ranks = gather_rng(self.dist)
        if self.dist.is_main:
            payload = checkpoint_payload(
                self.meta, self._states(), rng_ranks, self.dist.world_size, self.progress
            )
            for name in names:
                save_checkpoint(self.out_dir / name, payload)

    def _states(self) -> dict[str, Any]:
        """What a checkpoint saves and restores besides the progress and RNGs, in that order."""
        return {
            "model": self.model,
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "scaler": self.scaler,
        }

    def _resume(self) -> dict[str, int] | None:
        path = self.out_dir / LAST
        progress = restore(path, self.meta, self._states(), self.opt.epochs, self.dist)
        if progress is None:
            return None
        self.progress = progress
        p = self.progress
        log.info(
            "resumed %s at epoch %d, batch %d/%d",
            path,
            p.epoch + 1,
            p.batches_done,
            self.steps_per_epoch,
        )
        return {"epoch": p.epoch, "batches_done": p.batches_done, "global_step": p.global_step}

    # ----------------------------------------------------------------- loop

    def _sync_sums(self, local: dict[str, float], samples: int) -> tuple[dict[str, float], int]:
        """Sum per-rank loss sums and sample counts over ranks (identity on one process)."""
        if not self.dist.enabled:
            return local, samples
        keys = sorted(local)
        vec = torch.tensor([local[k] for k in keys] + [float(samples)], dtype=torch.float64)
        torch_dist.all_reduce(vec)
        values = vec.tolist()
        return dict(zip(keys, values[:-1], strict=True)), int(values[-1])

    def _merge_pending(self, pending: dict[str, float], pending_n: int) -> None:
        summed, n = self._sync_sums(pending, pending_n)
        for k, v in summed.items():
            self.progress.loss_sums[k] = self.progress.loss_sums.get(k, 0.0) + v
        self.progress.samples_done += n
        pending.clear()

    def train_step(self, batch: Batch) -> tuple[dict[str, float], int]:
        """One optimisation step on ``batch``: forward (under the trainer's autocast), loss,
        backward, clipping, optimizer and LR-schedule step; returns the loss parts summed over
        the batch's samples and the sample count.

        Public because it is the one training step: :meth:`fit` runs it for every batch and
        ``dynpath bench`` times exactly it (not a re-implementation that could drift from it).
        It does not advance :attr:`progress` (``fit`` does) nor set the determinism flags
        (``fit`` sets them around the whole run).
        """
        batch = batch.to(self.device, non_blocking=True)
        self.train_module.train()
        # schedules that follow training progress (the Gumbel temperature): a pure function of
        # the global step, so a resumed run continues the same schedule
        set_progress = getattr(self.model, "set_training_progress", None)
        if set_progress is not None:
            set_progress(self.progress.global_step / max(self.total_steps - 1, 1))
        autocast = (
            torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)
            if self.amp_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            out = self.train_module(batch.video, batch.video_mask, batch.words, batch.word_mask)
        loss, parts = self.loss_fn(_float_output(out), batch)
        n = len(batch)
        values = {"loss": float(loss.detach())}
        values.update({k: float(v) for k, v in parts.items() if k != "loss"})
        if not math.isfinite(values["loss"]) and not self.scaler.is_enabled():
            raise DynpathError(
                f"training loss is {values['loss']} at epoch {self.progress.epoch + 1}, step "
                f"{self.progress.global_step + 1}: lower train.lr or check the features"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.opt.clip_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return {k: v * n for k, v in values.items()}, n

    def fit(self, resume: bool = False) -> TrainResult:
        """Train all epochs (or the remaining ones with ``resume``); returns the summary."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        previous = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        fill = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
        if self.opt.deterministic:
            configure_determinism(self.device)
        try:
            with denormals_flushed(self.device):
                return self._fit(resume)
        finally:
            torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
            torch.utils.deterministic.fill_uninitialized_memory = fill  # type: ignore[attr-defined]

    def _fit(self, resume: bool) -> TrainResult:
        resumed = self._resume() if resume else None
        if resumed is None:
            seed_everything(self.opt.seed + self.dist.rank)
        p = self.progress
        if p.epoch >= self.opt.epochs or self.plateaued():
            log.info("training already complete (%d of %d epochs)", p.epoch, self.opt.epochs)
            if self.dist.is_main:  # a kill after the last checkpoint but before history.json
                write_json(self.out_dir / HISTORY, p.history)
        # Under DDP every rank would have to stop at the same step (a collective per step to agree
        # on the flag; a rank that stopped alone would hang the others in all_reduce): there
        # Ctrl-C keeps its immediate effect and the last periodic checkpoint is the one to resume.
        with deferred_sigint(enabled=not self.dist.enabled) as interrupt:
            self._epochs(interrupt)
        return TrainResult(
            best_epoch=p.best_epoch,
            best_value=p.best_value,
            best_val=_best_val(p.history, p.best_epoch),
            history=p.history,
            train_seconds=p.train_seconds,
            global_step=p.global_step,
            resumed_from=resumed,
            epochs_trained=p.epoch,
            stopped_early=self.plateaued() and p.epoch < self.opt.epochs,
        )

    def plateaued(self) -> bool:
        """Early stopping: ``patience`` whole epochs since the best validation value.

        Read from the checkpointed progress alone (epoch and best_epoch), so a run killed and
        resumed stops at the same epoch as an uninterrupted one, and resuming a run that
        already stopped trains nothing more.
        """
        p = self.progress
        return (
            self.opt.patience > 0
            and p.batches_done == 0
            and p.best_epoch is not None
            and p.epoch - p.best_epoch >= self.opt.patience
        )

    def _epochs(self, interrupt: Interrupt) -> None:
        """Train the remaining epochs; stop with a checkpoint once ``interrupt`` is requested."""
        p = self.progress
        world = self.dist.world_size
        while p.epoch < self.opt.epochs and not self.plateaued():
            epoch = p.epoch
            self.sampler.set_epoch(epoch)
            order = list(self.sampler)
            todo = order[p.batches_done * self.local_batch :]
            with rng_isolated():  # DataLoader iterators draw a seed from the global RNG
                batches = iter(self.loader_fn(todo, self.local_batch))
            # disable=None: tqdm draws only when its stream (stderr) is a terminal. Under
            # `dvc repro`, a Kubeflow pod or a CI log each redraw would be a new line (hundreds
            # per stage); the one-line summary `_end_epoch` logs per epoch stands in for them.
            bar = tqdm(
                total=self.steps_per_epoch,
                initial=p.batches_done,
                desc=f"epoch {epoch + 1}/{self.opt.epochs}",
                disable=None if (self.opt.progress and self.dist.is_main) else True,
                mininterval=1.0,
                leave=False,
            )
            pending: dict[str, float] = {}
            pending_n = 0
            t0 = self.clock()  # start of the time not yet added to p.epoch_seconds
            # The bar's rate: samples since this epoch started in this process over the time
            # since then, checkpoints included. Both ends stay fixed through mid-epoch
            # checkpoints (resetting only the clock there divided the whole epoch's samples by
            # the seconds since the checkpoint: ~9,400 samples/s right after one).
            rate_t0 = t0
            seen_since = 0
            for batch in batches:
                sums, n = self.train_step(batch)
                for k, v in sums.items():
                    pending[k] = pending.get(k, 0.0) + v
                pending_n += n
                seen_since += n * world
                p.batches_done += 1
                p.global_step += 1
                self.samples_per_s = seen_since / max(self.clock() - rate_t0, 1e-9)
                bar.update(1)
                bar.set_postfix(
                    loss=f"{sums['loss'] / max(n, 1):.4f}",
                    sps=f"{self.samples_per_s:.1f}",
                    refresh=False,
                )
                every = self.opt.checkpoint_every_steps
                mid_epoch = p.batches_done < self.steps_per_epoch
                saved = False
                if every > 0 and p.global_step % every == 0 and mid_epoch:
                    t0 = self._checkpoint_mid_epoch(pending, pending_n, t0)
                    pending_n, saved = 0, True
                if self.on_step is not None:
                    self.on_step(p.global_step)
                # The last batch of an epoch goes on to the epoch's end (validation and its
                # checkpoint) and stops below; a step that just checkpointed is not written twice.
                if interrupt.requested and mid_epoch:
                    if not saved:
                        self._checkpoint_mid_epoch(pending, pending_n, t0)
                    bar.close()
                    self._stop_interrupted()
            bar.close()
            self._merge_pending(pending, pending_n)
            now = self.clock()
            p.epoch_seconds += now - t0
            p.train_seconds += now - t0
            self._end_epoch(epoch)
            if interrupt.requested:  # Ctrl-C in the last step or the validation: last.pt is new
                self._stop_interrupted()

    def _checkpoint_mid_epoch(self, pending: dict[str, float], pending_n: int, t0: float) -> float:
        """Fold the pending loss sums and the time since ``t0`` into the progress and write the
        resumable mid-epoch ``last.pt``; returns the new start of the untimed interval (the save
        counts towards the next one). The caller resets its pending sample count."""
        p = self.progress
        self._merge_pending(pending, pending_n)
        now = self.clock()
        p.epoch_seconds += now - t0
        p.train_seconds += now - t0
        self._save([LAST])
        return now

    def _stop_interrupted(self) -> None:
        """After a deferred Ctrl-C: say where the checkpoint is, then end the run as Ctrl-C does."""
        p = self.progress
        where = (
            f"epoch {p.epoch + 1} step {p.global_step}"
            if p.batches_done
            else f"the end of epoch {p.epoch} (step {p.global_step})"
        )
        log.warning(
            "interrupted: checkpoint at %s written to %s; resume with `dynpath train --resume`",
            where,
            self.out_dir / LAST,
        )
        raise KeyboardInterrupt

    def _end_epoch(self, epoch: int) -> None:
        p = self.progress
        n = max(p.samples_done, 1)
        entry: dict[str, Any] = {"epoch": epoch + 1, "step": p.global_step}
        for k, v in sorted(p.loss_sums.items()):
            entry[f"train_{k}"] = v / n
        val: dict[str, float] = {}
        if self.dist.is_main:
            self.model.eval()
            with rng_isolated(), torch.no_grad():
                val = self.validate(self.model)
            self.model.train()
            if self.opt.selection_metric not in val:
                raise DynpathError(
                    f"eval.selection_metric {self.opt.selection_metric!r} is not a validation "
                    f"metric; choose one of {sorted(val)}"
                )
        entry.update({f"val_{k}": float(v) for k, v in val.items()})
        entry["lr"] = float(self.optimizer.param_groups[0]["lr"])
        entry["seconds"] = p.epoch_seconds
        entry["samples_per_s"] = p.samples_done / max(p.epoch_seconds, 1e-9)
        improved = False
        if self.dist.is_main:
            value = float(val[self.opt.selection_metric])
            if p.best_value is None or value > p.best_value:
                p.best_value, p.best_epoch, improved = value, epoch + 1, True
            p.history.append(entry)
        p.epoch += 1
        p.batches_done = 0
        p.samples_done = 0
        p.loss_sums = {}
        p.epoch_seconds = 0.0
        if self.dist.enabled:
            flags = [improved]
            torch_dist.broadcast_object_list(flags, src=0)
            if flags[0] and not self.dist.is_main:  # every rank's plateaued() must agree
                p.best_epoch = epoch + 1
        self._save([BEST, LAST] if improved else [LAST])
        if self.dist.is_main:
            write_json(self.out_dir / HISTORY, p.history)
            log.info(
                "epoch %d: loss %.4f, val %s %.2f (best %.2f @ %s), %.1f samples/s",
                epoch + 1,
                entry.get("train_loss", float("nan")),
                self.opt.selection_metric,
                entry.get(f"val_{self.opt.selection_metric}", float("nan")),
                p.best_value if p.best_value is not None else float("nan"),
                p.best_epoch,
                entry["samples_per_s"],
            )
            if self.plateaued() and p.epoch < self.opt.epochs:
                log.info(
                    "early stop after epoch %d: no better val %s for %d epochs (best @ %d)",
                    epoch + 1,
                    self.opt.selection_metric,
                    self.opt.patience,
                    p.best_epoch,
                )
            if self.on_epoch_end is not None:
                self.on_epoch_end(entry)


def _float_output(out: ModelOutput) -> ModelOutput:
    """Losses in float32 even when the forward ran under bf16/fp16 autocast."""
    return ModelOutput(
        start_logits=out.start_logits.float(),
        end_logits=out.end_logits.float(),
        inner_logits=out.inner_logits.float(),
        route=out.route,
        route_probs=None if out.route_probs is None else out.route_probs.float(),
        pathway_logits=None
        if out.pathway_logits is None
        else [(s.float(), e.float(), i.float()) for s, e, i in out.pathway_logits],
    )


def _best_val(history: list[dict[str, Any]], best_epoch: int | None) -> dict[str, float]:
    for entry in history:
        if entry["epoch"] == best_epoch:
            return {k[4:]: v for k, v in entry.items() if k.startswith("val_")}
    return {}
