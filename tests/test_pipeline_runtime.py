"""The pod-side helpers the components call: config rebasing, fan-in merge, metrics logging."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dynpath.config import Config
from dynpath.errors import DataError
from dynpath.kfp import runtime, spec
from dynpath.profiles import resolve


def test_task_config_rebases_project_paths_onto_artifacts(tmp_path: Path) -> None:
    cfg = Config.model_validate(resolve("tiny"))
    params = spec.step_params(cfg, "train")
    out = runtime.task_config(params, data=tmp_path / "raw", features=tmp_path / "feat")
    assert out.data.root == str(tmp_path / "raw" / "data/tiny")
    assert out.data.videos == str(tmp_path / "raw" / "data/tiny/videos")
    assert out.vocab.embeddings == str(tmp_path / "raw" / "data/tiny/glove.synthetic.300d.txt")
    assert out.data.features == str(tmp_path / "feat" / spec.FEATURES_FILE)
    assert out.model == cfg.model and out.variants == cfg.variants


def test_task_config_keeps_absolute_paths_and_partial_sections(tmp_path: Path) -> None:
    raw = resolve("tiny")
    raw["data"]["root"] = "/datasets/tiny"
    cfg = Config.model_validate(raw)
    out = runtime.task_config(spec.step_params(cfg, "extract"), data=tmp_path)
    assert out.data.root == "/datasets/tiny"
    assert out.data.videos == str(tmp_path / "data/tiny/videos")
    assert out.extract == cfg.extract


def test_synth_params_carry_the_extract_and_vocab_keys_it_reads() -> None:
    raw = resolve("tiny")
    raw["extract"].update(stride=4, batch_size=3)
    cfg = Config.model_validate(raw)
    out = runtime.task_config(spec.step_params(cfg, "synth"))
    assert out.extract.stride == 4 and out.synth == cfg.synth and out.data == cfg.data
    assert out.extract.batch_size != 3  # not a synth input: left at its default


def test_task_config_rejects_garbage() -> None:
    from dynpath.errors import DynpathError

    with pytest.raises(DynpathError, match="params"):
        runtime.task_config("{not json")


def test_merge_variant_dirs_links_each_variant(tmp_path: Path) -> None:
    arts = []
    for i, v in enumerate(["dynamic", "sum_fusion"]):
        d = tmp_path / f"art{i}" / v
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({"variant": v}))
        arts.append(tmp_path / f"art{i}")
    dest = tmp_path / "merged"
    assert runtime.merge_variant_dirs(arts, dest) == ["dynamic", "sum_fusion"]
    merged = json.loads((dest / "sum_fusion" / "metrics.json").read_text())
    assert merged == {"variant": "sum_fusion"}
    with pytest.raises(DataError, match="twice"):
        runtime.merge_variant_dirs(arts[:1], dest)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="one <variant>/"):
        runtime.merge_variant_dirs([tmp_path / "empty"], tmp_path / "m2")


class _Sink:
    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.metrics[name] = value


def test_log_metrics_flattens_numeric_leaves() -> None:
    sink = _Sink()
    n = runtime.log_metrics(
        {
            "variant": "dynamic",
            "n": 10,
            "r1_iou0.5": 41.5,
            "shuffled": {"r1_iou0.5": 3.0},
            "routes": {"exploration": {"share": 0.25, "n": 3}},
            "flag": True,
        },
        sink,
    )
    assert n == 5
    assert sink.metrics == {
        "n": 10.0,
        "r1_iou0.5": 41.5,
        "shuffled.r1_iou0.5": 3.0,
        "routes.exploration.share": 0.25,
        "routes.exploration.n": 3.0,
    }


def test_data_paths_skip_nested_and_absolute() -> None:
    raw = resolve("charades_sta")
    raw["vocab"]["embeddings"] = "/glove/glove.840B.300d.txt"
    raw["data"]["videos"] = raw["data"]["root"] + "/videos"
    cfg = Config.model_validate(raw)
    assert spec.data_paths(cfg) == [raw["data"]["root"]]


def test_components_import_only_stdlib_and_kfp_at_module_top(repo_root: Path) -> None:
    import ast
    import sys

    allowed = set(sys.stdlib_module_names) | {"kfp"}
    home = repo_root / "src" / "dynpath" / "kfp" / "components"
    for path in sorted(home.glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                ok = name.split(".")[0] in allowed or name.startswith("dynpath.kfp.components.")
                assert ok, f"{path.name}: top-level import {name}"
