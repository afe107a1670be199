"""A real `dvc repro` of the tiny profile in a temporary copy of the repository, then what a
params change reruns: nothing twice, one variant alone, evaluation without training.

Slow (a minute or two on 2 CPUs): the whole DAG runs, synth to report, once; the later checks use
`dvc repro --dry` / `dvc status` except for the one-variant change, which really reruns.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from dvc_project import RAN, copy_repo, own_copy, run, set_params, would_run

from dynpath.profiles import VARIANT_NAMES, use_profile

pytestmark = pytest.mark.slow


@dataclass
class Project:
    repo: Path
    first: str  # output of the first `dvc repro`
    seconds: float


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    repo = copy_repo(tmp_path_factory.mktemp("dvc") / "repo")
    use_profile("tiny", repo / "params.yaml")
    for stale in ("dvc.lock", "mlflow.db"):
        (repo / stale).unlink(missing_ok=True)
    run(repo, "git", "init", "-q", "-b", "main")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "tiny")
    t0 = time.perf_counter()
    first = run(repo, "dvc", "repro")
    seconds = time.perf_counter() - t0
    print(f"tiny dvc repro: {seconds:.1f} s")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "tiny results")
    yield Project(repo, first, seconds)


def test_full_repro_runs_every_stage_and_reports(project: Project) -> None:
    ran = set(RAN.findall(project.first))
    expected = {"check", "data", "extract", "vocab", "report"}
    expected |= {f"{s}@{v}" for s in ("train", "evaluate") for v in VARIANT_NAMES}
    assert ran == expected
    repo = project.repo
    summary = json.loads((repo / "reports" / "summary.json").read_text())
    assert set(summary["variants"]) == set(VARIANT_NAMES) and summary["missing"] == []
    assert [c["name"] for c in summary["checks"]]  # recorded (tiny is not expected to pass)
    html = (repo / "reports" / "report.html").read_text()
    assert "<script" not in html and 'src="data:image/png;base64,' in html
    for v in VARIANT_NAMES:
        m = json.loads((repo / "outputs" / "eval" / v / "metrics.json").read_text())
        assert 0.0 <= m["r1_iou0.5"] <= 100.0
    # params came from the tiny profile: data and features live where it says
    assert (repo / "data" / "tiny" / "charades_sta_train.txt").exists()
    assert (repo / "data" / "features" / "tiny.h5").exists()
    assert not (repo / "mlflow.db").exists()  # tiny: tracking disabled


def test_second_repro_runs_nothing(project: Project) -> None:
    out = run(project.repo, "dvc", "repro")
    assert not RAN.findall(out), out
    assert "up to date" in out or "didn't change" in out
    status = run(project.repo, "dvc", "status")
    assert "Data and pipelines are up to date" in status, status


def test_metrics_params_and_plots_commands(project: Project) -> None:
    repo = project.repo
    metrics = json.loads(run(repo, "dvc", "metrics", "show", "--json"))
    shown = json.dumps(metrics)
    for v in VARIANT_NAMES:
        assert f"outputs/eval/{v}/metrics.json" in shown
    plots = json.loads(run(repo, "dvc", "plots", "show", "--json"))
    names = set(plots["data"]) if "data" in plots else set(plots)
    assert any("history.json" in n for n in names), names
    assert any("per variant" in n for n in names), names


def test_eval_change_reevaluates_without_training(project: Project) -> None:
    repo = project.repo
    set_params(repo, **{"eval/nms_iou": 0.4})
    try:
        status = run(repo, "dvc", "status")
        assert "modified:           eval" in status and "train@" not in status, status
        assert would_run(repo) == {f"evaluate@{v}" for v in VARIANT_NAMES} | {"check", "report"}
    finally:
        run(repo, "git", "checkout", "--", "params.yaml")


def test_edited_variant_reruns_that_variant_alone(project: Project) -> None:
    repo = project.repo
    set_params(repo, **{"variants/sum_fusion": {"model.dropout": 0.1}})
    try:
        assert would_run(repo) == {"check", "train@sum_fusion", "evaluate@sum_fusion", "report"}
        assert "variants.sum_fusion.model.dropout" in run(repo, "dvc", "params", "diff")
    finally:
        run(repo, "git", "checkout", "--", "params.yaml")


def test_exp_run_with_a_variant_override(project: Project, tmp_path: Path) -> None:
    """`dvc exp run -S` in the format params.yaml uses (dotted keys) really reruns one variant.

    In a copy of the project: the experiment is applied to the workspace (params, outputs),
    which the other tests of this module must not see, whichever order they run in."""
    repo = own_copy(project.repo, tmp_path / "repo")
    assert run(repo, "dvc", "status").strip().endswith("Data and pipelines are up to date.")
    out = run(repo, "dvc", "exp", "run", "-S", "+variants.sum_fusion={model.dropout:0.2}")
    ran = {"check", "train@sum_fusion", "evaluate@sum_fusion", "report"}
    assert set(RAN.findall(out)) == ran, out
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["variants"]["sum_fusion"] == {"model.dropout": 0.2}
    assert "variants.sum_fusion.model.dropout" in run(repo, "dvc", "params", "diff")
    assert "sum_fusion" in run(repo, "dvc", "exp", "show", "--csv")
    assert run(repo, "dvc", "status").strip().endswith("Data and pipelines are up to date.")


def test_a_fresh_clone_compares_with_the_committed_results(
    project: Project, tmp_path: Path
) -> None:
    """Issue 23.6: what `git add -A` commits after a run (as for the default run's baseline) is
    dvc.lock and the uncached results alone, and a fresh clone, with no DVC cache and nothing
    pulled, shows them and compares a new result and a params change with them."""
    clone = tmp_path / "clone"
    run(tmp_path, "git", "clone", "-q", str(project.repo), str(clone))
    tracked = set(run(clone, "git", "ls-files").split())
    results = {
        "dvc.lock",
        "outputs/params_check.json",
        "reports/summary.json",
        "reports/ablation.csv",
    }
    for v in VARIANT_NAMES:
        results |= {f"outputs/eval/{v}/metrics.json", f"outputs/models/{v}/history.json"}
        results.add(f"outputs/models/{v}/train_summary.json")
    assert results <= tracked
    cached = {p for p in tracked if p.startswith(("outputs/", "reports/", "data/"))} - results
    assert cached == set()  # checkpoints, features, predictions, pages: the DVC cache's
    assert not (clone / ".dvc" / "cache").exists()

    path = "outputs/eval/dynamic/metrics.json"
    committed = json.loads((clone / path).read_text())
    shown = json.loads(run(clone, "dvc", "metrics", "show", "--json"))
    # dvc 3.67 keys the workspace's metrics by "" (later revisions by their names)
    assert shown[""]["data"][path]["data"]["r1_iou0.5"] == committed["r1_iou0.5"]

    new = {**committed, "r1_iou0.5": committed["r1_iou0.5"] + 1.0}
    (clone / path).write_text(json.dumps(new))
    set_params(clone, **{"eval/nms_iou": 0.4})
    diff = json.loads(run(clone, "dvc", "metrics", "diff", "--json"))[path]["r1_iou0.5"]
    assert diff["old"] == committed["r1_iou0.5"] and diff["new"] == new["r1_iou0.5"]
    params = json.loads(run(clone, "dvc", "params", "diff", "--json"))["params.yaml"]
    assert params["eval.nms_iou"]["new"] == 0.4 and params["eval.nms_iou"]["old"] != 0.4
    # dvc exp show: the committed run (its HEAD row) with the committed metric
    table = run(clone, "dvc", "exp", "show", "--csv", "--no-pager", "--precision", "10")
    rows = list(csv.DictReader(io.StringIO(table)))
    (column,) = [c for c in rows[0] if c.endswith(f"{path}:r1_iou0.5")]
    head = [r for r in rows if r["rev"] not in ("", "workspace")]
    assert head and float(head[0][column]) == pytest.approx(committed["r1_iou0.5"]), table
