"""The report refuses what would make it silently wrong (issue 26): evaluations of two datasets
in one report, a seed's metrics.json that scored an older best.pt than the one now there (an
``evaluate`` stopped between seeds), and it neither hides a NaN metric nor writes bare NaN."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import pytest
from report_fixture import report_config, write_fixture

from dynpath.errors import DataError
from dynpath.steps import report

CFG = {"tracking": {"enabled": False, "uri": "sqlite:///unused.db"}}


def _edit_metrics(path: Path, **changes: Any) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))  # json.dumps writes NaN as the bare token, as before


def _strict(path: Path) -> Any:
    """JSON as the standard defines it: NaN/Infinity are errors."""

    def refuse(token: str) -> None:
        raise ValueError(f"{path}: bare {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(autouse=True)
def _no_tracking(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)


def test_two_datasets_in_one_report_are_refused_naming_the_files(tmp_path: Path) -> None:
    eval_dir, models_dir = write_fixture(tmp_path)
    _edit_metrics(eval_dir / "dynamic" / "metrics.json", dataset={"format": "tacos", "name": "t"})
    _edit_metrics(
        eval_dir / "sum_fusion" / "metrics.json", dataset={"format": "synthetic", "name": "s"}
    )
    with pytest.raises(DataError, match=r"2 datasets.*tacos/t: .*dynamic/metrics\.json") as err:
        report.run(report_config(**CFG), eval_dir, models_dir, tmp_path / "r")
    assert "sum_fusion/metrics.json" in str(err.value)
    assert not (tmp_path / "r" / "summary.json").exists()


def test_one_dataset_and_files_without_the_field_are_accepted(tmp_path: Path) -> None:
    eval_dir, models_dir = write_fixture(tmp_path)
    same = {"format": "synthetic", "name": "synthetic"}
    _edit_metrics(eval_dir / "dynamic" / "metrics.json", dataset=same)
    _edit_metrics(eval_dir / "sum_fusion" / "metrics.json", dataset=same)
    report.run(report_config(**CFG), eval_dir, models_dir, tmp_path / "r")
    assert (tmp_path / "r" / "summary.json").is_file()


def _checkpoint(model_dir: Path, content: bytes) -> dict[str, str]:
    (model_dir / "best.pt").write_bytes(content)
    return {"path": str(model_dir / "best.pt"), "sha256": hashlib.sha256(content).hexdigest()}


def test_stale_seed_metrics_are_refused(tmp_path: Path) -> None:
    """Seed 22 was evaluated on an older best.pt, then retrained; evaluate was stopped before it
    reached seed 22 again: its metrics.json names the old checkpoint."""
    eval_dir, models_dir = write_fixture(tmp_path)
    seeds = [11, 22]
    for variant in ("dynamic",):
        mdir, edir = models_dir / variant, eval_dir / variant
        _edit_metrics(edir / "metrics.json", checkpoint=_checkpoint(mdir, b"primary"))
        sdir, sedir = mdir / "seeds" / "22", edir / "seeds" / "22"
        sdir.mkdir(parents=True)
        sedir.mkdir(parents=True)
        (sedir / "metrics.json").write_text((edir / "metrics.json").read_text())
        (sedir / "predictions.jsonl").write_text((edir / "predictions.jsonl").read_text())
        _edit_metrics(sedir / "metrics.json", checkpoint=_checkpoint(sdir, b"before retraining"))
    cfg = report_config(seeds=seeds, **CFG)
    report.run(cfg, eval_dir, models_dir, tmp_path / "fresh")  # both current: accepted
    (models_dir / "dynamic" / "seeds" / "22" / "best.pt").write_bytes(b"retrained")
    with pytest.raises(DataError, match=r"seeds/22/metrics\.json: stale: .*seeds/22/best\.pt"):
        report.run(cfg, eval_dir, models_dir, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_a_nan_metric_is_null_in_summary_and_named_in_the_report(tmp_path: Path) -> None:
    eval_dir, models_dir = write_fixture(tmp_path)
    _edit_metrics(eval_dir / "dynamic" / "metrics.json", **{"r1_iou0.7": math.nan})
    report.run(report_config(**CFG), eval_dir, models_dir, tmp_path / "r")
    summary = _strict(tmp_path / "r" / "summary.json")  # no bare NaN
    assert summary["variants"]["dynamic"]["metrics"]["r1_iou0.7"] is None
    assert summary["non_finite"] == [f"{eval_dir / 'dynamic' / 'metrics.json'}: r1_iou0.7 is nan"]
    md = (tmp_path / "r" / "report.md").read_text()
    assert "NaN or infinite" in md and "dynamic/metrics.json: r1_iou0.7 is nan" in md


def test_without_non_finite_values_summary_has_no_such_key(tmp_path: Path) -> None:
    eval_dir, models_dir = write_fixture(tmp_path)
    report.run(report_config(**CFG), eval_dir, models_dir, tmp_path / "r")
    assert "non_finite" not in _strict(tmp_path / "r" / "summary.json")
