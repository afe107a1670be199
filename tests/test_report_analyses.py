"""The report's analyses on hand-made predictions: families, routes x family, oracles, seeds,
paired bootstrap, the still-rising flag; and the report step that wires them (summary.json).

Every prediction's top-1 span is [0, a] against the ground truth [0, 10], so its IoU is a / 10
and each expected number below can be checked by hand (a avoids 3, 5 and 7, the thresholds).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from dynpath.config import Config
from dynpath.errors import DataError
from dynpath.report.tables import (
    FAMILY_LABELS,
    SeedRun,
    VariantResult,
    bootstrap_vs_reference,
    family_metrics,
    load_families,
    oracle_analysis,
    paired_bootstrap,
    read_queries,
    route_family_counts,
    seed_stats,
    still_rising,
    still_rising_flags,
)
from dynpath.steps import report

E, X = "exploitation", "exploration"  # the meta file's family names (and the route names)


def _pred(qid: str, vid: str, query: str, iou: float, route: str | None = None) -> dict[str, Any]:
    return {
        "qid": qid,
        "vid": vid,
        "query": query,
        "topk": [[0.0, 10.0 * iou, 0.9], [12.0, 14.0, 0.1]],
        "route": route,
        "gt": [0.0, 10.0],
        "duration": 20.0,
    }


def _write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _frame(
    ious: list[float],
    families: list[str | None],
    routes: list[str | None] | None = None,
    prefix: str = "q",
) -> pd.DataFrame:
    """A per-query frame as read_queries returns it."""
    n = len(ious)
    return pd.DataFrame(
        {
            "qid": [f"{prefix}{i}" for i in range(n)],
            "vid": [f"v{i}" for i in range(n)],
            "query": [f"query {i}" for i in range(n)],
            "route": routes or [None] * n,
            "iou": ious,
            "family": families,
        }
    )


# --------------------------------------------------------------------------- families


def test_family_labels_match_the_generator() -> None:
    from dynpath.data.synthetic import FAMILIES

    assert set(FAMILY_LABELS) == set(FAMILIES.values()) == {E, X}


def test_per_family_metrics_from_predictions_and_meta(tmp_path: Path) -> None:
    meta = {
        "queries": [
            {"vid": "v0", "split": "test", "query": "The red circle  moves left", "family": E},
            {"vid": "v0", "split": "test", "query": "the blue square is hollow", "family": X},
            {"vid": "v1", "split": "test", "query": "the red circle grows", "family": E},
            {"vid": "v1", "split": "test", "query": "the cross stays big", "family": X},
        ]
    }
    (tmp_path / "synthetic_meta.json").write_text(json.dumps(meta))
    families = load_families(tmp_path / "synthetic_meta.json")
    assert families is not None and len(families) == 4
    queries = [
        ("v0", "the red circle moves left"),  # case and spaces differ from the meta: same query
        ("v1", "the red circle grows"),
        ("v0", "the blue square is hollow"),
        ("v1", "the cross stays big"),
        ("v2", "the red circle grows"),  # another video: not in the meta
    ]
    seeds = {1: [0.8, 0.2, 0.6, 0.4, 1.0], 2: [1.0, 0.6, 0.0, 0.4, 1.0]}
    runs = {}
    for seed, ious in seeds.items():
        path = _write_jsonl(
            tmp_path / f"s{seed}.jsonl",
            [
                _pred(f"q{i}", v, q, iou)
                for i, ((v, q), iou) in enumerate(zip(queries, ious, strict=True))
            ],
        )
        runs[seed] = read_queries(path, families)
    assert list(runs[1]["family"][:4]) == [E, E, X, X] and pd.isna(runs[1]["family"][4])
    assert runs[1]["iou"].tolist() == pytest.approx([0.8, 0.2, 0.6, 0.4, 1.0])

    df = family_metrics({"dynamic": runs}, (0.3, 0.5, 0.7)).set_index("family")
    # seed 1: E [0.8, 0.2] -> 50/50/50, mIoU 50; X [0.6, 0.4] -> 100/50/0, mIoU 50
    # seed 2: E [1.0, 0.6] -> 100/100/50, mIoU 80; X [0.0, 0.4] -> 50/0/0, mIoU 20
    assert list(df.index) == [E, X]
    assert df.loc[E, ["r1_iou0.3", "r1_iou0.5", "r1_iou0.7", "miou"]].tolist() == pytest.approx(
        [75.0, 75.0, 50.0, 65.0]
    )
    assert df.loc[X, ["r1_iou0.3", "r1_iou0.5", "r1_iou0.7", "miou"]].tolist() == pytest.approx(
        [75.0, 25.0, 0.0, 35.0]
    )
    assert df.loc[E, "seeds"] == 2 and df.loc[E, "queries"] == 2


def test_meta_without_families_and_missing_meta(tmp_path: Path) -> None:
    assert load_families(tmp_path / "synthetic_meta.json") is None
    (tmp_path / "synthetic_meta.json").write_text(json.dumps({"queries": [{"vid": "v0"}]}))
    with pytest.raises(DataError, match=r"synthetic_meta\.json.*queries\[0\]"):
        load_families(tmp_path / "synthetic_meta.json")


def test_bad_prediction_line_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "predictions.jsonl"
    path.write_text(json.dumps(_pred("q0", "v0", "a", 0.4)) + "\n{not json\n")
    with pytest.raises(DataError, match=r"predictions\.jsonl:2"):
        read_queries(path)


def test_route_by_family_counts_primary_and_all_seeds() -> None:
    fams = [E, E, X, X]
    runs = {
        1: _frame([0.8] * 4, fams, [E, E, E, X]),
        2: _frame([0.8] * 4, fams, [E, X, X, X]),
    }
    no_selector = {1: _frame([0.8] * 4, fams)}
    df = route_family_counts({"dynamic": runs, "sum_fusion": no_selector})
    assert set(df["variant"]) == {"dynamic"}  # no route, no row
    got = {
        (r["scope"], r["family"]): (r["queries"], r[E], r[X], r["share_exploitation"])
        for r in df.to_dict(orient="records")
    }
    assert got == {
        ("primary", E): (2, 2, 0, 1.0),
        ("primary", X): (2, 1, 1, 0.5),
        ("all seeds", E): (4, 3, 1, 0.75),
        ("all seeds", X): (4, 1, 3, 0.25),
    }


# --------------------------------------------------------------------------- oracles


def _oracle_case(with_val: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validation prefers exploitation for family E and exploration for X; test prefers
    exploration for both (E: R@1 50 vs 100; X: 50 vs 50, mIoU 30 vs 50)."""
    fams = [E, E, X, X]
    test = {
        "exploitation_only": {1: _frame([0.8, 0.2, 0.6, 0.0], fams)},
        "exploration_only": {1: _frame([0.6, 0.8, 0.2, 0.8], fams)},
        "dynamic": {1: _frame([0.8, 0.8, 0.8, 0.2], fams)},
    }
    val = {
        "exploitation_only": {1: _frame([0.8, 0.8, 0.2, 0.2], fams, prefix="v")},
        "exploration_only": {1: _frame([0.2, 0.2, 0.8, 0.8], fams, prefix="v")},
    }
    return test, (val if with_val else {})


