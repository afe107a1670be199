"""Time the default profile's training step of one commit against another, process by process.

Why: ``dynpath bench --sections default`` compares the optimised and the reference paths inside
one process, but a change that is not behind ``dynpath.model.fastpath.reference()`` (a process
flag, a default) can only be compared by running each commit's own code. This script times the
step with whatever ``dynpath`` is importable, on one pickled batch shared by both commits:

    git worktree add /tmp/before <commit>
    python scripts/step_ab.py --make-batch /tmp/batch.pkl
    for round in 1 2 3 4 5 6; do
      PYTHONPATH=/tmp/before/src python scripts/step_ab.py --batch /tmp/batch.pkl --variant dynamic
      PYTHONPATH=src python scripts/step_ab.py --batch /tmp/batch.pkl --variant dynamic
    done

The loss is built here, not through ``bench.inputs.trainer_step(full_loss=True)``: the commit
before issue 24 (6664d64) has no ``full_loss``, and both commits must time the same step.

Each run prints one JSON line (the variant, the threads, every timed step in ms). The step is the
trainer's own ``train_step`` with the full loss ``dynpath train`` builds from ``params.yaml``
(``Trainer`` and ``localization_loss`` have the same signatures since 6664d64), under the
trainer's flags (``bench.timing.trainer_determinism``). docs/performance.md ("Before / after on
an idle machine (session 8)") has the figures.
"""

from __future__ import annotations

import argparse
import json
import pickle
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from dynpath.bench.inputs import VOCAB, bench_model, random_batch
from dynpath.bench.timing import trainer_determinism
from dynpath.config import load_config
from dynpath.engine.from_config import train_options
from dynpath.engine.trainer import Trainer
from dynpath.model.loss import localization_loss
from dynpath.model.network import DynamicPathwayModel


def make_batch(path: Path, seed: int) -> None:
    """32 videos of 16-32 clips (the synthetic default's), 576-d grid features, 10 words."""
    batch = random_batch(32, 32, 576, 10, VOCAB, seed, 16)
    path.write_bytes(pickle.dumps(batch))


def time_step(params: Path, batch_path: Path, variant: str, threads: int, steps: int) -> Any:
    torch.set_num_threads(threads)
    cfg = load_config(params)
    batch = pickle.loads(batch_path.read_bytes())
    arch, vcfg = cfg.variant(variant)
    model = bench_model(arch, vcfg.model, int(batch.video.shape[-1]), cfg.seed)
    t = vcfg.train
    if isinstance(model, DynamicPathwayModel):
        model.pathway_heads = t.lambda_pathway > 0.0 or t.lambda_route > 0.0

    def loss_fn(out: Any, b: Any) -> Any:
        return localization_loss(
            out,
            b,
            t.lambda_bound,
            t.lambda_inner,
            t.lambda_pathway,
            t.lambda_route,
            t.lambda_balance,
            t.inner_average,
        )

    options = train_options(vcfg, epochs=1, batch_size=len(batch), compile=False, progress=False)
    trainer = Trainer(
        model,
        loss_fn,
        num_train=10**6,
        loader_fn=lambda indices, size: [],
        validate=lambda m: {},
        options=options,
        out_dir=Path(tempfile.mkdtemp()),
        meta={},
        device=torch.device("cpu"),
    )
    with trainer_determinism(torch.device("cpu")):
        for _ in range(3):
            trainer.train_step(batch)
        times = []
        for _ in range(steps):
            t0 = time.perf_counter()
            trainer.train_step(batch)
            times.append(time.perf_counter() - t0)
    return {"variant": variant, "threads": threads, "ms": [round(1000 * x, 2) for x in times]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--make-batch", type=Path, help="write the shared batch here and exit")
    ap.add_argument("--batch", type=Path, help="the batch --make-batch wrote")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--variant", default="dynamic")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--seed", type=int, default=12345)
    args = ap.parse_args()
    if args.make_batch:
        make_batch(args.make_batch, args.seed)
        return
    if args.batch is None:
        ap.error("--batch is required (make one with --make-batch)")
    print(json.dumps(time_step(args.params, args.batch, args.variant, args.threads, args.steps)))


if __name__ == "__main__":
    main()
