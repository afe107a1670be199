"""The report step on FIXTURE results: ten variants written the way train/evaluate write them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from report_fixture import report_config as _cfg
from report_fixture import write_fixture

from dynpath.errors import DataError, DynpathError
from dynpath.profiles import VARIANT_NAMES
from dynpath.report.summary import print_summary
from dynpath.report.tables import TABLE_ORDER, display_name
from dynpath.steps import report


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One report of the ten-variant fixture, shared by the read-only tests (built once)."""
    tmp = tmp_path_factory.mktemp("report")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        eval_dir, models_dir = write_fixture(tmp / "outputs")
        result = report.run(_cfg(), eval_dir, models_dir, tmp / "reports")
    return tmp / "reports", result


def test_report_contains_every_variant_in_table_order(built: tuple[Path, dict[str, Any]]) -> None:
    out, result = built
    assert result["variants"] == 10 and result["missing"] == []
    html = (out / "report.html").read_text()
    md = (out / "report.md").read_text()
    for doc in (html, md):
        # the Tables III/IV layout (the seed table before it names Ours in its text first)
        doc = doc[doc.index("Ablation (layout of Tables III/IV)") :]
        positions = [doc.index(display_name(v, v)) for v in TABLE_ORDER]
        assert positions == sorted(positions), "rows are not in Table III order"
    assert "Ours (dynamic)" in md and "Sum fusion" in md and "exploitation w/o LML" in md
    # the numbers are the fixture's, formatted: dynamic R@1 0.5 = 80.00
    assert "80.00" in md


def test_html_is_self_contained(built: tuple[Path, dict[str, Any]]) -> None:
    out, _ = built
    html = (out / "report.html").read_text()
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert "@import" not in html and "url(" not in html
    imgs = re.findall(r'<img[^>]*src="([^"]+)"', html)
    assert len(imgs) >= 3 and all(s.startswith("data:image/png;base64,") for s in imgs)
    assert not re.search(r'src="https?:', html)
    md = (out / "report.md").read_text()
    for rel in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md):
        assert (out / rel).is_file(), rel


def test_not_pretrained_is_said_prominently(built: tuple[Path, dict[str, Any]]) -> None:
    out, result = built
    assert result["pretrained_features"] is False
    html = (out / "report.html").read_text()
    overview = html.split("<h2>")[1]  # the first section
    assert 'class="alert"' in overview and "NOT extracted with pretrained" in overview


def test_summary_json_structure(built: tuple[Path, dict[str, Any]]) -> None:
    out, _ = built
    s = json.loads((out / "summary.json").read_text())
    assert s["order"] == list(TABLE_ORDER)
    assert set(s["variants"]) == set(VARIANT_NAMES)
    dyn = s["variants"]["dynamic"]
    assert dyn["metrics"]["r1_iou0.5"] == 80.0
    assert dyn["shuffled"]["r1_iou0.5"] == 20.0
    assert dyn["routes"] == {"exploitation": 0.625, "exploration": 0.375}
    assert dyn["mlflow_run_id"] == f"{VARIANT_NAMES.index('dynamic'):032x}"
    assert dyn["mlflow_url"] is None  # sqlite store: no UI link, the id only
    assert s["variants"]["sum_fusion"]["routes"] == {}
    assert {c["name"] for c in s["checks"]} >= {"routes not all one module"}
    assert all(c["passed"] for c in s["checks"]) and s["checks_passed"] is True
    assert s["variants"]["dynamic"]["published"] is None  # synthetic: no paper numbers


def test_checks_fail_without_raising(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    eval_dir, models_dir = write_fixture(
        tmp_path, dynamic_r05=50.0, dynamic_shuffled_r05=40.0, shares=(1.0, 0.0)
    )
    result = report.run(_cfg(), eval_dir, models_dir, tmp_path / "r")
    assert result["checks_passed"] is False
    checks = json.loads((tmp_path / "r" / "summary.json").read_text())["checks"]
    assert [c["passed"] for c in checks] == [False, False, False]
    assert "FAIL" in (tmp_path / "r" / "report.md").read_text()


def test_published_numbers_side_by_side_and_http_links(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    eval_dir, models_dir = write_fixture(tmp_path, pretrained=True)
    cfg = _cfg("charades_sta", uri="http://mlflow.example:5000/")
    report.run(cfg, eval_dir, models_dir, tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "(paper)" in md and "62.20" in md and "59.36" in md  # Table III: Ours, exploitation
    run = f"{VARIANT_NAMES.index('dynamic'):032x}"
    assert f"(http://mlflow.example:5000/#/experiments/7/runs/{run})" in md
    html = (tmp_path / "r" / "report.html").read_text()
    assert f'href="http://mlflow.example:5000/#/experiments/7/runs/{run}"' in html
    assert "NOT extracted with pretrained" not in html
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["checks"] == [] and s["checks_passed"] is None
    assert s["variants"]["dynamic"]["published"]["r1_iou0.5"] == 62.20


def test_missing_variants_are_listed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    eval_dir, models_dir = write_fixture(tmp_path, variants=("dynamic", "sum_fusion"))
    result = report.run(_cfg(), eval_dir, models_dir, tmp_path / "r")
    assert result["variants"] == 2
    assert set(result["missing"]) == set(VARIANT_NAMES) - {"dynamic", "sum_fusion"}
    assert "Not evaluated" in (tmp_path / "r" / "report.md").read_text()


def test_no_results_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no metrics\.json"):
        report.run(_cfg(), tmp_path / "eval", tmp_path / "models", tmp_path / "r")


def test_examples_per_route(built: tuple[Path, dict[str, Any]]) -> None:
    out, _ = built
    md = (out / "report.md").read_text()
    section = md.split("Example test queries")[1].split("##")[0]
    rows = [ln for ln in section.splitlines() if ln.startswith("| exploitation")]
    rows_x = [ln for ln in section.splitlines() if ln.startswith("| exploration")]
    assert len(rows) == 3 and len(rows_x) == 3  # eval.examples_per_route
    assert "1.00" in section  # the query whose top-1 equals the ground truth


def test_print_summary(
    built: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    out, _ = built
    print_summary(out)
    text = capsys.readouterr().out
    assert str(out / "report.html") in text
    for v in VARIANT_NAMES:
        assert v in text
    assert "63/38" in text or "62/38" in text  # dynamic's route shares
    assert "PASS" in text and "randomly initialised" in text


def test_print_summary_without_report(tmp_path: Path) -> None:
    with pytest.raises(DynpathError, match="no report yet"):
        print_summary(tmp_path)


def test_ablation_csv_for_dvc_plots(built: tuple[Path, dict[str, Any]]) -> None:
    import pandas as pd

    out, _ = built
    df = pd.read_csv(out / "ablation.csv")
    assert list(df["variant"]) == list(TABLE_ORDER)
    assert {"r1_iou0.5", "miou", "shuffled_r1_iou0.5", "r5_iou0.7"} <= set(df.columns)
