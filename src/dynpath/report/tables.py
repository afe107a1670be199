"""Results of the DAG gathered per variant, and the report's tables as pandas DataFrames.

Inputs (written by the train and evaluate steps): ``outputs/models/<variant>/`` (train_summary.json,
history.json) and ``outputs/eval/<variant>/`` (metrics.json, predictions.jsonl,
val_predictions.jsonl), the same under ``seeds/<seed>/`` for every further training seed
(:mod:`dynpath.seeds`), plus the vocab step's data report and, for the synthetic benchmark,
``synthetic_meta.json`` (each query's family).

The analyses at the end (per query family, route x family, the single-module oracles, seeds and
paired bootstrap intervals, the still-rising flag) answer "can this ablation tell the variants
apart?": they work on per-query frames (:func:`read_queries`), one per variant and seed, so every
number can be recomputed by hand from predictions.jsonl.

Why DataFrames: the same table is rendered to HTML and Markdown (``DataFrame.to_html`` /
``to_markdown``) and written as CSV for ``dvc plots``; keeping the numbers numeric until rendering
lets each renderer format them once. Missing values (a variant without a selector has no route
metrics; a dataset without published numbers) stay NaN/None and are shown as a dash, never as 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dynpath.engine.metrics import metric_key
from dynpath.errors import DataError
from dynpath.schemas import HISTORY, METRICS, PREDICTIONS, TRAIN_SUMMARY, VAL_PREDICTIONS
from dynpath.seeds import seed_dir
from dynpath.variants import PAPER_ORDER
from dynpath.variants import TABLE as VARIANT_TABLE

#: Rows of Tables III/IV, in the paper's order (the paper's model, "Ours", last).
TABLE_ORDER: tuple[str, ...] = PAPER_ORDER

ROUTES: tuple[str, ...] = ("exploitation", "exploration")

#: The paper's model; the report's checks and example queries are about it.
MAIN_VARIANT = "dynamic"


@dataclass
class SeedRun:
    """One training seed's run of a variant (the primary's lives in the variant's own dirs)."""

    seed: int | None  # None: seeds unknown to the caller (the primary run only)
    metrics: dict[str, Any]  # metrics.json (test)
    predictions: Path | None = None  # predictions.jsonl (test)
    val_predictions: Path | None = None  # val_predictions.jsonl
    history: list[dict[str, Any]] = field(default_factory=list)  # history.json
    stopped_early: bool | None = None  # train_summary.json: train.patience ran out (None: unknown)


@dataclass
class VariantResult:
    """Everything the report shows about one trained and evaluated variant.

    The top-level fields are the primary seed's run (as before seeds existed); ``runs`` holds
    every seed's run that was evaluated, the primary first, and ``missing_seeds`` the others.
    """

    name: str
    display: str
    metrics: dict[str, Any]  # metrics.json
    train: dict[str, Any] = field(default_factory=dict)  # train_summary.json ({} when missing)
    history: list[dict[str, Any]] = field(default_factory=list)  # history.json
    predictions: Path | None = None  # predictions.jsonl
    runs: list[SeedRun] = field(default_factory=list)
    missing_seeds: list[int] = field(default_factory=list)

    @property
    def arch(self) -> str:
        return str(self.metrics.get("arch") or self.train.get("arch") or self.name)

    @property
    def run_id(self) -> str | None:
        rid = self.metrics.get("mlflow_run_id") or self.train.get("mlflow_run_id")
        return str(rid) if rid else None

    @property
    def experiment_id(self) -> str | None:
        for src in (self.metrics, self.train, self.train.get("tracking") or {}):
            eid = src.get("mlflow_experiment_id") or src.get("experiment_id")
            if eid:
                return str(eid)
        return None

    def metric(self, key: str) -> float | None:
        return _num(self.metrics.get(key))

    def shuffled(self, key: str) -> float | None:
        return _num((self.metrics.get("shuffled") or {}).get(key))

    def route_share(self, route: str) -> float | None:
        return _num(((self.metrics.get("routes") or {}).get(route) or {}).get("share"))

    @property
    def has_routes(self) -> bool:
        return bool(self.metrics.get("routes"))


