"""The registry scheme a user can trust, against a REAL ``mlflow server`` (``mlflow_server.py``).

``dynpath-<dataset>`` holds the paper's model ``dynamic`` only; each ablation variant registers as
``dynpath-<dataset>-<variant>``; every version carries variant, arch, dataset, data digest and
code version as tags; ``dynpath promote`` compares like with like and can never crown an ablation
variant as the paper model's champion. The experiment opens in the MLflow UI's model-training
view (``mlflow.experimentKind``).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import mlflow_server as fixtures
import pytest
from mlflow_server import MlflowServer, make_model_dir, tiny_config
from reliability_workspace import build_workspace

import dynpath
from dynpath.config import load_config
from dynpath.errors import TrackingError
from dynpath.inference.localizer import Localizer
from dynpath.tracking.registry import register_challenger
from dynpath.tracking.tracker import start_tracking

mlflow_server = fixtures.mlflow_server
mlflow_env = fixtures.mlflow_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore:.*An input example was not provided"),
]

REPO = Path(__file__).resolve().parents[1]
KIND = "mlflow.experimentKind"


def _client(server: MlflowServer) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(server.url, registry_uri=server.url)


def _head() -> str | None:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return head.stdout.strip() if head.returncode == 0 else None


def test_two_variants_trained_then_promoted_champion_is_the_paper_model(
    mlflow_env: MlflowServer, tmp_path: Path
) -> None:
    """The README's flow in small: train ``dynamic`` then an ablation variant (trained last, as
    ``concat_fusion`` is by ``dvc repro``), promote as the README says; ``@champion`` is the
    ``dynamic`` model with its tags, and the ablation variant has its own registered model."""
    from dynpath.steps import promote as promote_step
    from dynpath.steps import train as train_step

    name = "srv-scheme"
    ws = build_workspace(
        tmp_path,
        data={"name": name},
        train={"epochs": 2},
        tracking={"enabled": True, "log_system_metrics": False},
    )
    cfg = load_config(ws.params)
    summaries = {
        v: train_step.run(cfg, v, ws.vocab, ws.models / v, resume=False)
        for v in ("dynamic", "sum_fusion")
    }
    client = _client(mlflow_env)
    paper, ablation = f"dynpath-{name}", f"dynpath-{name}-sum_fusion"
    assert [mv.version for mv in client.search_model_versions(f"name='{paper}'")] == ["1"]
    assert [mv.version for mv in client.search_model_versions(f"name='{ablation}'")] == ["1"]

    result = promote_step.run(cfg)  # the README's `dynpath promote`
    assert result["model"] == paper and result["decision"] == "promoted"
    champion = client.get_model_version_by_alias(paper, "champion")
    assert champion.run_id == summaries["dynamic"]["mlflow_run_id"]
    tags = dict(champion.tags)
    run_tags = client.get_run(champion.run_id).data.tags
    assert tags["variant"] == "dynamic" and tags["arch"] == "dynamic"
    assert tags["dataset"] == name
    assert re.fullmatch(r"[0-9a-f]{64}", tags["data_digest"])
    assert tags["data_digest"] == run_tags["dynpath.data_digest"]  # features + annotations
    head = _head()
    expected = f"{dynpath.__version__}+g{head[:12]}" if head else dynpath.__version__
    assert tags["code_version"].removesuffix(".dirty") == expected
    assert Localizer.load(f"models:/{paper}@champion", device="cpu").variant == "dynamic"

    # the ablation variant is promoted within its own registered model, by the same rule
    other = promote_step.run(cfg, variant="sum_fusion")
    assert other["model"] == ablation and other["decision"] == "promoted"
    mv = client.get_model_version_by_alias(ablation, "champion")
    assert mv.tags["variant"] == "sum_fusion" and mv.tags["dataset"] == name
    assert mv.run_id == summaries["sum_fusion"]["mlflow_run_id"]
    assert client.get_model_version_by_alias(paper, "champion").version == champion.version
    with pytest.raises(TrackingError, match=r"not in params\.yaml `variants`"):
        promote_step.run(cfg, variant="no_such_variant")


def _logged(name: str, root: Path, variant: str, metric: float, seed: int) -> tuple[str, str]:
    """A run of ``variant`` that logged ``metric`` and a model; (model URI, run id)."""
    arch, cfg = tiny_config(name).variant(variant)
    model_dir = make_model_dir(root / f"{variant}{seed}", variant=variant, seed=seed, name=name)
    with start_tracking(cfg, variant, arch) as tracker:
        tracker.log_metrics({"val_r1_iou0.5": metric}, 0)
        uri = tracker.log_model(model_dir)
    assert uri and tracker.run_id
    return uri, tracker.run_id


def test_an_ablation_variant_never_becomes_the_paper_models_champion(
    mlflow_env: MlflowServer, tmp_path: Path
) -> None:
    """Even registered INTO ``dynpath-<dataset>`` (by hand, or by a dynpath from before the
    scheme, untagged) and far better on the metric, an ablation version is refused, by default
    and by explicit ``--version``; a legacy ablation champion is replaced by a ``dynamic`` one."""
    from dynpath.steps import promote as promote_step

    name = "srv-guard"
    paper = f"dynpath-{name}"
    cfg = tiny_config(name)
    client = _client(mlflow_env)

    def champion() -> str | None:
        aliases = client.get_registered_model(paper).aliases
        return str(aliases["champion"]) if "champion" in aliases else None

    # a pre-scheme registry: an UNTAGGED sum_fusion version made champion by the old promote
    uri, run_id = _logged(name, tmp_path, "sum_fusion", 90.0, seed=1)
    legacy = register_challenger(client, paper, uri, run_id)
    client.set_registered_model_alias(paper, "champion", legacy)

    uri, run_id = _logged(name, tmp_path, "dynamic", 20.0, seed=2)
    good = register_challenger(
        client, paper, uri, run_id, tags={"variant": "dynamic", "dataset": name}
    )
    result = promote_step.run(cfg)  # worse on the metric, but the only comparable model
    assert result["decision"] == "promoted" and champion() == good
    assert "not comparable" in result["reason"] and "'sum_fusion'" in result["reason"]

    # a tagged ablation version, the newest challenger, better on the metric: refused
    uri, run_id = _logged(name, tmp_path, "sum_fusion", 99.0, seed=3)
    bad = register_challenger(
        client, paper, uri, run_id, tags={"variant": "sum_fusion", "dataset": name}
    )
    for version in (None, bad, legacy):  # the challenger, and each named explicitly
        with pytest.raises(TrackingError, match="holds variant 'dynamic' only"):
            promote_step.run(cfg, version)
        assert champion() == good
    assert "promotion_decision" not in client.get_model_version(paper, bad).tags
    # another dataset's dynamic model registered here is refused just the same
    uri, run_id = _logged("srv-elsewhere", tmp_path, "dynamic", 99.0, seed=4)
    stray = register_challenger(
        client, paper, uri, run_id, tags={"variant": "dynamic", "dataset": "srv-elsewhere"}
    )
    with pytest.raises(TrackingError, match="holds dataset 'srv-guard' only"):
        promote_step.run(cfg, stray)
    assert champion() == good


def test_experiment_is_a_model_training_experiment(mlflow_env: MlflowServer) -> None:
    """Created with ``mlflow.experimentKind=custom_model_development`` (the UI then opens on the
    training runs, not the GenAI view); an existing experiment without the tag gets it, one
    whose kind someone set on purpose keeps it."""
    client = _client(mlflow_env)

    def run_once(name: str) -> dict[str, str]:
        arch, cfg = tiny_config(name).variant("dynamic")
        with start_tracking(cfg, "dynamic", arch) as tracker:
            tracker.log_metrics({"loss": 1.0}, 0)
        assert tracker.summary()["tracking_status"] == "ok"
        exp = client.get_experiment_by_name(f"dynpath-{name}")
        return dict(exp.tags)

    assert run_once("srv-kind-new")[KIND] == "custom_model_development"
    client.create_experiment("dynpath-srv-kind-old")  # made before dynpath set the kind
    assert KIND not in client.get_experiment_by_name("dynpath-srv-kind-old").tags
    assert run_once("srv-kind-old")[KIND] == "custom_model_development"
    client.create_experiment("dynpath-srv-kind-chosen", tags={KIND: "genai_development"})
    assert run_once("srv-kind-chosen")[KIND] == "genai_development"
