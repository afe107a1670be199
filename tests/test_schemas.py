"""The typed shapes of the files stages pass on (dynpath.schemas) against what is really written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_fixture import report_config, write_fixture

from dynpath.errors import DataError
from dynpath.schemas import (
    EvalHeader,
    ReportSummary,
    VariantSummary,
    eval_header,
    metrics_json,
    read_report_summary,
)
from dynpath.steps import report

HEADER: EvalHeader = {
    "variant": "dynamic",
    "arch": "dynamic",
    "split": "test",
    "n": 8,
    "shuffled": {"r1_iou0.5": 1.0},
    "routes": {},
    "latency_ms": {"p50": 1.0, "p95": 2.0},
    "mlflow_run_id": None,
}


def test_metrics_json_keeps_the_file_order_and_round_trips() -> None:
    doc = metrics_json(HEADER, {"r1_iou0.5": 40.0, "miou": 35.0})
    assert list(doc) == [
        "variant",
        "arch",
        "split",
        "n",
        "r1_iou0.5",
        "miou",
        "shuffled",
        "routes",
        "latency_ms",
        "mlflow_run_id",
    ]
    assert eval_header(json.loads(json.dumps(doc)), "m.json") == HEADER


def test_eval_header_names_the_file_and_the_missing_keys() -> None:
    doc = metrics_json(HEADER, {"miou": 1.0})
    del doc["latency_ms"], doc["routes"]
    with pytest.raises(DataError, match=r"out/metrics\.json: .*missing routes, latency_ms"):
        eval_header(doc, "out/metrics.json")


def test_the_report_writes_only_keys_its_schema_declares(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    eval_dir, models_dir = write_fixture(tmp_path / "outputs")
    report.run(report_config(), eval_dir, models_dir, tmp_path / "r")
    summary = read_report_summary(tmp_path / "r" / "summary.json")
    assert set(summary) <= set(ReportSummary.__annotations__)
    assert summary["variants"]
    for entry in summary["variants"].values():
        assert set(entry) <= set(VariantSummary.__annotations__)


def test_read_report_summary_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "summary.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match=r"summary\.json: not valid JSON"):
        read_report_summary(bad)
    bad.write_text(json.dumps({"dataset": "x", "name": "y"}))
    with pytest.raises(DataError, match="missing order, variants"):
        read_report_summary(bad)