def test_oracles_follow_validation_not_test() -> None:
    test, val = _oracle_case()
    o = oracle_analysis(test, val, (0.3, 0.5, 0.7))
    assert o.available and o.seeds == [1]
    assert o.val_choice == {E: "exploitation_only", X: "exploration_only"}
    assert o.test_preference == {E: "exploration_only", X: "exploration_only"}
    pref = o.preference.set_index("family")
    assert pref.loc[E, "val_prefers"] == "exploitation_only"
    assert pref.loc[E, "test_prefers"] == "exploration_only"
    rows = o.rows.set_index("row")
    # family routing (val choice): E from exploitation [0.8, 0.2], X from exploration [0.2, 0.8]
    assert rows.loc["family_routing_oracle", "r1_iou0.5"] == pytest.approx(50.0)
    assert rows.loc["family_routing_oracle", E] == pytest.approx(50.0)
    # routing on the TEST preference would have reached 75: the oracle did not look at test
    # per query: max -> [0.8, 0.8, 0.6, 0.8]: every query a hit, mIoU 75
    assert rows.loc["per_query_oracle", "r1_iou0.5"] == pytest.approx(100.0)
    assert rows.loc["per_query_oracle", "miou"] == pytest.approx(75.0)
    assert rows.loc["exploitation_only", "r1_iou0.5"] == pytest.approx(50.0)
    assert rows.loc["exploration_only", "r1_iou0.5"] == pytest.approx(75.0)
    assert rows.loc["dynamic", "r1_iou0.5"] == pytest.approx(75.0)