def _num(value: Any) -> float | None:
    """A finite float, or None for missing/null/NaN (never a made-up 0)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


#: Row labels of Tables III/IV (from the torch-free variant table: reading results never imports
#: torch).
DISPLAY: dict[str, str] = {v.name: v.label for v in VARIANT_TABLE}


def display_name(variant: str, arch: str) -> str:
    """The paper's row label ("Sum fusion", "Ours (dynamic)"), else the variant's own name.

    A variant that is not an architecture itself (``dynamic_tau05: {arch: dynamic, ...}``) keeps
    its own name so two rows never share a label.
    """
    if variant != arch or variant not in DISPLAY:
        return variant
    label = DISPLAY[variant]
    return "Ours (dynamic)" if label == "Ours" else label


def ordered_variants(names: Sequence[str]) -> list[str]:
    """Table III order for the paper's rows, then any other variant in params order."""
    known = [v for v in TABLE_ORDER if v in names]
    return known + [v for v in names if v not in TABLE_ORDER]


def _load_run(seed: int | None, eval_dir: Path, model_dir: Path) -> SeedRun | None:
    """One seed's run from its eval and model directories; None without metrics.json."""
    mpath = eval_dir / METRICS
    if not mpath.exists():
        return None
    hpath = model_dir / HISTORY
    history = _read_json(hpath) if hpath.exists() else []
    ppath, vpath = eval_dir / PREDICTIONS, eval_dir / VAL_PREDICTIONS
    tpath = model_dir / TRAIN_SUMMARY
    train = _read_json(tpath) if tpath.exists() else {}
    stopped = train.get("stopped_early") if isinstance(train, dict) else None
    return SeedRun(
        stopped_early=stopped if isinstance(stopped, bool) else None,
        seed=seed,
        metrics=_read_json(mpath),
        predictions=ppath if ppath.exists() else None,
        val_predictions=vpath if vpath.exists() else None,
        history=list(history) if isinstance(history, list) else [],
    )


def load_results(
    variants: Sequence[str],
    eval_dir: Path,
    models_dir: Path,
    seeds: Sequence[int] | None = None,
) -> tuple[list[VariantResult], list[str]]:
    """Results of ``variants`` (Table III order) and the names that have no metrics.json yet.

    ``seeds`` (``Config.seeds``): the primary run is read from the variant's own directories,
    every further seed from ``seeds/<seed>/`` (a seed not evaluated is listed in
    ``missing_seeds``). Without ``seeds`` only the primary run is read.
    """
    results: list[VariantResult] = []
    missing: list[str] = []
    order = list(seeds) if seeds else [None]
    for name in ordered_variants(variants):
        edir, mdir = Path(eval_dir) / name, Path(models_dir) / name
        primary = _load_run(order[0], edir, mdir)
        if primary is None:
            missing.append(name)
            continue
        runs, missing_seeds = [primary], []
        for s in order[1:]:
            assert s is not None and seeds is not None
            run = _load_run(s, seed_dir(edir, seeds, s), seed_dir(mdir, seeds, s))
            if run is None:
                missing_seeds.append(s)
            else:
                runs.append(run)
        tpath = mdir / TRAIN_SUMMARY
        train = _read_json(tpath) if tpath.exists() else {}
        arch = str(primary.metrics.get("arch") or train.get("arch") or name)
        results.append(
            VariantResult(
                name=name,
                display=display_name(name, arch),
                metrics=primary.metrics,
                train=train,
                history=primary.history,
                predictions=primary.predictions,
                runs=runs,
                missing_seeds=missing_seeds,
            )
        )
    return results, missing


# --------------------------------------------------------------------------- tables


def r1_columns(thresholds: Sequence[float]) -> list[tuple[str, str]]:
    """(metrics key, column label) of the Table III layout: R@1 per IoU threshold, then mIoU."""
    return [(metric_key(1, t), f"R@1 IoU≥{t:g}") for t in thresholds] + [("miou", "mIoU")]


def ablation_table(
    results: Sequence[VariantResult],
    thresholds: Sequence[float],
    published: Mapping[str, Mapping[str, float]] | None = None,
    still_rising: Mapping[str, bool | None] | None = None,
) -> pd.DataFrame:
    """Tables III/IV layout; with ``published``, each metric is followed by the paper's value;
    with ``still_rising`` (:func:`still_rising_flags`), a last column flags the variants whose
    validation metric was still improving at the end of training."""
    rows = []
    for r in results:
        row: dict[str, Any] = {"Variant": r.display}
        paper = (published or {}).get(r.name)
        for key, label in r1_columns(thresholds):
            row[label] = r.metric(key)
            if published is not None:
                row[f"{label} (paper)"] = _num((paper or {}).get(key))
        if still_rising is not None:
            row["Still rising"] = still_rising.get(r.name)
        rows.append(row)
    return pd.DataFrame(rows)


