"""The compiled Kubeflow pipeline YAML: fan-out/fan-in, GPU placement, secrets, cache keys. The
DAG's tasks are checked against the stage table (dynpath.stages), the one list of the stages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dynpath.config import Config
from dynpath.kfp import compile as kfp_pipeline
from dynpath.kfp.components import FUNCTIONS
from dynpath.profiles import resolve
from dynpath.stages import KFP_DATA_STEPS, STAGES

VARIANTS = ["dynamic", "exploitation_only", "sum_fusion"]

#: Stage -> the Kubeflow task that runs it (the data stage of a synthetic profile is ``synth``).
TASK_OF = {s.name: {v: k for k, v in KFP_DATA_STEPS.items()}.get(s.name, s.name) for s in STAGES}
#: The stages run once per variant (dvc.yaml's ``foreach``, the pipeline's ParallelFor).
PER_VARIANT = [s.name for s in STAGES if "variants.${key}" in s.params]
#: The Kubeflow steps that are no DVC stage: fetching a real dataset's files with DVC (the data
#: stage of a real profile, which DVC reads in place) and promoting in the MLflow registry.
KFP_ONLY = {"fetch_data", "promote"}


def _cfg(profile: str = "tiny", tracking: bool = True, **pipeline: Any) -> Config:
    raw = resolve(profile)
    raw["variants"] = {v: {} for v in VARIANTS}
    raw["pipeline"]["gpu"] = {
        "extract": {
            "count": 1,
            "accelerator": "nvidia.com/gpu",
            "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
            "tolerations": [],
        },
        "train": {
            "count": 2,
            "accelerator": "nvidia.com/gpu",
            "node_selector": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
            "tolerations": [
                {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
            ],
        },
    }
    raw["pipeline"].update(pipeline)
    raw["tracking"]["enabled"] = tracking
    return Config.model_validate(raw)


def _compile(cfg: Config, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    out = kfp_pipeline.compile_pipeline(cfg, path)
    assert out == path and path.is_file()
    docs = list(yaml.safe_load_all(path.read_text()))
    spec = docs[0]
    platform = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    return spec, platform


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    return _compile(_cfg(), tmp_path_factory.mktemp("kfp") / "pipeline.yaml")


def _loop(spec: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    loops = [(n, t) for n, t in spec["root"]["dag"]["tasks"].items() if "parameterIterator" in t]
    assert len(loops) == 1, "exactly one ParallelFor over the variants"
    return loops[0]


def test_parallel_for_over_variants_has_one_train_and_one_evaluate(compiled: Any) -> None:
    spec, _ = compiled
    _, loop = _loop(spec)
    assert json.loads(loop["parameterIterator"]["items"]["raw"]) == VARIANTS
    body = spec["components"][loop["componentRef"]["name"]]["dag"]["tasks"]
    assert sorted(body) == sorted(TASK_OF[s] for s in PER_VARIANT)
    item = loop["parameterIterator"]["itemInput"]
    for task in body.values():
        assert task["inputs"]["parameters"]["variant"] == {"componentInputParameter": item}
    # evaluate consumes the model trained in the same iteration
    model = body["evaluate"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
    assert model == {"outputArtifactKey": "model", "producerTask": "train"}


def test_root_dag_is_data_extract_vocab_loop_report_promote(compiled: Any) -> None:
    spec, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]
    loop_name, _ = _loop(spec)
    order = list(
        dict.fromkeys(loop_name if s.name in PER_VARIANT else TASK_OF[s.name] for s in STAGES)
    )
    assert sorted(tasks) == sorted([*order, "promote"])
    for i, name in enumerate(order):  # a stage's task waits only for tasks of earlier stages
        assert set(tasks[name].get("dependentTasks", [])) <= set(order[:i]), name
    assert tasks["extract"]["dependentTasks"] == ["synth"]
    assert tasks["promote"]["dependentTasks"] == ["report"]
    assert "cachingOptions" in tasks["promote"] and not tasks["promote"]["cachingOptions"]
    assert tasks["extract"]["cachingOptions"] == {"enableCache": True}


def test_every_component_runs_a_stage_or_a_kubeflow_only_step() -> None:
    """A stage added to the table needs its component (and one removed, its component gone)."""
    assert set(FUNCTIONS) == set(TASK_OF.values()) | KFP_ONLY
    assert all(name == func.__name__ for name, func in FUNCTIONS.items())


def test_without_tracking_the_dag_ends_at_the_report(tmp_path: Path) -> None:
    spec, _ = _compile(_cfg(tracking=False), tmp_path / "p.yaml")
    tasks = spec["root"]["dag"]["tasks"]
    assert "report" in tasks and "promote" not in tasks
    assert spec["root"]["dag"]["outputs"]["artifacts"]["Output"]["artifactSelectors"] == [
        {"outputArtifactKey": "report", "producerSubtask": "report"}
    ]


def test_report_fans_in_every_iteration(compiled: Any) -> None:
    spec, _ = compiled
    loop_name, loop = _loop(spec)
    report = spec["root"]["dag"]["tasks"]["report"]
    arts = report["inputs"]["artifacts"]
    assert set(arts) == {"evaluations", "models", "vocab"}
    for name in ("evaluations", "models"):
        assert arts[name]["taskOutputArtifact"]["producerTask"] == loop_name
    loop_outputs = spec["components"][loop["componentRef"]["name"]]["outputDefinitions"]
    assert all(a.get("isArtifactList") for a in loop_outputs["artifacts"].values())
    inputs = spec["components"]["comp-report"]["inputDefinitions"]["artifacts"]
    assert inputs["evaluations"]["isArtifactList"] and inputs["models"]["isArtifactList"]
    outputs = spec["components"]["comp-report"]["outputDefinitions"]["artifacts"]
    assert outputs["html"]["artifactType"]["schemaTitle"] == "system.HTML"
    assert outputs["markdown"]["artifactType"]["schemaTitle"] == "system.Markdown"


def test_gpus_node_selectors_and_tolerations_on_extract_and_train_only(compiled: Any) -> None:
    spec, platform = compiled
    executors = spec["deploymentSpec"]["executors"]
    gpu = {
        name: ex["container"].get("resources", {}).get("accelerator")
        for name, ex in executors.items()
    }
    assert gpu.pop("exec-extract")["resourceCount"] == "1"
    train = gpu.pop("exec-train")
    assert train["resourceCount"] == "2" and train["resourceType"] == "nvidia.com/gpu"
    assert not any(gpu.values()), f"unexpected GPU requests: {gpu}"

    selectors = {n: e["nodeSelector"]["labels"] for n, e in platform.items() if "nodeSelector" in e}
    assert selectors == {
        "exec-extract": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
        "exec-train": {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
    }
    tolerations = {n: e["tolerations"] for n, e in platform.items() if "tolerations" in e}
    assert tolerations == {
        "exec-train": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    }


def test_runs_in_project_image_without_runtime_installs(compiled: Any) -> None:
    spec, _ = compiled
    for name, ex in spec["deploymentSpec"]["executors"].items():
        container = ex["container"]
        assert container["image"] == "ghcr.io/dynpath/dynpath:0.1.0", name
        script = " ".join(container["command"])
        assert "pip install" not in script, f"{name} installs packages at run time"
        assert "kfp.dsl.executor_main" in script


def test_mlflow_and_s3_settings_come_from_secrets_and_config_map(compiled: Any) -> None:
    spec, platform = compiled
    for executor in ("exec-train", "exec-evaluate", "exec-report", "exec-promote"):
        cfg = platform[executor]
        secrets = {
            s["secretName"]: {k["envVar"] for k in s["keyToEnv"]} for s in cfg["secretAsEnv"]
        }
        assert secrets == {
            "dynpath-s3": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
            "dynpath-mlflow": {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"},
        }
        (cmap,) = cfg["configMapAsEnv"]
        assert cmap["configMapName"] == "dynpath-config"
        env = {k["envVar"] for k in cmap["keyToEnv"]}
        assert env >= {"MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL"}
    # the synthetic data steps touch neither MLflow nor S3
    for executor in ("exec-synth", "exec-vocab"):
        assert "secretAsEnv" not in platform.get(executor, {})
    # no environment values are compiled into the containers
    for ex in spec["deploymentSpec"]["executors"].values():
        assert "env" not in ex["container"]


def test_every_step_is_keyed_by_code_version_and_data_digest(compiled: Any) -> None:
    spec, _ = compiled
    root_inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert root_inputs["code_version"]["defaultValue"].startswith("0.1.0")
    assert root_inputs["data_digest"]["defaultValue"].startswith("synthetic-")
    for name, comp in spec["components"].items():
        if "executorLabel" not in comp:
            continue
        params = comp["inputDefinitions"]["parameters"]
        assert "code_version" in params, name
        if name != "comp-promote":
            assert "data_digest" in params, name


def test_data_steps_receive_only_their_config_sections(compiled: Any) -> None:
    spec, _ = compiled
    tasks = spec["root"]["dag"]["tasks"]

    def params(task: dict[str, Any]) -> dict[str, Any]:
        return json.loads(task["inputs"]["parameters"]["params"]["runtimeValue"]["constant"])

    assert sorted(params(tasks["extract"])) == ["data", "extract", "seed"]
    assert sorted(params(tasks["vocab"])) == ["data", "seed", "vocab"]
    synth = params(tasks["synth"])
    assert sorted(synth) == ["data", "extract", "seed", "synth", "vocab"]
    assert synth["extract"] == {"frame_rate": None, "stride": 8} and synth["vocab"] == {"dim": 300}
    assert "train" in params(tasks["report"])


def test_data_digest_changes_with_the_data_and_reruns(tmp_path: Path) -> None:
    a = _cfg()
    raw = a.model_dump(mode="json")
    raw["synth"]["num_videos"] += 1
    b = Config.model_validate(raw)
    assert kfp_pipeline.data_digest(a) != kfp_pipeline.data_digest(b)
    raw = a.model_dump(mode="json")
    raw["extract"]["stride"] = 16  # the synthetic clip length follows the extractor's stride
    assert kfp_pipeline.data_digest(a) != kfp_pipeline.data_digest(Config.model_validate(raw))
    raw = a.model_dump(mode="json")
    raw["train"]["epochs"] += 1  # training does not change the data
    assert kfp_pipeline.data_digest(a) == kfp_pipeline.data_digest(Config.model_validate(raw))
    spec_a, _ = _compile(a, tmp_path / "a.yaml")
    spec_b, _ = _compile(b, tmp_path / "b.yaml")
    digest = [
        s["root"]["inputDefinitions"]["parameters"]["data_digest"]["defaultValue"]
        for s in (spec_a, spec_b)
    ]
    assert digest[0] != digest[1]


def test_real_dataset_fetches_dvc_inputs_with_s3_credentials(tmp_path: Path) -> None:
    cfg = _cfg("charades_sta", data_rev="v1.0")
    spec, platform = _compile(cfg, tmp_path / "real.yaml")
    tasks = spec["root"]["dag"]["tasks"]
    assert "fetch-data" in tasks and "synth" not in tasks
    fetch = tasks["fetch-data"]["inputs"]["parameters"]
    paths = fetch["paths"]["runtimeValue"]["constant"]
    assert cfg.data.root in paths and all(not Path(p).is_absolute() for p in paths)
    assert fetch["data_rev"] == {"componentInputParameter": "data_rev"}
    root_inputs = spec["root"]["inputDefinitions"]["parameters"]
    assert root_inputs["data_rev"]["defaultValue"] == "v1.0"  # unresolvable here: kept as named
    secrets = {s["secretName"] for s in platform["exec-fetch-data"]["secretAsEnv"]}
    assert secrets == {"dynpath-s3"}


def test_compile_rejects_a_non_yaml_package(tmp_path: Path) -> None:
    from dynpath.errors import DynpathError

    with pytest.raises(DynpathError, match=r"\.yaml"):
        kfp_pipeline.compile_pipeline(_cfg(), tmp_path / "pipeline.json")


def test_cli_compile_writes_the_yaml(tmp_path: Path, repo_root: Path) -> None:
    from dynpath.cli import main
    from dynpath.profiles import use_profile

    params = use_profile("tiny", tmp_path / "params.yaml")
    out = tmp_path / "out" / "p.yaml"
    assert main(["--params", str(params), "pipeline", "compile", "--output", str(out)]) == 0
    spec = next(yaml.safe_load_all(out.read_text()))
    assert spec["pipelineInfo"]["name"] == "dynpath"


GPU_NODE = {"nvidia.com/gpu.present": "true"}
GPU_TAINT = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_default_gpu_placement_schedules_on_common_gpu_clusters(tmp_path: Path) -> None:
    """Without any pipeline.gpu override (the defaults params.yaml ships): extract and train,
    and nothing else, select nvidia.com/gpu.present=true nodes and tolerate the nvidia.com/gpu
    NoSchedule taint, so their pods land on (usually tainted) GPU nodes."""
    raw = resolve("tiny")
    raw["variants"] = {v: {} for v in VARIANTS}
    raw["tracking"]["enabled"] = True
    spec, platform = _compile(Config.model_validate(raw), tmp_path / "pipeline.yaml")
    selectors = {n: e["nodeSelector"]["labels"] for n, e in platform.items() if "nodeSelector" in e}
    assert selectors == {"exec-extract": GPU_NODE, "exec-train": GPU_NODE}
    tolerations = {n: e["tolerations"] for n, e in platform.items() if "tolerations" in e}
    assert tolerations == {"exec-extract": GPU_TAINT, "exec-train": GPU_TAINT}
    assert set(spec["deploymentSpec"]["executors"]) > {"exec-extract", "exec-train"}

    # params.yaml states the same defaults, and an override removes them
    shipped = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    for task in ("extract", "train"):
        assert shipped["pipeline"]["gpu"][task]["node_selector"] == GPU_NODE
        assert shipped["pipeline"]["gpu"][task]["tolerations"] == GPU_TAINT
    raw["pipeline"]["gpu"]["extract"].update(node_selector={}, tolerations=[])
    _, platform = _compile(Config.model_validate(raw), tmp_path / "override.yaml")
    extract = platform.get("exec-extract", {})
    assert "nodeSelector" not in extract and "tolerations" not in extract
    assert platform["exec-train"]["nodeSelector"]["labels"] == GPU_NODE
    assert platform["exec-train"]["tolerations"] == GPU_TAINT


def test_without_the_paper_model_there_is_no_promotion(tmp_path: Path) -> None:
    """Promotion is of the paper's model (``dynamic``): a run of ablation variants alone must
    not end in a promote task that could only fail (no ``dynpath-<dataset>`` challenger)."""
    cfg = _cfg()
    cfg = cfg.model_copy(update={"variants": {"sum_fusion": {}, "exploitation_only": {}}})
    spec, _ = _compile(cfg, tmp_path / "p.yaml")
    tasks = spec["root"]["dag"]["tasks"]
    assert "report" in tasks and "promote" not in tasks