def test_oracle_without_validation_or_a_module() -> None:
    test, val = _oracle_case(with_val=False)
    o = oracle_analysis(test, val, (0.5,))
    assert o.available and o.val_choice is None
    assert "family_routing_oracle" not in set(o.rows["row"])
    assert "per_query_oracle" in set(o.rows["row"])
    assert any("val_predictions.jsonl" in n for n in o.notes)
    del test["exploration_only"]
    o = oracle_analysis(test, val, (0.5,))
    assert not o.available and "exploration_only" in o.notes[0]


def test_family_without_validation_queries_goes_to_the_better_module_overall() -> None:
    test, _ = _oracle_case()
    val = {  # validation holds posture queries only; exploration is better on them
        "exploitation_only": {1: _frame([0.2, 0.2], [X, X], prefix="v")},
        "exploration_only": {1: _frame([0.8, 0.8], [X, X], prefix="v")},
    }
    o = oracle_analysis(test, val, (0.5,))
    assert o.val_choice == {E: "exploration_only", X: "exploration_only"}
    assert any(f"family {E!r}" in n and "exploration_only" in n for n in o.notes)
    assert o.preference.set_index("family").loc[E, "oracle_routes_to"] == "exploration_only"


# --------------------------------------------------------------------------- seeds


def test_paired_bootstrap_interval() -> None:
    rng = np.random.default_rng(3)
    diff = rng.choice([-1.0, 0.0, 1.0], size=200, p=[0.2, 0.5, 0.3])
    point, low, high = paired_bootstrap(diff)
    assert low <= point <= high and low < high
    assert point == pytest.approx(diff.mean())
    assert paired_bootstrap(diff) == (point, low, high)  # deterministic
    assert paired_bootstrap(np.zeros(50)) == (0.0, 0.0, 0.0)  # identical rows
    better = np.where(np.arange(200) % 4 == 0, 0.0, 1.0)  # 3 of 4 queries won, none lost
    _, low, _ = paired_bootstrap(better)
    assert low > 0.5
    assert all(math.isnan(v) for v in paired_bootstrap([]))


def test_bootstrap_against_dynamic_over_seeds() -> None:
    fams: list[str | None] = [None] * 40
    dyn = {1: _frame([0.8] * 40, fams), 2: _frame([0.8] * 20 + [0.2] * 20, fams)}
    same = {1: dyn[1].copy(), 2: dyn[2].copy()}
    worse = {1: _frame([0.2] * 40, fams)}
    df = bootstrap_vs_reference({"dynamic": dyn, "copy": same, "worse": worse}).set_index("variant")
    assert "dynamic" not in df.index
    assert (df.loc["copy", "diff"], df.loc["copy", "low"], df.loc["copy", "high"]) == (0, 0, 0)
    assert not df.loc["copy", "excludes_zero"]
    # dynamic's hits averaged over seeds: 1 for 20 queries, 1/2 for 20: mean 75%; worse: 0
    assert df.loc["worse", "diff"] == pytest.approx(-75.0)
    assert df.loc["worse", "high"] < 0 and df.loc["worse", "excludes_zero"]
    assert df.loc["worse", "queries"] == 40


def test_seed_stats_mean_and_sample_sd() -> None:
    two = VariantResult(
        "dynamic",
        "Ours",
        {"r1_iou0.5": 70.0, "miou": 50.0},
        runs=[
            SeedRun(1, {"r1_iou0.5": 70.0, "miou": 50.0}),
            SeedRun(2, {"r1_iou0.5": 80.0, "miou": 60.0}),
        ],
        missing_seeds=[3],
    )
    single = {"r1_iou0.5": 60.0, "miou": 40.0}
    one = VariantResult("sum_fusion", "Sum", single, runs=[SeedRun(1, single)])
    df = seed_stats([two, one], (0.5,)).set_index("variant")
    assert df.loc["dynamic", "r1_iou0.5_mean"] == pytest.approx(75.0)
    assert df.loc["dynamic", "r1_iou0.5_sd"] == pytest.approx(math.sqrt(50.0))  # n - 1
    assert df.loc["dynamic", "n"] == 2 and df.loc["dynamic", "missing_seeds"] == [3]
    assert df.loc["sum_fusion", "n"] == 1
    assert df.loc["sum_fusion", "r1_iou0.5_sd"] is None or math.isnan(
        df.loc["sum_fusion", "r1_iou0.5_sd"]
    )


