"""A real `dvc repro` / `dvc exp run` with an invalid params value: it fails in the check stage,
before DVC deletes any output (issue 26: the train stage's uncached history.json and
train_summary.json were lost for good when `dynpath train` refused the params DVC had already
cleared the way for).

Slow (about 20 s on 2 CPUs): one variant of the tiny profile, one seed, up to its train stage.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from dvc_project import RAN, copy_repo, run, set_params

from dynpath.profiles import use_profile

pytestmark = pytest.mark.slow

MODEL = Path("outputs/models/dynamic")
#: every output of train@dynamic, the uncached ones (history, summary) first
OUTPUTS = ("history.json", "train_summary.json", "best.pt", "last.pt")


def digest(repo: Path) -> dict[str, str]:
    return {
        name: hashlib.sha256((repo / MODEL / name).read_bytes()).hexdigest() for name in OUTPUTS
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    repo = copy_repo(tmp_path_factory.mktemp("dvc") / "repo")
    use_profile("tiny", repo / "params.yaml")
    set_params(repo, seeds=[12345], variants={"dynamic": {}})
    for stale in ("dvc.lock", "mlflow.db"):
        (repo / stale).unlink(missing_ok=True)
    run(repo, "git", "init", "-q", "-b", "main")
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "tiny")
    out = run(repo, "dvc", "repro", "train@dynamic")
    assert set(RAN.findall(out)) == {"check", "data", "extract", "vocab", "train@dynamic"}, out
    run(repo, "git", "add", "-A")
    run(repo, "git", "commit", "-q", "-m", "trained")
    yield repo


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("train/lr", -1.0, "train.lr"),  # a value the schema refuses
        ("train/lrr", 0.1, "lrr"),  # a typo'd key
        ("variants/dynamic", {"model.dropuot": 0.1}, "dropuot"),  # a typo in a variant's override
    ],
)
def test_repro_with_a_bad_value_fails_before_any_output_is_removed(
    trained: Path, key: str, value: object, named: str
) -> None:
    before = digest(trained)
    set_params(trained, **{key: value})
    try:
        out = run(trained, "dvc", "repro", check=False)
        assert set(RAN.findall(out)) == {"check"}, out  # stopped there: train@dynamic never ran
        assert "dynpath check: error:" in out and named in out, out
        assert digest(trained) == before  # every output still there, byte for byte
    finally:
        run(trained, "git", "checkout", "--", "params.yaml")
    # the fixed params: the check reruns, writes the same bytes, and nothing else reruns
    out = run(trained, "dvc", "repro", "train@dynamic")
    assert set(RAN.findall(out)) <= {"check"}, out
    assert digest(trained) == before


def test_exp_run_with_a_typo_keeps_every_output(trained: Path) -> None:
    before = digest(trained)
    try:
        out = run(trained, "dvc", "exp", "run", "-S", "+train.epochz=3", check=False)
        assert "train@dynamic" not in RAN.findall(out), out
        assert "epochz" in out and digest(trained) == before, out
    finally:
        run(trained, "git", "checkout", "--", "params.yaml")
