"""The whole Kubeflow pipeline run locally with kfp.local (subprocess runner) on the tiny
profile, through the CLI: `dynpath pipeline run-local`.

Every task runs its component's shipped source in a subprocess of this environment, so this
exercises the same code the cluster runs: synth -> extract -> vocab -> ParallelFor(train,
evaluate) -> Collected -> report. Three variants keep CI time down; set
DYNPATH_TEST_ALL_VARIANTS=1 to run all ten of the tiny profile.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
from pathlib import Path

import pytest
import yaml

from dynpath.cli import main
from dynpath.profiles import use_profile

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*non-Python base image:RuntimeWarning"),
    pytest.mark.filterwarnings("ignore:.*no effect in the current local runner:UserWarning"),
]

SOME_VARIANTS = ["dynamic", "exploitation_only", "sum_fusion"]
#: the caller's print and root-logger handlers, before and after the in-process run
CALLER: dict[str, object] = {}


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    tmp = tmp_path_factory.mktemp("kfp-local")
    params = use_profile("tiny", tmp / "params.yaml")
    raw = yaml.safe_load(params.read_text())
    if not os.environ.get("DYNPATH_TEST_ALL_VARIANTS"):
        raw["variants"] = {v: raw["variants"][v] for v in SOME_VARIANTS}
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    workdir = tmp / "runs"
    CALLER["before"] = (builtins.print, logging.getLogger().handlers[:])
    assert main(["--params", str(params), "pipeline", "run-local", "--workdir", str(workdir)]) == 0
    CALLER["after"] = (builtins.print, logging.getLogger().handlers[:])
    (run,) = [p for p in workdir.iterdir() if p.is_dir() and p.name.startswith("dynpath-")]
    return run, list(raw["variants"])


def test_the_callers_print_and_logging_are_put_back(local_run: tuple[Path, list[str]]) -> None:
    """kfp.local swaps builtins.print (indenting) and the root logger's handlers while tasks run
    and left both behind: every later print in the process was indented (JSON stopped parsing)."""
    (print_before, handlers_before), (print_after, handlers_after) = (
        CALLER["before"],
        CALLER["after"],
    )  # type: ignore[misc]
    assert print_after is print_before
    assert handlers_after == handlers_before


def test_report_artifact_lists_every_variant(local_run: tuple[Path, list[str]]) -> None:
    run, variants = local_run
    report = run / "report" / "report"
    summary = json.loads((report / "summary.json").read_text())
    assert sorted(summary["variants"]) == sorted(variants)
    assert summary["missing"] == []
    for variant in variants:
        metrics = summary["variants"][variant]["metrics"]
        assert 0.0 <= metrics["r1_iou0.5"] <= 100.0
    md = (report / "report.md").read_text()
    assert md.startswith("# ") and "Ablation" in md
    # the HTML/Markdown artifacts for the KFP UI are the report's own files
    assert (run / "report" / "html").read_text() == (report / "report.html").read_text()
    assert (run / "report" / "markdown").read_text() == md


def test_each_iteration_trained_and_evaluated_its_own_variant(
    local_run: tuple[Path, list[str]],
) -> None:
    run, variants = local_run
    iterations = sorted(run.glob("for-loop-*-iteration-*"))
    assert len(iterations) == len(variants)
    seen = []
    for it in iterations:
        (model_dir,) = (it / "train" / "model").iterdir()
        (eval_dir,) = (it / "evaluate" / "evaluation").iterdir()
        assert model_dir.name == eval_dir.name
        summary = json.loads((model_dir / "train_summary.json").read_text())
        assert summary["variant"] == model_dir.name and (model_dir / "best.pt").is_file()
        metrics = json.loads((eval_dir / "metrics.json").read_text())
        assert metrics["variant"] == eval_dir.name
        # the evaluate task published its metrics as a KFP Metrics artifact
        out = json.loads((it / "evaluate" / "executor_output.json").read_text())
        logged = out["artifacts"]["metrics"]["artifacts"][0]["metadata"]
        assert logged["r1_iou0.5"] == pytest.approx(metrics["r1_iou0.5"])
        seen.append(model_dir.name)
    assert sorted(seen) == sorted(variants)


def test_data_steps_wrote_the_dvc_layout(local_run: tuple[Path, list[str]]) -> None:
    run, _ = local_run
    data = run / "synth" / "data" / "data" / "tiny"
    assert (data / "charades_sta_train.txt").is_file() and any((data / "videos").iterdir())
    assert (run / "extract" / "features" / "features.h5").is_file()
    assert (run / "vocab" / "vocab" / "vocab.json").is_file()
    assert (run / "vocab" / "vocab" / "embeddings.npy").is_file()