# --------------------------------------------------------------------------- still rising


def _history(values: list[float]) -> list[dict[str, Any]]:
    return [{"epoch": i + 1, "val_r1_iou0.5": v} for i, v in enumerate(values)]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], True),  # rising to the end
        ([50.0] * 10, False),  # flat
        ([10, 60, 50, 50, 50, 50, 50, 50, 55, 60], False),  # the end only ties the best
        ([50.0] * 9 + [50.5], True),  # a new best in the last epoch
        ([1, 2, 3, 5, 4], False),  # 5 epochs: the window is ceil(1.0) = 1, not 2
        ([1, 2, 3, 4, 5, 5], True),  # 6 epochs: window ceil(1.2) = 2
        ([42.0], None),  # one epoch: nothing to compare
    ],
)
def test_still_rising(values: list[float], expected: bool | None) -> None:
    assert still_rising(_history(values), "val_r1_iou0.5") is expected


def test_still_rising_flags_any_seed() -> None:
    flat, rising = _history([50.0] * 10), _history(list(range(10)))
    r = VariantResult(
        "dynamic",
        "Ours",
        {},
        runs=[SeedRun(1, {}, history=flat), SeedRun(2, {}, history=rising)],
    )
    flags = still_rising_flags([r], "r1_iou0.5")["dynamic"]
    assert (flags["still_rising"], flags["seeds"], flags["early_stops"]) == (True, [2], 0)
    assert flags["stops"]["1"] == {"epochs": 10, "best_epoch": 1, "stopped": "epoch_cap"}
    assert flags["stops"]["2"] == {"epochs": 10, "best_epoch": 10, "stopped": "epoch_cap"}


def test_a_seed_stopped_early_is_a_plateau_not_still_rising() -> None:
    """Seed 2's patience ran out at epoch 6 (train_summary.json's stopped_early): by the window
    rule alone its last epochs (a new best in them) would read as still rising."""
    early = _history([1, 2, 3, 4, 5, 9])
    capped = _history(list(range(10)))
    r = VariantResult(
        "dynamic",
        "Ours",
        {},
        runs=[SeedRun(1, {}, history=capped), SeedRun(2, {}, history=early, stopped_early=True)],
    )
    flags = still_rising_flags([r], "r1_iou0.5")["dynamic"]
    assert flags["seeds"] == [1] and flags["early_stops"] == 1
    assert flags["stops"]["2"] == {"epochs": 6, "best_epoch": 6, "stopped": "early_stop"}
    assert flags["stops"]["1"]["stopped"] == "epoch_cap"
    assert still_rising(early, "val_r1_iou0.5") is True  # what the window rule alone says


def test_route_seed_table_counts_collapse_and_family_split() -> None:
    import pandas as pd

    from dynpath.report.tables import route_seed_summary, route_seed_table

    fams = ["exploitation"] * 10 + ["exploration"] * 10

    def frame(routes: list[str]) -> pd.DataFrame:
        return pd.DataFrame({"qid": range(20), "route": routes, "family": fams, "iou": 0.5})

    e, x = "exploitation", "exploration"
    designed = [e] * 9 + [x] + [x] * 8 + [e] * 2  # gap 90 - 20 = +70
    collapsed = [e] * 19 + [x]  # gap 100 - 90 = +10: no family split
    reversed_ = [x] * 8 + [e] * 2 + [e] * 7 + [x] * 3  # gap 20 - 70 = -50
    table = route_seed_table(
        {"dynamic": {1: frame(designed), 2: frame(collapsed), 3: frame(reversed_)}}
    )
    assert list(table["collapsed"]) == [False, True, False]
    assert list(table["family_gap"]) == pytest.approx([70.0, 10.0, -50.0])
    assert list(table["follows_family"]) == ["as designed", "no", "reversed"]
    assert table.loc[0, "exploitation_share_exploitation"] == pytest.approx(0.9)
    assert table.loc[1, "share_exploitation"] == pytest.approx(0.95)  # at the threshold
    assert route_seed_summary(table) == {
        "dynamic": {
            "seeds": 3,
            "collapsed": 1,
            "as_designed": 1,
            "reversed": 1,
            "not_by_family": 1,
        }
    }


