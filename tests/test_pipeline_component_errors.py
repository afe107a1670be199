"""The components' error path in a pod (docs/cluster.md, "Exit codes of the pipeline's pods").

A component function is called here as the KFP executor calls it (in-process, artifacts with a
``path``): bad input ends as SystemExit(2) and one line ``dynpath <component>: error: ...`` on
stderr, no traceback; anything else propagates with its traceback (the pod exits 1).
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dynpath.config import Config
from dynpath.kfp import spec
from dynpath.kfp.components import FUNCTIONS
from dynpath.profiles import resolve


@dataclass
class _Artifact:
    """What a component reads of a KFP artifact: its local ``path`` and ``metadata``."""

    path: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _kwargs(func: Any, tmp_path: Path, params: str) -> dict[str, Any]:
    """Arguments for every parameter of ``func``: ``params`` for params, "" for the other
    strings, [] for lists, an (empty) artifact directory for the rest."""
    out: dict[str, Any] = {}
    for name, annotation in func.__annotations__.items():
        if name == "return":
            continue
        if name == "params":
            out[name] = params
        elif annotation is str:
            out[name] = ""
        elif annotation is list:
            out[name] = []
        else:
            (tmp_path / name).mkdir(parents=True, exist_ok=True)
            out[name] = _Artifact(str(tmp_path / name))
    return out


def _tiny_params(step: str, **overrides: Any) -> str:
    raw = json.loads(spec.step_params(Config.model_validate(resolve("tiny")), step))
    for section, values in overrides.items():
        raw.setdefault(section, {}).update(values)
    return json.dumps(raw)


def _one_error_line(err: str, component: str) -> str:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"dynpath {component}: error: ")
    return lines[0]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_component_turns_bad_input_into_exit_2_and_one_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Garbage ``params`` (or, for fetch-data, no data repository) in every component."""
    func = FUNCTIONS[name]
    with pytest.raises(SystemExit) as exc:
        func(**_kwargs(func, tmp_path, params="{not json"))
    assert exc.value.code == 2
    line = _one_error_line(capsys.readouterr().err, name.replace("_", "-"))
    assert ("no data repository" if name == "fetch_data" else "'params' is not JSON") in line


def test_a_bad_params_value_names_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    func = FUNCTIONS["vocab"]
    params = _tiny_params("vocab", train={"epochs": True})
    with pytest.raises(SystemExit) as exc:
        func(**_kwargs(func, tmp_path, params=params))
    assert exc.value.code == 2
    line = _one_error_line(capsys.readouterr().err, "vocab")
    assert "train.epochs" in line and "boolean" in line


def test_a_missing_input_file_names_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The data artifact holds no annotations: the train pod says which directory is missing."""
    func = FUNCTIONS["train"]
    kwargs = _kwargs(func, tmp_path, params=_tiny_params("train"))
    kwargs["variant"] = "dynamic"
    with pytest.raises(SystemExit) as exc:
        func(**kwargs)
    assert exc.value.code == 2
    line = _one_error_line(capsys.readouterr().err, "train")
    assert f"{tmp_path / 'data' / 'data' / 'tiny'}: annotation directory not found" in line


def test_an_unexpected_error_propagates_with_its_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from dynpath.steps import synth as step

    def crash(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("bug in the step")

    monkeypatch.setattr(step, "run", crash)
    func = FUNCTIONS["synth"]
    with pytest.raises(RuntimeError, match="bug in the step"):
        func(**_kwargs(func, tmp_path, params=_tiny_params("synth")))
    assert "error:" not in capsys.readouterr().err


_POD = """
import sys
from dynpath.errors import DataError
from dynpath.kfp.runtime import component_errors
with component_errors("train"):
    raise DataError("features.h5: not found") if sys.argv[1] == "bad" else KeyError("bug")
"""


@pytest.mark.parametrize("verbose", ["", "1"])
def test_the_exit_codes_a_pod_process_ends_with(verbose: str) -> None:
    """What the pod's Python process returns: 2 and one line for bad input (the traceback only
    with DYNPATH_VERBOSE=1), 1 and the full traceback for a bug."""
    env = {**os.environ, "DYNPATH_VERBOSE": verbose}
    bad = subprocess.run(
        [sys.executable, "-c", _POD, "bad"], capture_output=True, text=True, env=env, timeout=60
    )
    assert bad.returncode == 2
    last = "dynpath train: error: features.h5: not found"
    if verbose:
        assert "Traceback" in bad.stderr and bad.stderr.splitlines()[-1] == last
    else:
        assert bad.stderr == last + "\n"
    bug = subprocess.run(
        [sys.executable, "-c", _POD, "bug"], capture_output=True, text=True, env=env, timeout=60
    )
    assert bug.returncode == 1
    assert "Traceback" in bug.stderr and bug.stderr.splitlines()[-1] == "KeyError: 'bug'"


@pytest.mark.slow
def test_a_kfp_local_task_with_bad_input_fails_on_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """One component through the real KFP executor (kfp.local, subprocess runner): the task
    fails, and its log ends with the one line, without a traceback."""
    import warnings

    from kfp import local

    from dynpath.kfp.components import load

    # kfp.local swaps print and the root logger's handlers for its own: put them back after
    monkeypatch.setattr(builtins, "print", builtins.print)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", root.handlers[:])
    warnings.filterwarnings("ignore", message=".*non-Python base image.*")
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(tmp_path),
        raise_on_error=True,
    )
    synth = load("dynpath:test")["synth"]
    params = _tiny_params("synth", train={"epochs": True})
    with pytest.raises(RuntimeError, match="FAILURE"):
        synth(params=params, code_version="c", data_digest="d")
    out = capfd.readouterr()
    log = out.out + out.err
    assert "Traceback" not in log
    assert "dynpath synth: error: component input 'params': train.epochs: a boolean" in log
