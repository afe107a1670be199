"""dvc.yaml against the params schema, the profiles and the CLI, without running DVC.

What would otherwise only show up as a failed `dvc repro` (or worse, as a stage that never reruns):
a params key the schema does not have, an interpolation a profile cannot resolve, a command line
the CLI rejects, a code dependency that does not exist, a stage that reads more params than it
should (so an `eval` change would retrain everything).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from dynpath.cli import build_parser
from dynpath.config import Config
from dynpath.profiles import VARIANT_NAMES, available, resolve
from dynpath.stages import DVC_ONLY

REPO = Path(__file__).resolve().parents[1]
INTERP = re.compile(r"\$\{([^}]+)\}")


def _dvc() -> dict[str, Any]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def _stages(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """dvc.yaml's stages with foreach expanded (``${key}`` = each variant), uninterpolated."""
    out: dict[str, dict[str, Any]] = {}
    for name, stage in _dvc()["stages"].items():
        if "foreach" in stage:
            assert stage["foreach"] == "${variants}", name
            for variant in params["variants"]:
                text = yaml.safe_dump(stage["do"]).replace("${key}", variant)
                out[f"{name}@{variant}"] = yaml.safe_load(text)
        else:
            out[name] = stage
    return out


def _lookup(params: dict[str, Any], dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(dotted)
        node = node[part]
    return node


def _render(value: str, params: dict[str, Any]) -> str:
    return INTERP.sub(lambda m: str(_lookup(params, m.group(1))), value)


def _param_keys(stage: dict[str, Any]) -> list[str]:
    keys: list[str] = []
    for entry in stage.get("params", []):
        if isinstance(entry, str):
            keys.append(entry)
        else:  # {file: [keys]}
            for file_keys in entry.values():
                keys.extend(file_keys or [])  # None: the whole file (the check stage)
    return keys


def _paths(stage: dict[str, Any], kind: str) -> list[str]:
    out = []
    for entry in stage.get(kind, []):
        out.extend([entry] if isinstance(entry, str) else list(entry))
    return out


@pytest.mark.parametrize("profile", available())
def test_every_param_key_exists_in_the_schema(profile: str) -> None:
    params = resolve(profile)
    Config.model_validate(params)
    for name, stage in _stages(params).items():
        for key in _param_keys(stage):
            _lookup(params, key)  # KeyError names the key
            assert "${" not in key, f"{name}: uninterpolated params key {key}"


@pytest.mark.parametrize("profile", available())
def test_every_interpolation_resolves_to_a_value(profile: str) -> None:
    """DVC cannot interpolate a missing key or a null (vocab.embeddings: null breaks dvc.yaml)."""
    params = resolve(profile)
    text = (REPO / "dvc.yaml").read_text()
    for expr in set(INTERP.findall(text)) - {"key", "item", "variants"}:
        value = _lookup(params, expr)
        assert value is not None, f"profile {profile}: ${{{expr}}} is null"


@pytest.mark.parametrize("profile", available())
def test_commands_parse_with_the_cli(profile: str) -> None:
    params = resolve(profile)
    parser = build_parser()
    for name, stage in _stages(params).items():
        cmd = _render(stage["cmd"], params)
        if name in {s.name for s in DVC_ONLY}:
            assert cmd.startswith("python -m dynpath.steps.check "), (name, cmd)
            continue
        commands = re.findall(r"dynpath [^;]+", cmd)
        assert commands, f"{name}: no dynpath command in {cmd!r}"
        for c in commands:
            args = parser.parse_args(shlex.split(c)[1:])  # SystemExit on a bad flag
            assert args.command in name or name == "data", (name, c)


def test_code_dependencies_exist() -> None:
    params = resolve("synthetic")
    for name, stage in _stages(params).items():
        for dep in _paths(stage, "deps"):
            if dep.startswith("src/"):
                assert (REPO / dep).exists(), f"{name}: dependency {dep} does not exist"


def test_each_stage_reads_only_its_params() -> None:
    """The params each stage declares decide what a change reruns (see the issue's matrix)."""
    stages = _stages(resolve("synthetic"))
    for variant in VARIANT_NAMES:
        train = _param_keys(stages[f"train@{variant}"])
        evaluate = _param_keys(stages[f"evaluate@{variant}"])
        # one variant's overrides reach that variant only
        assert f"variants.{variant}" in train and "variants" not in train
        assert f"variants.{variant}" in evaluate and "variants" not in evaluate
        others = {f"variants.{v}" for v in VARIANT_NAMES if v != variant}
        assert not others & (set(train) | set(evaluate))
        # eval settings do not retrain: only the selection metric matters to training
        assert [k for k in train if k.split(".")[0] == "eval"] == ["eval.selection_metric"]
        assert "eval" in evaluate and "train" not in evaluate  # only where inference runs
        assert {k for k in evaluate if k.startswith("train.")} <= {
            "train.device",
            "train.amp",
            "train.threads",
        }
    assert "eval" in _param_keys(stages["report"])
    assert not {"model", "train"} & set(_param_keys(stages["report"]))
    for name in ("data", "extract", "vocab"):
        keys = _param_keys(stages[name])
        assert not {"model", "train", "eval", "variants"} & {k.split(".")[0] for k in keys}


def test_outputs_come_from_params() -> None:
    """Switching profile switches paths: data and features paths are interpolated, not fixed."""
    dvc = _dvc()["stages"]
    assert _paths(dvc["data"], "outs") == ["${data.root}"]
    assert _paths(dvc["extract"], "outs") == ["${data.features}"]
    assert "${data.videos}" in _paths(dvc["extract"], "deps")
    assert "${data.root}" in _paths(dvc["vocab"], "deps")
    out = dvc["data"]["outs"][0]["${data.root}"]
    assert out["persist"] is True  # a real dataset in data.root is never deleted by DVC


def test_metrics_and_plots_are_declared() -> None:
    stages = _stages(resolve("synthetic"))
    for variant in VARIANT_NAMES:
        metrics = _paths(stages[f"evaluate@{variant}"], "metrics")
        assert metrics == [f"outputs/eval/{variant}/metrics.json"]
        entry = stages[f"evaluate@{variant}"]["metrics"][0][metrics[0]]
        assert entry["cache"] is False
        assert _paths(stages[f"train@{variant}"], "plots") == [
            f"outputs/models/{variant}/history.json"
        ]
    report_outs = _paths(stages["report"], "outs")
    for name in ("report.html", "report.md", "summary.json", "ablation.csv", "plots"):
        assert f"reports/{name}" in report_outs


def test_top_level_plots_read_columns_the_report_writes(tmp_path: Path) -> None:
    """Each plot's x/y fields are columns of reports/ablation.csv as the report step writes it."""
    from report_fixture import write_fixture

    from dynpath.report.tables import ablation_csv, load_results

    eval_dir, models_dir = write_fixture(tmp_path)
    results, _ = load_results(list(VARIANT_NAMES), eval_dir, models_dir)
    columns = set(ablation_csv(results, (0.3, 0.5, 0.7)).columns)
    for plot in _dvc()["plots"]:
        (props,) = plot.values()
        assert props["x"] in columns
        for file, field in props["y"].items():
            assert file == "reports/ablation.csv" and field in columns


def test_make_run_finds_the_stage_commands_without_an_activated_venv(tmp_path: Path) -> None:
    """`make run` on a fresh shell: DVC runs the stages' `dynpath ...` by name, so the recipe
    itself must put the venv's bin first on PATH (a fresh clone failed with "dynpath: command
    not found" before it did). Fake `dvc` and `dynpath` stand in for the real ones."""
    import shutil
    import subprocess

    make = shutil.which("make")
    assert make is not None, "make is required: the README's two commands are make targets"
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    calls = tmp_path / "calls.txt"
    scripts = {
        "dvc": f'#!/bin/sh\necho "dvc $*" >> "{calls}"\nexec dynpath data\n',
        "dynpath": f'#!/bin/sh\necho "dynpath $*" >> "{calls}"\n',
    }
    for name, text in scripts.items():
        (venv / "bin" / name).write_text(text)
        (venv / "bin" / name).chmod(0o755)
    (venv / ".installed").touch()  # newer than pyproject.toml / constraints.txt: no install
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    out = subprocess.run(
        [make, "-s", "run", f"VENV={venv}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert calls.read_text().splitlines() == [
        "dvc repro",
        "dynpath data",
        "dynpath report --summary",
    ]


def test_seed_runs_validation_predictions_and_meta_are_declared() -> None:
    """Every training seed's files are stage outputs (not overlapping the primary's), the stages
    that train or evaluate seeds read ``seeds``, and the report depends on what it reads."""
    stages = _stages(resolve("synthetic"))
    for variant in VARIANT_NAMES:
        train, evaluate = stages[f"train@{variant}"], stages[f"evaluate@{variant}"]
        assert "seeds" in _param_keys(train) and "seeds" in _param_keys(evaluate)
        outs = _paths(train, "outs")
        assert f"outputs/models/{variant}/seeds" in outs
        assert f"outputs/models/{variant}" not in outs  # would overlap best.pt & co
        outs = _paths(evaluate, "outs")
        assert f"outputs/eval/{variant}/seeds" in outs
        assert f"outputs/eval/{variant}/val_predictions.jsonl" in outs
        assert f"outputs/models/{variant}" in _paths(evaluate, "deps")  # every seed's best.pt
    report = stages["report"]
    assert {"seeds", "data.root"} <= set(_param_keys(report))
    assert {"${data.root}", "outputs/eval", "outputs/models"} <= set(_paths(report, "deps"))


def _git_ignored(paths: list[str]) -> set[str]:
    """The paths the repository's .gitignore ignores (whether they exist or not)."""
    import subprocess

    out = subprocess.run(
        ["git", "check-ignore", "--no-index", "--stdin"],
        cwd=REPO,
        input="\n".join(paths),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # 1: none ignored; anything else (not a checkout, no git) must fail, not hide the check
    assert out.returncode in (0, 1), f"git check-ignore failed: {out.stderr.strip()}"
    return set(out.stdout.split())


def test_git_keeps_dvc_lock_and_exactly_the_uncached_results() -> None:
    """The default run's baseline is committed (docs/dvc.md, "The committed baseline"): dvc.lock
    and every ``cache: false`` output, metric and plot (the only copy of those is the
    workspace's, so a fresh clone has them from git alone), while every cached output (in the
    DVC cache and a remote, never in git) stays ignored."""
    uncached, cached = [], []
    for stage in _stages(resolve("synthetic")).values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                path, opts = (entry, {}) if isinstance(entry, str) else next(iter(entry.items()))
                path = _render(path, resolve("synthetic"))
                in_cache = (opts or {}).get("cache", kind == "outs")
                (cached if in_cache else uncached).append(path)
    assert "outputs/params_check.json" in uncached and "reports/summary.json" in uncached
    ignored = _git_ignored(["dvc.lock", *uncached, *cached])
    assert "dvc.lock" not in ignored
    assert sorted(set(uncached) & ignored) == []
    assert sorted(set(cached) - ignored) == []