# --------------------------------------------------------------------------- the report step


def _metrics(variant: str, r05: float) -> dict[str, Any]:
    return {
        "variant": variant,
        "arch": variant,
        "split": "test",
        "n": 4,
        "r1_iou0.3": r05 + 10,
        "r1_iou0.5": r05,
        "r1_iou0.7": r05 - 10,
        "miou": r05 - 5,
        "shuffled": {},
        "routes": {},
        "latency_ms": {"p50": 1.0, "p95": 2.0},
        "mlflow_run_id": None,
    }


def write_seeded_fixture(
    root: Path, seeds: list[int], with_meta: bool = True, with_val: bool = True
) -> tuple[Path, Path, Path]:
    """Three variants x ``seeds`` as train/evaluate write them, the oracle case's predictions,
    and (optionally) a synthetic_meta.json in ``root/data``."""
    eval_dir, models_dir, data = root / "eval", root / "models", root / "data"
    test, val = _oracle_case()
    queries = [("v0", "the red circle moves left"), ("v0", "the red circle grows")]
    queries += [("v1", "the cross stays big"), ("v1", "the square is hollow")]
    vqueries = [("v9", q) for _, q in queries]
    fams = [E, E, X, X]
    for variant in ("exploitation_only", "exploration_only", "dynamic"):
        for k, seed in enumerate(seeds):
            sub = Path() if k == 0 else Path("seeds") / str(seed)
            edir, mdir = eval_dir / variant / sub, models_dir / variant / sub
            ious = test[variant][1]["iou"].tolist()
            routes = [E, X, X, X] if variant == "dynamic" else [None] * 4
            _write_jsonl(
                edir / "predictions.jsonl",
                [
                    _pred(f"test-{i}", v, q, iou, r)
                    for i, ((v, q), iou, r) in enumerate(zip(queries, ious, routes, strict=True))
                ],
            )
            if with_val and variant in val:
                vious = val[variant][1]["iou"].tolist()
                _write_jsonl(
                    edir / "val_predictions.jsonl",
                    [
                        _pred(f"val-{i}", v, q, iou)
                        for i, ((v, q), iou) in enumerate(zip(vqueries, vious, strict=True))
                    ],
                )
            r05 = 100.0 * float(np.mean(np.array(ious) >= 0.5)) + k
            (edir / "metrics.json").write_text(json.dumps(_metrics(variant, r05)))
            mdir.mkdir(parents=True, exist_ok=True)
            rising = variant == "exploration_only" and k == len(seeds) - 1
            values = list(range(10)) if rising else [50.0] * 10
            (mdir / "history.json").write_text(json.dumps(_history(values)))
            (mdir / "train_summary.json").write_text(
                json.dumps({"variant": variant, "arch": variant, "seed": seed})
            )
    if with_meta:
        data.mkdir(parents=True)
        meta = [
            {"vid": v, "split": s, "query": q, "family": f}
            for s, qs in (("test", queries), ("train", vqueries))
            for (v, q), f in zip(qs, fams, strict=True)
        ]
        (data / "synthetic_meta.json").write_text(json.dumps({"queries": meta}))
    return eval_dir, models_dir, data


def _cfg(data_root: Path, seeds: list[int]) -> Config:
    return Config.model_validate(
        {
            "seed": 5,
            "seeds": seeds,
            "data": {"dataset": "synthetic", "name": "t", "root": str(data_root)},
            "variants": {"exploitation_only": {}, "exploration_only": {}, "dynamic": {}},
            "tracking": {"enabled": False, "uri": "sqlite:///unused.db"},
        }
    )


