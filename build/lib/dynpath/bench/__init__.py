"""`dynpath bench`: how fast dynpath does its job, against the hardware and the alternatives.

A benchmark, not a test: every figure is measured in this one process and written to one JSON
plus a short table, with pass/fail against the targets of the performance issue. How to read
and reproduce it: ``docs/performance.md``.

Measurement rules (each one is there because the obvious way gave wrong numbers on a shared,
loaded 2-core machine):

- **Interleaved repeats.** Rows that are compared (variants, batched vs looped, step vs matmul
  peak) are timed A, B, C, A, B, C, ... so a change in machine load hits all of them alike, and
  ratios are taken per round before the median.
- **The matmul peak is sampled next to every training step**, with the same thread count, and
  the peak fraction is the median of the per-round fractions.
- **Wall and CPU time both.** Targets use wall time; the process CPU time is recorded too
  because it is what a loaded machine cannot distort (a descheduled process accrues none).
- **FLOPs are counted honestly.** ``FlopCounterMode`` counts nothing inside oneDNN's fused LSTM
  on CPU, so the counting pass runs with oneDNN switched off (the LSTM then decomposes into
  counted matmuls) while the timed passes use the default fast kernels. The LSTM part is
  cross-checked against ``3 x 2*N*4H*(I+H)`` per layer and direction (forward + 2x backward)
  from the sequences each LSTM actually received (forward hooks). The temporal convolution is
  counted as the sum over its real kernels (3+5+7+9 taps), never as a zero-padded kernel 9.
- **The real training step.** The timed step is ``Trainer.train_step`` (fused Adam, clipping,
  LR schedule, the trainer's determinism flags), not a re-implementation of it.
Layout (one module per concern; this package re-exports what ``dynpath.cli`` and the tests use):
``timing`` (interleaved repeats, threads), ``inputs`` (shapes, batches, models, the balanced
selector, the real training step), ``peaks`` (matmul peaks and fractions), ``flops`` (honest FLOP
counts), ``train`` (the paper section), ``inference`` (``variant_latency``, dynpath's one
per-variant latency measurement; the MS-LSTM ratio), ``data`` (loader share), ``extraction``,
``charades`` (the Charades-STA-shaped workload), ``dvc`` (repro timings), ``report`` (targets
and table) and ``run`` (the driver: sections, ``run_bench``).
"""

from dynpath.bench.charades import (
    ABLATION_RATE_OF,
    CHARADES_COUNTS,
    CHARADES_DURATION,
    charades_workload,
)
from dynpath.bench.dvc import copy_worktree
from dynpath.bench.extraction import CHARADES_VIDEOS, extraction_projection
from dynpath.bench.flops import count_flops
from dynpath.bench.inference import VariantTiming, variant_latency
from dynpath.bench.inputs import (
    PAPER_SHAPE,
    QUICK_MODEL,
    QUICK_SHAPE,
    VOCAB,
    balance_routes,
    bench_model,
    random_batch,
    trainer_step,
)
from dynpath.bench.peaks import MatmulPeak, matmul_peaks, peak_fractions
from dynpath.bench.report import TARGETS, check_targets, format_table
from dynpath.bench.run import DEFAULT_SECTIONS, SECTIONS, parse_sections, run_bench
from dynpath.bench.train import PEERS_REPORTED

__all__ = [
    "ABLATION_RATE_OF",
    "CHARADES_COUNTS",
    "CHARADES_DURATION",
    "CHARADES_VIDEOS",
    "DEFAULT_SECTIONS",
    "PAPER_SHAPE",
    "PEERS_REPORTED",
    "QUICK_MODEL",
    "QUICK_SHAPE",
    "SECTIONS",
    "TARGETS",
    "VOCAB",
    "MatmulPeak",
    "VariantTiming",
    "balance_routes",
    "bench_model",
    "charades_workload",
    "check_targets",
    "copy_worktree",
    "count_flops",
    "extraction_projection",
    "format_table",
    "matmul_peaks",
    "parse_sections",
    "peak_fractions",
    "random_batch",
    "run_bench",
    "trainer_step",
    "variant_latency",
]
