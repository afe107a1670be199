"""The CLI: every step is a sub-command; user errors exit non-zero with one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dynpath.cli import build_parser, main


def test_every_dag_step_is_a_command() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    expected = {"synth", "extract", "vocab", "train", "evaluate", "report", "promote"}
    assert expected <= set(sub.choices)  # type: ignore[arg-type]


def test_profile_switch_rewrites_params(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    assert main(["--params", str(params), "profile", "tacos"]) == 0
    assert yaml.safe_load(params.read_text())["extract"]["backbone"] == "c3d"
    assert main(["--params", str(params), "profile", "synthetic"]) == 0
    assert yaml.safe_load(params.read_text())["data"]["dataset"] == "synthetic"


def test_unknown_profile_is_a_clean_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--params", str(tmp_path / "p.yaml"), "profile", "imagenet"]) == 2
    err = capsys.readouterr().err
    assert "unknown profile 'imagenet'" in err and "Traceback" not in err
    assert not (tmp_path / "p.yaml").exists()


def test_bad_params_key_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("train:\n  epocs: 3\n")
    assert main(["--params", str(params), "vocab", "--out", str(tmp_path / "v")]) == 2
    assert "train.epocs: unknown key" in capsys.readouterr().err
    assert not (tmp_path / "v").exists()


def test_data_step_checks_a_real_dataset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params = tmp_path / "params.yaml"
    assert main(["--params", str(params), "profile", "charades_sta"]) == 0
    raw = yaml.safe_load(params.read_text())
    raw["data"]["root"] = str(tmp_path / "missing")
    params.write_text(yaml.safe_dump(raw))
    assert main(["--params", str(params), "data"]) == 2
    assert "missing" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()  # a real dataset's folder is never created


def test_model_info_applies_nested_variant_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dynpath model-info` reads a variant's overrides with the same parser as training: the
    nested form `dvc exp run -S variants.small.model.dim=16` writes counts like the dotted one."""
    import json

    counts = {}
    for form, override in {
        "dotted": {"model.dim": 16, "model.heads": 2},
        "nested": {"model": {"dim": 16, "heads": 2}},
        "none": {},
    }.items():
        params = tmp_path / f"{form}.yaml"
        params.write_text(yaml.safe_dump({"variants": {"small": {"arch": "dynamic", **override}}}))
        assert main(["--params", str(params), "model-info", "--json"]) == 0
        [row] = json.loads(capsys.readouterr().out)
        counts[form] = row["parameters"]
    assert counts["nested"] == counts["dotted"] < counts["none"]