def test_report_with_seeds_families_and_oracles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    eval_dir, models_dir, data = write_seeded_fixture(tmp_path, [11, 22])
    report.run(_cfg(data, [11, 22]), eval_dir, models_dir, tmp_path / "r")
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["seeds"]["configured"] == [11, 22] and s["seeds"]["primary"] == 11
    assert s["seeds"]["bootstrap"]["resamples"] == 2000
    dyn = s["variants"]["dynamic"]
    assert dyn["seeds"]["evaluated"] == [11, 22] and dyn["seeds"]["n"] == 2
    assert dyn["seeds"]["mean"]["r1_iou0.5"] == pytest.approx(75.5)  # 75 and 76
    assert dyn["seeds"]["sd"]["r1_iou0.5"] == pytest.approx(math.sqrt(0.5))
    assert dyn["vs_dynamic"] is None
    vs = s["variants"]["exploitation_only"]["vs_dynamic"]
    assert vs["diff"] == pytest.approx(-25.0) and vs["queries"] == 4
    assert s["variants"]["exploration_only"]["still_rising"] is True
    assert s["variants"]["exploration_only"]["still_rising_seeds"] == [22]
    assert s["variants"]["dynamic"]["still_rising"] is False
    fam = s["families"]["variants"]["dynamic"]
    assert fam[E]["r1_iou0.5"] == pytest.approx(100.0) and fam[X]["r1_iou0.5"] == pytest.approx(50)
    assert s["families"]["unmatched_test_queries"] == {
        "exploitation_only": 0,
        "exploration_only": 0,
        "dynamic": 0,
    }
    routes = s["routes_by_family"]["dynamic"]
    assert routes["primary"][X]["exploration"] == 2 and routes["all_seeds"][X]["exploration"] == 4
    assert routes["all_seeds"][E] == {
        "exploitation": 2,
        "exploration": 2,
        "queries": 4,
        "seeds": 2,
        "share_exploitation": 0.5,
        "share_exploration": 0.5,
    }
    o = s["oracle"]
    assert o["available"] and o["val_choice"] == {E: "exploitation_only", X: "exploration_only"}
    assert o["rows"]["family_routing_oracle"]["r1_iou0.5"] == pytest.approx(50.0)
    assert o["rows"]["family_routing_oracle"]["r1_iou0.5_by_family"] == {E: 50.0, X: 50.0}
    assert o["rows"]["exploration_only"]["r1_iou0.5_by_family"] == {E: 100.0, X: 50.0}
    assert o["preference"][E]["val_prefers"] == "exploitation_only"
    assert o["preference"][E]["test_prefers"] == "exploration_only"
    assert o["rows"]["per_query_oracle"]["r1_iou0.5"] == pytest.approx(100.0)
    md = (tmp_path / "r" / "report.md").read_text()
    for heading in (
        "## Ablation over seeds: mean ± sd and paired intervals",
        "## Per query family",
        "## Routes by query family",
        "## Single modules by family, and oracles",
    ):
        assert heading in md
    # the spread over seeds leads; the primary seed's Tables III/IV layout comes second
    assert md.index("## Ablation over seeds") < md.index("## Ablation (layout of Tables III/IV)")
    assert "Routes per training seed" in md and "Follows family" in md
    assert "they disagree: the family-routing oracle follows validation" in md
    assert "Still rising at the end of training: exploration module only" in md
    assert "95% interval" in md and "reference" in md
    html = (tmp_path / "r" / "report.html").read_text()
    assert "family-routing oracle (chosen on val)" in html
    assert (tmp_path / "r" / "ablation.csv").is_file()


def test_report_on_a_real_dataset_single_seed_without_val(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    eval_dir, models_dir, data = write_seeded_fixture(tmp_path, [11], with_meta=False)
    report.run(_cfg(data, [11]), eval_dir, models_dir, tmp_path / "r")
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["families"] is None and s["routes_by_family"] is None and s["oracle"] is None
    assert any("synthetic_meta.json" in n for n in s["analysis_notes"])
    assert s["variants"]["dynamic"]["seeds"]["sd"]["r1_iou0.5"] is None
    assert s["variants"]["exploitation_only"]["vs_dynamic"]["queries"] == 4  # still per query
    md = (tmp_path / "r" / "report.md").read_text()
    assert "this dataset has no query families" in md and "± n/a" in md


def test_report_without_val_predictions_or_a_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    eval_dir, models_dir, data = write_seeded_fixture(tmp_path, [11], with_val=False)
    report.run(_cfg(data, [11, 33]), eval_dir, models_dir, tmp_path / "r")
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["oracle"]["available"] and s["oracle"]["val_choice"] is None
    assert "family_routing_oracle" not in s["oracle"]["rows"]
    assert any("val_predictions.jsonl" in n for n in s["oracle"]["notes"])
    assert s["variants"]["dynamic"]["seeds"]["missing"] == [33]
    assert "Seeds not evaluated" in (tmp_path / "r" / "report.md").read_text()
