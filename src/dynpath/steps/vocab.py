"""``vocab`` stage: annotations -> vocabulary, embedding matrix and the data report.

Outputs in ``out_dir`` (each written atomically): ``vocab.json`` (word -> id), ``embeddings.npy``
(float32, row 0 PAD zeros, row 1 UNK), ``vocab_report.json`` (size, coverage, OOV, whether the
vectors are pretrained) and ``data_report.json`` (the DataReport of ``load_splits``, which the
report stage shows next to the results).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dynpath.data.annotations import load_splits
from dynpath.data.vocab import build_from_config
from dynpath.io import write_json
from dynpath.schemas import DATA_REPORT

if TYPE_CHECKING:
    from dynpath.config import Config


def run(cfg: Config, out_dir: Path) -> dict[str, Any]:
    """Build and save the vocabulary of ``cfg.data``; return a small summary."""
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    splits, report = load_splits(cfg)
    vocab, vocab_report = build_from_config(splits, cfg)
    vocab_report["dataset"] = cfg.data.dataset
    vocab.save(out_dir, vocab_report)
    data_report = report.to_dict()
    data_report["skipped_by_reason"] = {s: report.skipped_by_reason(s) for s in report.lines}
    write_json(out_dir / DATA_REPORT, data_report)
    return {
        "out_dir": str(out_dir),
        "dataset": cfg.data.dataset,
        "moments": {k: len(v) for k, v in splits.items()},
        "skipped": len(report.skipped),
        "vocab_size": len(vocab),
        "pretrained": vocab_report["pretrained"],
        "coverage": vocab_report["coverage"],
        "seconds": round(time.perf_counter() - t0, 3),
    }
