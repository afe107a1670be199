"""Per-query frames and the analyses by query family and route.

A "runs" mapping is seed -> per-query frame (:func:`read_queries`) of one variant, the primary
seed first. Every analysis here and in :mod:`dynpath.report.oracles` and
:mod:`dynpath.report.seed_stats` is a pure function of such frames, so every number can be
recomputed by hand from predictions.jsonl. Together they answer "can this ablation tell the
variants apart?". The query families come from the synthetic benchmark's ``synthetic_meta.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dynpath.engine.metrics import metric_key
from dynpath.errors import DataError
from dynpath.report.results import ROUTES, finite, read_json, span_iou

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
    meta = read_json(path)
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
                iou = span_iou([float(top[0][0]), float(top[0][1])], gt) if top else 0.0
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


def with_family(df: pd.DataFrame) -> pd.DataFrame:
    """The rows whose query has a family (in the meta file)."""
    return df[df["family"].notna()]


def mean_of(values: Sequence[Any]) -> float | None:
    """Mean of the finite values; None when there is none."""
    nums = [float(v) for v in values if finite(v) is not None]
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
            for fam, group in with_family(df).groupby("family", sort=False):
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
            row.update({k: mean_of([e[k] for e in entries]) for k in keys})
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
        routed = [with_family(df) for df in runs.values() if df["route"].notna().any()]
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
            df = with_family(df)
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
