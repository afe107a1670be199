"""(d) and (e): the spread over training seeds, paired bootstrap intervals against the paper's
model, and whether a variant's validation metric was still rising when training ended.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from dynpath.engine.metrics import metric_key
from dynpath.report.queries import ORACLE_THRESHOLD, Runs
from dynpath.report.results import MAIN_VARIANT, SeedRun, VariantResult, finite

#: Paired bootstrap: resamples of the test queries, the generator's fixed seed, the level.
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240
BOOTSTRAP_LEVEL = 0.95
#: The still-rising flag looks at the last 20% of the epochs (rounded up).
PLATEAU_FRACTION = 0.2


def seed_stats(results: Sequence[VariantResult], thresholds: Sequence[float]) -> pd.DataFrame:
    """(d) Per variant, over its evaluated seeds (test metrics.json): mean and SAMPLE standard
    deviation (n - 1) of R@1 at each threshold and mIoU; the deviation is NaN for one seed.

    Columns: variant, n, seeds (the seeds, primary first), missing_seeds, ``<key>_mean``,
    ``<key>_sd`` for each key.
    """
    keys = [metric_key(1, t) for t in thresholds] + ["miou"]
    rows = []
    for r in results:
        runs = r.runs or [SeedRun(seed=None, metrics=r.metrics)]
        row: dict[str, Any] = {
            "variant": r.name,
            "n": len(runs),
            "seeds": [run.seed for run in runs],
            "missing_seeds": list(r.missing_seeds),
        }
        for k in keys:
            values = np.array(
                [v for run in runs if (v := finite(run.metrics.get(k))) is not None], dtype=float
            )
            row[f"{k}_mean"] = float(values.mean()) if values.size else None
            row[f"{k}_sd"] = float(values.std(ddof=1)) if values.size > 1 else None
        rows.append(row)
    return pd.DataFrame(rows)


def seed_mean_hits(runs: Runs, threshold: float = ORACLE_THRESHOLD) -> pd.Series:
    """Per test query (index qid): the R@1 hit (top-1 IoU >= ``threshold``) averaged over the
    seeds, so a query hit by two of three seeds counts 2/3."""
    if not runs:
        return pd.Series(dtype=float)
    hits = [df.set_index("qid")["iou"].ge(threshold).astype(float) for df in runs.values()]
    return pd.concat(hits, axis=1).mean(axis=1)


def paired_bootstrap(
    diff: Sequence[float] | np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
    level: float = BOOTSTRAP_LEVEL,
) -> tuple[float, float, float]:
    """Mean of per-query differences and its percentile bootstrap interval.

    The queries (already paired: one difference per query) are resampled with replacement
    ``resamples`` times by ``numpy.random.default_rng(seed)``; the interval is the
    ((1 - level) / 2, (1 + level) / 2) percentiles of the resampled means. Deterministic: the
    same differences give the same interval. NaNs for no query.
    """
    d = np.asarray(diff, dtype=np.float64)
    if d.size == 0:
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    chunk = max(1, 1_000_000 // d.size)  # bounded memory for large test sets
    for start in range(0, resamples, chunk):
        m = min(chunk, resamples - start)
        means[start : start + m] = d[rng.integers(0, d.size, size=(m, d.size))].mean(axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(d.mean()), float(low), float(high)


def bootstrap_vs_reference(
    frames: Mapping[str, Runs],
    reference: str = MAIN_VARIANT,
    threshold: float = ORACLE_THRESHOLD,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> pd.DataFrame:
    """(d) Per variant: test R@1 IoU>=``threshold`` of the variant minus ``reference``'s, in
    percentage points, with a paired bootstrap interval over the test queries (per query the
    hit averaged over each variant's seeds; queries both have). ``excludes_zero``: the interval
    lies entirely above or below 0. Empty without the reference."""
    columns = ["variant", "queries", "diff", "low", "high", "excludes_zero"]
    if not frames.get(reference):
        return pd.DataFrame(columns=columns)
    ref = seed_mean_hits(frames[reference], threshold)
    rows = []
    for variant, runs in frames.items():
        if variant == reference or not runs:
            continue
        hits = seed_mean_hits(runs, threshold)
        common = hits.index.intersection(ref.index)
        diff = 100.0 * (hits.loc[common].to_numpy() - ref.loc[common].to_numpy())
        point, low, high = paired_bootstrap(diff, resamples, seed)
        rows.append(
            {
                "variant": variant,
                "queries": len(common),
                "diff": point,
                "low": low,
                "high": high,
                "excludes_zero": bool(low > 0 or high < 0),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def still_rising(
    history: Sequence[Mapping[str, Any]], key: str, fraction: float = PLATEAU_FRACTION
) -> bool | None:
    """Whether validation ``key`` was still improving at the end of training: the best value
    within the last ceil(``fraction`` x epochs) epochs exceeds the best value before them.

    None when it cannot be told (under two epochs with a value). A True means more epochs could
    change the row, so its gap to the others is not settled.
    """
    values = [
        v
        for h in sorted(history, key=lambda e: finite(e.get("epoch")) or 0.0)
        if (v := finite(h.get(key))) is not None
    ]
    n = len(values)
    window = math.ceil(round(n * fraction, 9))
    if n < 2 or window >= n:
        return None
    return max(values[n - window :]) > max(values[: n - window])


def still_rising_flags(
    results: Sequence[VariantResult], selection_metric: str
) -> dict[str, dict[str, Any]]:
    """(e) Per variant: ``still_rising`` (True if ANY seed's history is still rising, None when
    no seed's can tell), ``seeds``, the seeds whose history is, and ``stops``: per seed its
    epochs trained, best epoch and how training ended, "early_stop" (``train.patience`` ran out,
    train_summary.json's ``stopped_early``: a plateau by construction, never still rising) or
    "epoch_cap" (every epoch of ``train.epochs`` trained)."""
    key = f"val_{selection_metric}"
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        runs = r.runs or [SeedRun(seed=None, metrics=r.metrics, history=r.history)]
        flags, stops = [], {}
        for run in runs:
            epochs = [int(e) for h in run.history if (e := finite(h.get("epoch"))) is not None]
            early = bool(run.stopped_early)
            flags.append((run.seed, False if early else still_rising(run.history, key)))
            scored = [
                (v, e)
                for h in run.history
                if (v := finite(h.get(key))) is not None
                and (e := finite(h.get("epoch"))) is not None
            ]
            best = max(scored, key=lambda ve: (ve[0], -ve[1]))[1] if scored else None
            stops[str(run.seed)] = {
                "epochs": max(epochs, default=0),
                "best_epoch": None if best is None else int(best),
                "stopped": "early_stop" if early else "epoch_cap",
            }
        known = [f for _, f in flags if f is not None]
        out[r.name] = {
            "still_rising": any(known) if known else None,
            "seeds": [s for s, f in flags if f],
            "stops": stops,
            "early_stops": sum(v["stopped"] == "early_stop" for v in stops.values()),
        }
    return out
