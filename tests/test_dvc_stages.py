"""dvc.yaml against the stage table (dynpath.stages): every stage lists the params keys it reads
and the code it runs, so a change can never leave `dvc repro` with stale outputs.

A stage's code is the import closure of its entry modules (tests/import_graph.py: module- and
function-level imports), less the modules the table says it never runs. Each module's file must be
a ``deps:`` entry of the stage or lie under one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from import_graph import SOURCES, closure, import_graph, module_files

from dynpath.stages import BY_NAME, DVC_ONLY, PARAMS_CHECK, STAGES

REPO = Path(__file__).resolve().parents[1]
#: Every stage of dvc.yaml: the Kubeflow ones and the DVC-only check.
ALL = {s.name: s for s in (*DVC_ONLY, *STAGES)}


def dvc_stage(dvc: dict[str, Any], name: str) -> dict[str, Any]:
    """A stage of dvc.yaml, the ``do:`` body of a ``foreach`` one."""
    stage = dvc["stages"][name]
    return stage.get("do", stage)


def stage_code(name: str, graph: dict[str, set[str]], files: dict[str, Path]) -> dict[str, str]:
    """Module -> repository-relative file of the code stage ``name`` runs."""
    stage = ALL[name]
    modules = closure(graph, stage.entry)
    skipped = {m for m in modules for prefix, _why in stage.not_run if m.startswith(prefix)}
    return {m: files[m].relative_to(REPO).as_posix() for m in sorted(modules - skipped)}


def missing_code(deps: list[str], code: dict[str, str]) -> list[str]:
    """The files of ``code`` that no dependency path covers (equal to it or a directory above)."""
    paths = [d for d in deps if isinstance(d, str) and not d.startswith("${")]
    return [
        f
        for f in code.values()
        if not any(f == p or f.startswith(p.rstrip("/") + "/") for p in paths)
    ]


@pytest.fixture(scope="module")
def dvc() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(SOURCES)


def test_the_table_and_dvc_yaml_have_the_same_stages(dvc: dict[str, Any]) -> None:
    assert [s.name for s in (*DVC_ONLY, *STAGES)] == list(dvc["stages"])


def test_the_check_stage_runs_first_on_the_whole_params_file(dvc: dict[str, Any]) -> None:
    """DVC deletes a stage's outputs before running it: a bad params value must stop the DAG in
    the check stage, which every other stage depends on, before any output is removed."""
    check = dvc_stage(dvc, "check")
    assert check["params"] == [{"params.yaml": None}]  # the whole file, every key
    assert check["cmd"] == f"python -m dynpath.steps.check --out {PARAMS_CHECK}"
    assert [next(iter(o)) if isinstance(o, dict) else o for o in check["outs"]] == [PARAMS_CHECK]
    for stage in STAGES:
        assert PARAMS_CHECK in dvc_stage(dvc, stage.name)["deps"], stage.name


@pytest.mark.parametrize("name", [s.name for s in STAGES])
def test_dvc_yaml_lists_the_params_the_stage_reads(dvc: dict[str, Any], name: str) -> None:
    listed = dvc_stage(dvc, name).get("params", [])
    assert sorted(listed) == sorted(BY_NAME[name].params), (
        f"dvc.yaml stage {name!r}: params differ from dynpath.stages (missing "
        f"{sorted(set(BY_NAME[name].params) - set(listed))}, extra "
        f"{sorted(set(listed) - set(BY_NAME[name].params))})"
    )


@pytest.mark.parametrize("name", list(ALL))
def test_dvc_yaml_lists_the_code_the_stage_runs(
    dvc: dict[str, Any], graph: dict[str, set[str]], name: str
) -> None:
    code = stage_code(name, graph, module_files(SOURCES))
    missing = missing_code(dvc_stage(dvc, name).get("deps", []), code)
    assert not missing, (
        f"dvc.yaml stage {name!r} runs code it does not depend on: add {missing} to its deps "
        "(a change there would leave its outputs stale)"
    )


def test_the_check_fails_on_a_planted_omission(
    dvc: dict[str, Any], graph: dict[str, set[str]]
) -> None:
    """The check itself: train without src/dynpath/engine (or without config.py) is caught."""
    code = stage_code("train", graph, module_files(SOURCES))
    deps = dvc_stage(dvc, "train")["deps"]
    assert missing_code(deps, code) == []
    without_engine = [d for d in deps if d != "src/dynpath/engine"]
    assert "src/dynpath/engine/trainer.py" in missing_code(without_engine, code)
    without_config = [d for d in deps if d != "src/dynpath/config.py"]
    assert missing_code(without_config, code) == ["src/dynpath/config.py"]


def test_the_package_init_is_code_of_the_stages_that_read_the_version(
    graph: dict[str, set[str]],
) -> None:
    """``from dynpath import __version__`` (engine/checkpoint.py) runs src/dynpath/__init__.py: an
    edge from a submodule to its own package, once dropped by the graph, so the file was in no
    stage's deps."""
    files = module_files(SOURCES)
    assert "dynpath" in graph["dynpath.engine.checkpoint"]
    assert "src/dynpath/__init__.py" in stage_code("train", graph, files).values()
    assert "src/dynpath/__init__.py" not in stage_code("data", graph, files).values()


def test_not_run_claims_name_real_modules(graph: dict[str, set[str]]) -> None:
    for stage in STAGES:
        for prefix, why in stage.not_run:
            assert prefix in graph and why, (stage.name, prefix)