def recall5_table(results: Sequence[VariantResult], thresholds: Sequence[float]) -> pd.DataFrame:
    rows = []
    for r in results:
        row: dict[str, Any] = {"Variant": r.display}
        for t in thresholds:
            row[f"R@5 IoU≥{t:g}"] = r.metric(metric_key(5, t))
        rows.append(row)
    return pd.DataFrame(rows)


def shuffled_table(results: Sequence[VariantResult], thresholds: Sequence[float]) -> pd.DataFrame:
    """The shuffled-video control next to the real score: a model that reads the video drops."""
    rows = []
    key = metric_key(1, 0.5) if 0.5 in thresholds else metric_key(1, thresholds[0])
    main = key.replace("r1_iou", "R@1 IoU≥")
    for r in results:
        row: dict[str, Any] = {"Variant": r.display}
        for k, label in r1_columns(thresholds):
            row[f"{label} shuffled"] = r.shuffled(k)
        real, shuf = r.metric(key), r.shuffled(key)
        row[f"{main} real"] = real
        row[f"{main} kept %"] = (
            None if real is None or shuf is None or real == 0 else 100.0 * shuf / real
        )
        rows.append(row)
    return pd.DataFrame(rows)


def routes_table(results: Sequence[VariantResult], thresholds: Sequence[float]) -> pd.DataFrame:
    """Per-route share and metrics for the variants with a selector (Fig. 7's two modules)."""
    rows = []
    for r in results:
        if not r.has_routes:
            continue
        for route in ROUTES:
            entry = (r.metrics.get("routes") or {}).get(route) or {}
            row: dict[str, Any] = {
                "Variant": r.display,
                "Route": route,
                "Share %": None if _num(entry.get("share")) is None else 100 * entry["share"],
                "Queries": entry.get("n"),
            }
            for key, label in r1_columns(thresholds):
                row[label] = _num(entry.get(key))
            rows.append(row)
    return pd.DataFrame(rows)


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(0.0, a[1] - a[0]) + max(0.0, b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def route_examples(result: VariantResult, per_route: int) -> pd.DataFrame:
    """A few test queries of each route with ground truth, top-1 span and IoU (like Fig. 7).

    Deterministic choice: per route, the best-localized queries first and then the worst one, so
    a reader sees both what the route does well and how it fails.
    """
    columns = ["Route", "Video", "Query", "Ground truth (s)", "Top-1 (s)", "IoU"]
    if result.predictions is None or per_route <= 0 or not result.has_routes:
        return pd.DataFrame(columns=columns)
    by_route: dict[str, list[dict[str, Any]]] = {r: [] for r in ROUTES}
    with open(result.predictions, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                p = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{result.predictions}:{n}: not valid JSON ({err})") from None
            route = p.get("route")
            if route not in by_route or not p.get("topk"):
                continue
            top = [float(p["topk"][0][0]), float(p["topk"][0][1])]
            gt = [float(p["gt"][0]), float(p["gt"][1])]
            iou = float(p["iou"]) if _num(p.get("iou")) is not None else _iou(top, gt)
            by_route[route].append(
                {
                    "Route": route,
                    "Video": p.get("vid", ""),
                    "Query": p.get("query", ""),
                    "Ground truth (s)": f"{gt[0]:.1f}–{gt[1]:.1f}",
                    "Top-1 (s)": f"{top[0]:.1f}–{top[1]:.1f}",
                    "IoU": iou,
                    "_qid": str(p.get("qid", "")),
                }
            )
    rows: list[dict[str, Any]] = []
    for route in ROUTES:
        items = sorted(by_route[route], key=lambda e: (-e["IoU"], e["_qid"]))
        if len(items) > per_route:
            items = [*items[: per_route - 1], items[-1]]
        rows.extend(items)
    df = pd.DataFrame(rows, columns=[*columns, "_qid"])
    return df.drop(columns="_qid")


def cost_table(results: Sequence[VariantResult]) -> pd.DataFrame:
    """Parameters, training time, best epoch and batch-1 inference latency per variant."""
    rows = []
    for r in results:
        latency = r.metrics.get("latency_ms") or {}
        rows.append(
            {
                "Variant": r.display,
                "Parameters": r.train.get("parameters"),
                "Train time (s)": _num(r.train.get("train_seconds")),
                "Best epoch": r.train.get("best_epoch"),
                "Latency p50 (ms)": _num(latency.get("p50")),
                "Latency p95 (ms)": _num(latency.get("p95")),
            }
        )
    return pd.DataFrame(rows)


def data_tables(report: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Counts per split and skipped lines by reason, from the vocab step's data_report.json.

    Accepts both the DataReport layout (``lines``/``kept``/... per split) and the
    ``dynpath data-stats --json`` layout (``splits: {name: {...}}``).
    """
    if "splits" in report:
        splits = report["splits"]
        counts = pd.DataFrame(
            [
                {
                    "Split": s,
                    "Lines": v.get("lines"),
                    "Kept": v.get("kept"),
                    "Videos": v.get("videos"),
                    "Clipped ends": v.get("clipped"),
                    "Duplicates": v.get("duplicates"),
                    "Skipped": v.get("skipped_total"),
                }
                for s, v in splits.items()
            ]
        )
        reasons = {s: v.get("skipped") or {} for s, v in splits.items()}
    else:
        names: list[str] = []
        for key in ("lines", "kept", "videos"):
            names += [s for s in report.get(key, {}) if s not in names]
        skipped_list = report.get("skipped") or []
        reasons = dict(report.get("skipped_by_reason") or {})
        if not reasons:
            for s in skipped_list:
                split_reasons = reasons.setdefault(s["split"], {})
                split_reasons[s["reason"]] = split_reasons.get(s["reason"], 0) + 1
        counts = pd.DataFrame(
            [
                {
                    "Split": s,
                    "Lines": report.get("lines", {}).get(s),
                    "Kept": report.get("kept", {}).get(s),
                    "Videos": report.get("videos", {}).get(s),
                    "Clipped ends": report.get("clipped", {}).get(s),
                    "Duplicates": report.get("duplicates", {}).get(s),
                    "Skipped": sum((reasons.get(s) or {}).values()),
                }
                for s in names
            ]
        )
    order = {"train": 0, "val": 1, "test": 2}
    counts = counts.sort_values(
        "Split", key=lambda c: c.map(lambda s: order.get(s, 3)), kind="stable"
    )
    counts = counts.reset_index(drop=True)
    skipped = pd.DataFrame(
        [
            {"Split": s, "Reason": reason, "Lines": n}
            for s, by_reason in reasons.items()
            for reason, n in sorted(by_reason.items())
        ],
        columns=["Split", "Reason", "Lines"],
    )
    return counts, skipped


def ablation_csv(results: Sequence[VariantResult], thresholds: Sequence[float]) -> pd.DataFrame:
    """Machine-readable twin of the tables (one row per variant) for ``dvc plots``."""
    rows = []
    for r in results:
        row: dict[str, Any] = {"variant": r.name, "display": r.display}
        for k in (1, 5):
            for t in thresholds:
                row[metric_key(k, t)] = r.metric(metric_key(k, t))
        row["miou"] = r.metric("miou")
        for key, _ in r1_columns(thresholds):
            row[f"shuffled_{key}"] = r.shuffled(key)
        for route in ROUTES:
            row[f"share_{route}"] = r.route_share(route)
        rows.append(row)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- per-query analyses
#
# A "runs" mapping is seed -> per-query frame (:func:`read_queries`) of one variant, the primary
# seed first. Every analysis below is a pure function of such frames.

#: Query families of the synthetic benchmark (``family`` in synthetic_meta.json: the module each
#: family is designed for; dynpath.data.synthetic.FAMILIES, repeated so that reading results never
#: imports the video generator; a test keeps them equal).
FAMILY_LABELS: dict[str, str] = {
    "exploitation": "ordered sub-actions (exploitation-type)",
    "exploration": "held posture (exploration-type)",
}
META_FILE = "synthetic_meta.json"

#: The single-module variants the oracles are built from, by the route they stand for.
SINGLE_MODULES: dict[str, str] = {
    "exploitation": "exploitation_only",
    "exploration": "exploration_only",
}

#: The per-query metric the oracles choose on and the bootstrap compares (R@1 IoU>=0.5).
ORACLE_THRESHOLD = 0.5
#: Paired bootstrap: resamples of the test queries, the generator's fixed seed, the level.
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240
BOOTSTRAP_LEVEL = 0.95
#: The still-rising flag looks at the last 20% of the epochs (rounded up).
PLATEAU_FRACTION = 0.2

QUERY_COLUMNS = ["qid", "vid", "query", "route", "iou", "family"]

Runs = Mapping[int | None, pd.DataFrame]


def query_key(text: str) -> str:
    """Query text as matched against the meta file: case and runs of whitespace do not count."""
    return " ".join(str(text).split()).lower()


def load_families(path: Path) -> dict[tuple[str, str], str] | None:
    """(video, :func:`query_key`) -> family from ``synthetic_meta.json``; None if it is absent.

    The meta file lists every query of the generated benchmark (train and test; the validation
    split is carved from train, so its queries are there too).
    """
    path = Path(path)
    if not path.is_file():
        return None
    meta = _read_json(path)
    queries = meta.get("queries") if isinstance(meta, dict) else None
    if not isinstance(queries, list):
        raise DataError(f"{path}: no 'queries' list (not a synthetic_meta.json?)")
    out: dict[tuple[str, str], str] = {}
    for i, q in enumerate(queries):
        try:
            key, family = (str(q["vid"]), query_key(q["query"])), str(q["family"])
        except (KeyError, TypeError):
            raise DataError(f"{path}: queries[{i}] lacks vid, query or family") from None
        if out.setdefault(key, family) != family:
            raise DataError(f"{path}: query {key} is listed with two families")
    return out


def read_queries(path: Path, families: Mapping[tuple[str, str], str] | None = None) -> pd.DataFrame:
    """predictions.jsonl as one row per query: qid, vid, query, route, top-1 IoU, family.

    The IoU is that of the top-1 span with the (clipped) ground truth, 0 without a span, the
    same convention as the evaluate step's metrics; family is None when ``families`` has no
    entry for the query (or there is no meta file).
    """
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                p = json.loads(line)
                qid, vid, query = str(p["qid"]), str(p["vid"]), str(p["query"])
                gt = [float(p["gt"][0]), float(p["gt"][1])]
                top = p.get("topk") or []
                iou = _iou([float(top[0][0]), float(top[0][1])], gt) if top else 0.0
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{n}: not valid JSON ({err})") from None
            except (KeyError, TypeError, ValueError, IndexError) as err:
                raise DataError(f"{path}:{n}: not a prediction record ({err!r})") from None
            if qid in seen:
                raise DataError(f"{path}:{n}: query id {qid!r} appears twice")
            seen.add(qid)
            family = (families or {}).get((vid, query_key(query)))
            rows.append(
                {
                    "qid": qid,
                    "vid": vid,
                    "query": query,
                    "route": p.get("route"),
                    "iou": iou,
                    "family": family,
                }
            )
    return pd.DataFrame(rows, columns=QUERY_COLUMNS)


def r1_metrics(ious: Sequence[float] | np.ndarray, thresholds: Sequence[float]) -> dict[str, Any]:
    """R@1 at each threshold and mIoU (percent) from top-1 IoUs; None for no query."""
    arr = np.asarray(ious, dtype=np.float64)
    keys = [metric_key(1, t) for t in thresholds]
    if arr.size == 0:
        return dict.fromkeys([*keys, "miou"])
    out: dict[str, Any] = {metric_key(1, t): 100.0 * float(np.mean(arr >= t)) for t in thresholds}
    out["miou"] = 100.0 * float(np.mean(arr))
    return out


def family_order(families: Sequence[str]) -> list[str]:
    """The generator's families first, in :data:`FAMILY_LABELS` order, then any other sorted."""
    present = set(families)
    return [f for f in FAMILY_LABELS if f in present] + sorted(present - set(FAMILY_LABELS))


def _known(df: pd.DataFrame) -> pd.DataFrame:
    return df[df["family"].notna()]


def _mean(values: Sequence[Any]) -> float | None:
    nums = [float(v) for v in values if _num(v) is not None]
    return float(np.mean(nums)) if nums else None


def family_metrics(frames: Mapping[str, Runs], thresholds: Sequence[float]) -> pd.DataFrame:
    """(a) Per variant and query family: R@1 at each threshold and mIoU, mean over seeds.

    Columns: variant, family, seeds (runs averaged), queries (per run), the metric keys.
    Queries without a family (not in the meta file) are left out.
    """
    keys = [metric_key(1, t) for t in thresholds] + ["miou"]
    rows: list[dict[str, Any]] = []
    for variant, runs in frames.items():
        per_seed: dict[str, list[dict[str, Any]]] = {}
        for df in runs.values():
            for fam, group in _known(df).groupby("family", sort=False):
                entry = {"queries": len(group), **r1_metrics(group["iou"].to_numpy(), thresholds)}
                per_seed.setdefault(str(fam), []).append(entry)
        for fam in family_order(list(per_seed)):
            entries = per_seed[fam]
            row: dict[str, Any] = {
                "variant": variant,
                "family": fam,
                "seeds": len(entries),
                "queries": max(e["queries"] for e in entries),
            }
            row.update({k: _mean([e[k] for e in entries]) for k in keys})
            rows.append(row)
    return pd.DataFrame(rows, columns=["variant", "family", "seeds", "queries", *keys])


def route_family_counts(frames: Mapping[str, Runs]) -> pd.DataFrame:
    """(b) How each family is routed, per variant with a selector: the primary seed alone
    (``scope`` "primary") and summed over every seed (``scope`` "all seeds").

    Columns: variant, scope, seeds, family, queries, one count per route and ``share_<route>``
    (0..1 of the family's queries). Variants whose predictions carry no route are left out.
    """
    columns = ["variant", "scope", "seeds", "family", "queries"]
    columns += [*ROUTES, *(f"share_{r}" for r in ROUTES)]
    rows: list[dict[str, Any]] = []
    for variant, runs in frames.items():
        routed = [_known(df) for df in runs.values() if df["route"].notna().any()]
        if not routed:
            continue
        for scope, dfs in (("primary", routed[:1]), ("all seeds", routed)):
            both = pd.concat(dfs, ignore_index=True)
            for fam in family_order(list(both["family"].unique())):
                group = both[both["family"] == fam]
                row: dict[str, Any] = {
                    "variant": variant,
                    "scope": scope,
                    "seeds": len(dfs),
                    "family": fam,
                    "queries": len(group),
                }
                for route in ROUTES:
                    row[route] = int((group["route"] == route).sum())
                    row[f"share_{route}"] = row[route] / len(group) if len(group) else None
                rows.append(row)
    return pd.DataFrame(rows, columns=columns)


#: A seed whose selector sends at least this share of the test queries to one module has
#: collapsed onto it (the rich-get-richer loop of hard routing, docs/design.md).
COLLAPSE_SHARE = 0.95
#: |family gap| below this many points: the route does not follow the query family.
FAMILY_GAP_POINTS = 20.0


def route_seed_table(frames: Mapping[str, Runs]) -> pd.DataFrame:
    """(b') Routing per seed, per variant with a selector: the share of all test queries sent to
    each module, the same per family, whether the seed ``collapsed`` (one module takes at least
    :data:`COLLAPSE_SHARE` of the queries), the ``family_gap`` and ``follows_family``.

    ``family_gap``: the share of the exploitation-type (ordered sub-actions) queries routed to
    the exploitation module minus the share of the exploration-type (held posture) queries
    routed to it, in points: +100 routes exactly as the paper designs the modules, -100 exactly
    the other way round, 0 ignores the family. ``follows_family``: "as designed" / "reversed"
    when the gap is at least :data:`FAMILY_GAP_POINTS` either way, else "no"; None without both
    families.
    """
    rows: list[dict[str, Any]] = []
    for variant, runs in frames.items():
        for seed, df in runs.items():
            df = _known(df)
            if df.empty or not df["route"].notna().any():
                continue
            row: dict[str, Any] = {"variant": variant, "seed": seed, "queries": len(df)}
            shares = {r: float((df["route"] == r).mean()) for r in ROUTES}
            row.update({f"share_{r}": v for r, v in shares.items()})
            to_exploitation: dict[str, float] = {}
            for fam in family_order(list(df["family"].unique())):
                group = df[df["family"] == fam]
                fam_shares = {r: float((group["route"] == r).mean()) for r in ROUTES}
                row.update({f"{fam}_share_{r}": v for r, v in fam_shares.items()})
                to_exploitation[fam] = fam_shares[ROUTES[0]]
            row["collapsed"] = max(shares.values()) >= COLLAPSE_SHARE
            if all(r in to_exploitation for r in ROUTES):
                gap = 100.0 * (to_exploitation[ROUTES[0]] - to_exploitation[ROUTES[1]])
                row["family_gap"] = gap
                row["follows_family"] = (
                    "no"
                    if abs(gap) < FAMILY_GAP_POINTS
                    else "as designed"
                    if gap > 0
                    else "reversed"
                )
            else:
                row["family_gap"], row["follows_family"] = None, None
            rows.append(row)
    return pd.DataFrame(rows)


def route_seed_summary(table: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per variant: seeds, how many collapsed, how many route as designed / reversed / not by
    family."""
    out: dict[str, dict[str, Any]] = {}
    if table.empty:
        return out
    for variant, group in table.groupby("variant", sort=False):
        follows = [v for v in group["follows_family"] if isinstance(v, str)]
        out[str(variant)] = {
            "seeds": len(group),
            "collapsed": int(group["collapsed"].sum()),
            "as_designed": follows.count("as designed"),
            "reversed": follows.count("reversed"),
            "not_by_family": follows.count("no"),
        }
    return out


# --------------------------------------------------------------------------- oracles


@dataclass
class OracleAnalysis:
    """(c) The two single modules per family, and what routing between them could reach.

    ``rows``: one row per line of the table (``row``: exploitation_only, exploration_only,
    family_routing_oracle, per_query_oracle, and the reference variant when evaluated) with
    seeds, queries, R@1/mIoU over the test queries that have a family, and one R@1 IoU>=0.5
    column per family. ``preference``: per family, each module's R@1 IoU>=0.5 on validation and
    on test and the module each prefers. ``val_choice``: family -> module variant the
    family-routing oracle uses (chosen on validation), None when it could not be chosen.
    """

    available: bool
    notes: list[str] = field(default_factory=list)
    seeds: list[int | None] = field(default_factory=list)
    rows: pd.DataFrame = field(default_factory=pd.DataFrame)
    preference: pd.DataFrame = field(default_factory=pd.DataFrame)
    val_choice: dict[str, str] | None = None
    test_preference: dict[str, str] = field(default_factory=dict)


#: The key of :func:`_module_scores` for all the queries that have a family.
ANY_FAMILY = "*"


def _module_scores(
    runs: Mapping[str, Runs], seeds: Sequence[int | None], families: Sequence[str]
) -> dict[str, dict[str, tuple[float, float]]]:
    """module -> family -> (R@1 IoU>=0.5, mIoU), means over ``seeds``, on queries with a family;
    the family :data:`ANY_FAMILY` is all of them."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for module, by_seed in runs.items():
        out[module] = {}
        for fam in [*families, ANY_FAMILY]:
            r, m = [], []
            for s in seeds:
                group = _known(by_seed[s])
                if fam != ANY_FAMILY:
                    group = group[group["family"] == fam]
                ious = group["iou"].to_numpy()
                if ious.size:
                    r.append(100.0 * float(np.mean(ious >= ORACLE_THRESHOLD)))
                    m.append(100.0 * float(np.mean(ious)))
            if r:
                out[module][fam] = (float(np.mean(r)), float(np.mean(m)))
    return out


def _prefer(scores: Mapping[str, Mapping[str, tuple[float, float]]], fam: str) -> str | None:
    """The module with the higher R@1 IoU>=0.5 on ``fam``; ties by mIoU, then exploitation."""
    e, x = SINGLE_MODULES["exploitation"], SINGLE_MODULES["exploration"]
    se, sx = scores.get(e, {}).get(fam), scores.get(x, {}).get(fam)
    if se is None or sx is None:
        return None
    return e if se >= sx else x


def _row_metrics(
    name: str,
    per_seed_ious: Sequence[pd.DataFrame],
    thresholds: Sequence[float],
    families: Sequence[str],
) -> dict[str, Any]:
    """A table row: metrics of per-seed frames (columns iou, family), means over the seeds."""
    keys = [metric_key(1, t) for t in thresholds] + ["miou"]
    entries = []
    for df in per_seed_ious:
        entry = r1_metrics(df["iou"].to_numpy(), thresholds)
        for fam in families:
            ious = df.loc[df["family"] == fam, "iou"].to_numpy()
            entry[fam] = r1_metrics(ious, [ORACLE_THRESHOLD])[metric_key(1, ORACLE_THRESHOLD)]
        entries.append(entry)
    row: dict[str, Any] = {
        "row": name,
        "seeds": len(entries),
        "queries": max((len(df) for df in per_seed_ious), default=0),
    }
    row.update({k: _mean([e[k] for e in entries]) for k in [*keys, *families]})
    return row


def oracle_analysis(
    test: Mapping[str, Runs],
    val: Mapping[str, Runs],
    thresholds: Sequence[float],
    reference: str | None = MAIN_VARIANT,
) -> OracleAnalysis:
    """(c) Module x family on test, and two oracles built from the single-module variants.

    - family-routing oracle: every query of a family goes to the ONE module that is better for
      that family on VALIDATION (R@1 IoU>=0.5 per family, mean over the seeds with validation
      predictions; ties by mIoU, then the exploitation module), scored on test: what a selector
      that only had to recognise the family could reach, chosen without looking at test;
    - per-query oracle: every test query takes the better of the two modules' top-1 (max IoU),
      an upper bound no selector can exceed.

    Test scores pair the two modules seed by seed (the seeds both were evaluated with) and are
    means over those seeds, on the test queries that have a family.
    """
    e, x = SINGLE_MODULES["exploitation"], SINGLE_MODULES["exploration"]
    absent = [m for m in (e, x) if not test.get(m)]
    if absent:
        return OracleAnalysis(
            available=False,
            notes=[
                f"{' and '.join(absent)} not evaluated: the module x family comparison and "
                "the oracles need both single-module variants."
            ],
        )
    seeds = [s for s in test[e] if s in test[x]]
    if not seeds:
        return OracleAnalysis(
            available=False,
            notes=[f"{e} and {x} share no evaluated training seed: nothing to pair."],
        )
    notes: list[str] = []
    paired: list[pd.DataFrame] = []
    for s in seeds:
        a = _known(test[e][s])[["qid", "family", "iou"]]
        b = _known(test[x][s])[["qid", "iou"]]
        paired.append(a.merge(b, on="qid", suffixes=("_e", "_x"), validate="one_to_one"))
    families = family_order(list(pd.concat(paired)["family"].unique()))
    if not families:
        return OracleAnalysis(
            available=False,
            notes=[
                f"No test query of {e} and {x} has a family in the meta file: nothing to compare."
            ],
        )

    # which module each family prefers, on validation (the oracle's choice) and on test
    test_scores = _module_scores({e: test[e], x: test[x]}, seeds, families)
    val_seeds = [s for s in (val.get(e) or {}) if s in (val.get(x) or {})]
    val_choice: dict[str, str] | None = None
    val_scores: dict[str, dict[str, tuple[float, float]]] = {}
    if not val_seeds:
        lacking = [m for m in (e, x) if not val.get(m)]
        notes.append(
            f"No val_predictions.jsonl for {' and '.join(lacking) or 'a common seed'}: the "
            "family-routing oracle, which must be chosen on validation, is skipped."
        )
    else:
        val_scores = _module_scores({e: val[e], x: val[x]}, val_seeds, families)
        val_choice = {}
        for fam in families:
            choice = _prefer(val_scores, fam)
            if choice is None:
                choice = _prefer(val_scores, ANY_FAMILY) or e
                notes.append(
                    f"No validation query of family {fam!r}: the family-routing oracle sends it "
                    f"to {choice}, the better module over all validation queries."
                )
            val_choice[fam] = choice
    test_pref = {fam: p for fam in families if (p := _prefer(test_scores, fam)) is not None}

    pref_rows = []
    for fam in families:
        pref_rows.append(
            {
                "family": fam,
                f"val_{e}": val_scores.get(e, {}).get(fam, (None,))[0],
                f"val_{x}": val_scores.get(x, {}).get(fam, (None,))[0],
                "val_prefers": _prefer(val_scores, fam),
                f"test_{e}": test_scores[e].get(fam, (None,))[0],
                f"test_{x}": test_scores[x].get(fam, (None,))[0],
                "test_prefers": test_pref.get(fam),
                "oracle_routes_to": None if val_choice is None else val_choice[fam],
            }
        )

    def frame(df: pd.DataFrame, column: str) -> pd.DataFrame:
        return pd.DataFrame({"family": df["family"], "iou": df[column]})

    rows = [
        _row_metrics(e, [frame(d, "iou_e") for d in paired], thresholds, families),
        _row_metrics(x, [frame(d, "iou_x") for d in paired], thresholds, families),
    ]
    if val_choice is not None:
        routed = []
        for d in paired:
            to_e = d["family"].map(lambda f: val_choice[f] == e).to_numpy(dtype=bool)
            routed.append(
                pd.DataFrame({"family": d["family"], "iou": np.where(to_e, d["iou_e"], d["iou_x"])})
            )
        rows.append(_row_metrics("family_routing_oracle", routed, thresholds, families))
    best = [
        pd.DataFrame({"family": d["family"], "iou": np.maximum(d["iou_e"], d["iou_x"])})
        for d in paired
    ]
    rows.append(_row_metrics("per_query_oracle", best, thresholds, families))
    if reference is not None and test.get(reference):
        ref = [_known(df)[["family", "iou"]] for df in test[reference].values()]
        rows.append(_row_metrics(reference, ref, thresholds, families))
    return OracleAnalysis(
        available=True,
        notes=notes,
        seeds=list(seeds),
        rows=pd.DataFrame(rows),
        preference=pd.DataFrame(pref_rows),
        val_choice=val_choice,
        test_preference=test_pref,
    )


# --------------------------------------------------------------------------- seeds


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
                [v for run in runs if (v := _num(run.metrics.get(k))) is not None], dtype=float
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


# --------------------------------------------------------------------------- still rising


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
        for h in sorted(history, key=lambda e: _num(e.get("epoch")) or 0.0)
        if (v := _num(h.get(key))) is not None
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
            epochs = [int(e) for h in run.history if (e := _num(h.get("epoch"))) is not None]
            early = bool(run.stopped_early)
            flags.append((run.seed, False if early else still_rising(run.history, key)))
            scored = [
                (v, e)
                for h in run.history
                if (v := _num(h.get(key))) is not None and (e := _num(h.get("epoch"))) is not None
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
