"""Typed schema of ``params.yaml``, the single source of truth of the DAG.

Every stage (DVC or Kubeflow) reads its own section through :func:`load_config`. The schema
forbids unknown keys and checks types on load, so a typo in ``params.yaml`` fails at once with the
dotted path of the bad key instead of silently falling back to a default half-way through training.

Variants (the ablation rows of Tables III/IV) are entries of ``variants:``. Each maps a variant
name to dotted overrides of the base config, e.g. ``{"model.gumbel_tau": 0.5}``; the optional
``arch`` key names the registered architecture when the variant's own name is not one
(``dynamic_tau05: {arch: dynamic, model.gumbel_tau: 0.5}``).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dynpath.errors import DynpathError
from dynpath.strict_yaml import YAMLRefused, strict_yaml_load

DEFAULT_PARAMS = Path("params.yaml")


class ConfigError(DynpathError, ValueError):
    """A params file that cannot be used; the message names the file and the key.

    A DynpathError like every user-facing failure (one catch at the API boundary and the CLI),
    and still a ValueError for callers that catch that."""


DEVICE_PATTERN = r"^(auto|cpu|cuda(:\d+)?)$"
#: The largest ``topk`` (params ``eval.topk``, ``localize --topk``, the API's and the served
#: model's ``topk``): each span costs one pass over the [T, T] score grid, so 1e9 would run for
#: hours and grow memory without an answer; R@100 is already far beyond any reported metric.
MAX_TOPK = 100
#: Seeds seed NumPy's legacy generator, which takes 0..2**32-1.
MAX_SEED = 2**32 - 1


def check_device(value: str, where: str, available: bool = True) -> str:
    """``value`` if it names a device dynpath can use: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Anything else (``tpu``, ``gpu``) is a :class:`ConfigError` naming ``where``; with
    ``available``, ``cuda`` on a machine (or a torch build) without CUDA is one too, instead of
    a silent fall-back to the CPU or a torch error in the middle of a run.
    """
    if not isinstance(value, str) or not re.match(DEVICE_PATTERN, value):
        raise ConfigError(f"{where}: unknown device {value!r}; use auto, cpu, cuda or cuda:N")
    if available and value.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError(
                f"{where}: {value!r} but CUDA is not available on this machine (or this torch "
                "build); use cpu or auto"
            )
        index = int(value.split(":")[1]) if ":" in value else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"{where}: {value!r} but this machine has {torch.cuda.device_count()} GPU(s)"
            )
    return value


def _allows_bool(annotation: Any) -> bool:
    return "bool" in repr(annotation)


def _has_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, list | tuple):
        return any(_has_bool(v) for v in value)
    return False


class _Section(BaseModel):
    # allow_inf_nan=False: `.inf`/`.nan` (and 1e400, which YAML reads as inf) are refused at load
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """A YAML ``true`` is not a number: pydantic's lax mode would read ``epochs: true`` as
        1 epoch and ``lr: false`` as 0; only fields declared bool take booleans."""
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and not _allows_bool(field.annotation) and _has_bool(value):
            if "Any" in repr(field.annotation) or "dict" in repr(field.annotation):
                return value  # free-form mappings (variants, node selectors) check their values
            raise ValueError(f"a boolean ({value!r}) is not valid here; give a number or text")
        return value


class DataConfig(_Section):
    """Where annotations, videos and features live, and how sequences are bounded."""

    dataset: Literal["synthetic", "charades_sta", "tacos", "activitynet", "jsonl"] = "synthetic"
    name: str = "synthetic"  # experiment / registered-model suffix: dynpath-<name>
    root: str = "data/synthetic"  # annotation files (format given by `dataset`)
    videos: str = "data/synthetic/videos"  # raw videos for `extract`
    features: str = "data/features/synthetic.h5"  # HDF5 feature store (extract output)
    max_len: int = Field(64, ge=2)  # feature positions after resampling (docs/design.md)
    val_fraction: float = Field(0.1, gt=0.0, lt=0.5)  # carved from train when no val split


#: The dataset names params.yaml accepts, read off ``DataConfig.dataset`` (the CLI's
#: ``--dataset`` choices come from here; tests/test_one_list_per_concept.py ties it to READERS).
DATASETS: tuple[str, ...] = get_args(DataConfig.model_fields["dataset"].annotation)


class SynthConfig(_Section):
    """Size of the embedded synthetic benchmark (see dynpath.data.synthetic for the grammar)."""

    num_videos: int = Field(240, ge=6)
    queries_per_video: int = Field(4, ge=1)
    min_duration: float = Field(16.0, gt=0)
    max_duration: float = Field(40.0, gt=0)
    fps: int = Field(8, ge=1)
    size: int = Field(64, ge=16)  # frame width = height, pixels
    # videos held out as the test split; a study sizing its intervals may hold out most of them
    test_fraction: float = Field(0.2, gt=0, lt=0.9)


class ExtractConfig(_Section):
    """Clip-feature extraction from raw videos (paper Eq. 2)."""

    backbone: str = "i3d"  # registry name: i3d | c3d
    weights: str | None = None  # checkpoint path; None = seeded random init, flagged everywhere
    frame_rate: float | None = None  # None = keep each video's own rate
    window: int = Field(16, ge=1)  # frames per clip
    stride: int = Field(16, ge=1)  # frames between clip starts (== window: non-overlapping)
    size: int = Field(224, ge=16)  # crop side fed to the backbone
    batch_size: int = Field(8, ge=1)
    device: str = Field("auto", pattern=DEVICE_PATTERN)  # auto | cpu | cuda | cuda:N
    amp: bool = True  # CUDA: fp16 autocast; CPU: bfloat16 where oneDNN supports it natively
    max_failures: float = Field(0.05, ge=0.0)  # fraction (<1) or count (>=1) of unreadable videos


class VocabConfig(_Section):
    """Vocabulary and word vectors (frozen GloVe, trainable UNK)."""

    embeddings: str | None = "data/synthetic/glove.synthetic.300d.txt"
    dim: int = Field(300, ge=1)
    max_query_len: int = Field(30, ge=1)
    lowercase: bool = True


class ModelConfig(_Section):
    """Architecture hyper-parameters (paper Sec. IV-C)."""

    dim: int = Field(512, ge=8)
    heads: int = Field(8, ge=1)
    lstm_scales: int = Field(3, ge=1)
    kernels: tuple[int, ...] = (3, 5, 7, 9)
    text_lstm_layers: int = Field(3, ge=1)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    # Eq. 13's temperature. The paper calls it "an annealing temperature" without a schedule:
    # ``gumbel_tau`` is the value at the first training step and ``gumbel_tau_end`` (None: no
    # annealing) the value at the last, interpolated geometrically (``gumbel_anneal``
    # "exponential") or linearly in between. Inference uses no noise, so tau plays no part there.
    gumbel_tau: float = Field(1.0, gt=0.0)
    gumbel_tau_end: float | None = Field(None, gt=0.0)
    gumbel_anneal: Literal["exponential", "linear"] = "exponential"
    # How the hard selection trains (docs/design.md, "Selector gradient"). "both": every pathway
    # runs on every training sample and F_e = sum_k P_path[k] F_k with the straight-through
    # one-hot P_path (Eq. 13-14 with Jang et al.'s hard Gumbel-softmax): the selector's gradient
    # compares the pathways. "selected": each sample runs only its chosen pathway, scaled by its
    # P_path entry (cheaper; the gradient then sees the other pathway as zero: an approximation).
    # Inference runs only the chosen pathway either way.
    selector_training: Literal["both", "selected"] = "both"
    # MS-LSTM direction (Eq. 3-4 say "LSTM"; the authors' EAMAT MultiStepLSTMEncoder, which the
    # paper's MS-LSTM follows, is bidirectional). Bidirectional uses d/2 units per direction.
    lstm_bidirectional: bool = True
    # Stacked multi-scale temporal convolution blocks in LoL/SpL (Sec. IV-C: "the numbers of LSTM
    # blocks and temporal convolutional blocks in both modules are set to 1 and 3").
    conv_blocks: int = Field(3, ge=1)
    # How each of those blocks wraps Eq. 7/10 (docs/design.md, "Networks"): "plain" is the block
    # as printed, y = Block(x); "residual" adds a skip, y = x + Block(x); "prenorm" is the form of
    # the authors' EAMAT blocks (models/EAMAT/attention.py MultiConvAttention),
    # y = x + Dropout(Block(LN(x))). The paper prints no residual; three plain blocks per LoL/SpL
    # put ~12 ReLU layers in a row on the pathway. Measured:
    # docs/study.md, "Which reading of the three blocks trains".
    conv_block_form: Literal["plain", "residual", "prenorm"] = "plain"
    # Where ``dropout`` applies (docs/design.md, "Dropout placement"). "input": the encoders'
    # inputs, the CQA similarity inputs, the attention weights and between text LSTM layers only.
    # "ffn": also after every FFN's ReLU (our first reading; the video signal then crosses ~7
    # masks in a row, where EAMAT keeps dropout inside residual branches). "eamat": "input" plus
    # the other places the authors' EAMAT code drops (models/EAMAT/encoder.py MultiStepLSTMEncoder:
    # each MS-LSTM scale's output; attention.py MultiConvAttention: the residual branch;
    # layers.py Prediction: the heads' hidden layer).
    dropout_placement: Literal["ffn", "input", "eamat"] = "input"
    # Standardise every clip-feature dimension with the training split's mean and std before
    # Eq. 2. Off for the paper's pretrained I3D/C3D features (the paper does not); on for the
    # synthetic default, whose parameter-free grid descriptor has a constant background in most
    # dimensions (measured: val R@1 IoU0.5 after 20 epochs 49% without, 68% with).
    normalize_features: bool = False
    # docs/design.md: Eq. 9/12 as printed apply the second pair in reverse order; "module" keeps the
    # module's own order (GoL->LoL, SpL->TeN) for the second pair, "printed" follows the equations.
    second_order: Literal["module", "printed"] = "module"

    @property
    def ffn_dropout(self) -> float:
        """Dropout after each FFN's ReLU: ``dropout`` with placement "ffn", else none."""
        return self.dropout if self.dropout_placement == "ffn" else 0.0

    @property
    def eamat_dropout(self) -> float:
        """Dropout at EAMAT's extra places (MS-LSTM scale outputs, the residual branch of a
        "residual" conv block, the heads' hidden layer): ``dropout`` with placement "eamat"."""
        return self.dropout if self.dropout_placement == "eamat" else 0.0

    @field_validator("kernels")
    @classmethod
    def _odd_kernels(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(k < 1 or k % 2 == 0 for k in v):
            raise ValueError("kernels must be a non-empty list of odd positive integers")
        return v


class TrainConfig(_Section):
    """Optimisation (paper: Adam 5e-4, linear decay, 50 epochs; EAMAT: batch 16, clip 1.0)."""

    epochs: int = Field(50, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(5e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    warmup_fraction: float = Field(0.0, ge=0, lt=1)
    clip_norm: float = Field(1.0, gt=0)
    lambda_bound: float = Field(1.0, ge=0)
    lambda_inner: float = Field(10.0, ge=0)
    # Eq. 19's inner BCE averaged over every valid position of the batch ("batch", a long video
    # weighs more) or per sample first and then over the batch ("sample", the authors' EAMAT
    # reading, models/EAMAT/EAMAT.py compute_location_loss: each query weighs the same). The
    # paper's equation sums over t without saying.
    inner_average: Literal["batch", "sample"] = "batch"
    # Not in the paper (our addition, docs/design.md "Keeping both pathways learning"): the same
    # localization loss on each pathway's own output through the shared heads, averaged over the
    # pathways and weighted by this, for the variants that compute every pathway in training
    # (dynamic with selector_training=both, soft dynamic, the fusions). 0 = the paper's Eq. 20.
    lambda_pathway: float = Field(0.0, ge=0)
    # Not in the paper either: the selector's expected per-sample loss over the pathways
    # (dynpath.model.loss.localization_loss), for selector variants whose pathways all ran.
    lambda_route: float = Field(0.0, ge=0)
    # Not in the paper: switch routing's load-balancing term on the selector (same module).
    lambda_balance: float = Field(0.0, ge=0)
    num_workers: int = Field(0, ge=0)
    device: str = Field("auto", pattern=DEVICE_PATTERN)
    amp: bool = True  # CUDA only
    # CPU only, not in the paper: "bf16" runs the forward under torch.autocast(cpu, bfloat16)
    # (matmuls and convolutions in bf16, losses and optimizer in fp32). Off by default: it changes
    # the numbers; its effect on the metrics is in docs/performance.md. "fp32", not "off": YAML 1.1
    # readers (PyYAML) turn an unquoted `off` that `dvc exp run -S` writes into the boolean False.
    autocast: Literal["fp32", "bf16"] = "fp32"
    # Library of the large fp32 CPU GEMMs (dynpath.model.gemm): "auto" = oneDNN on non-Intel
    # AVX-512 CPUs (where MKL takes its AVX2 path: the paper step 9.44 s with MKL, 7.19 s with
    # oneDNN on the AMD EPYC machine), MKL otherwise; same fp32 function either way, up to
    # summation order. train_summary.json records the library a run used ("gemm").
    gemm: Literal["auto", "mkl", "onednn"] = "auto"
    compile: bool = False
    threads: int = Field(0, ge=0)  # torch CPU threads; 0 = torch default
    # Training seeds trained at once, each in its own process with threads // parallel_seeds
    # threads (``cfg.seeds``; CPU, not under torchrun). 1 = one after the other.
    parallel_seeds: int = Field(1, ge=1)
    checkpoint_every: int = Field(500, ge=0)  # mid-epoch checkpoint period (steps); 0 = epochs only
    # Early stopping (not in the paper, which trains a fixed 50 epochs): stop once the validation
    # ``eval.selection_metric`` has not improved for this many epochs; 0 = train every epoch.
    # ``epochs`` stays the cap and sets the linear-decay schedule, so a run that stops early
    # followed the same learning rates as the full one up to its stop.
    patience: int = Field(0, ge=0)


class EvalConfig(_Section):
    """Evaluation protocol: R@{1,5}, IoU {0.3,0.5,0.7}, mIoU, in seconds."""

    iou_thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    topk: int = Field(5, ge=1, le=MAX_TOPK)
    nms_iou: float = Field(0.5, gt=0, le=1)
    batch_size: int = Field(64, ge=1)
    shuffled_control: bool = True
    selection_metric: str = "r1_iou0.5"  # validation metric used for model selection
    examples_per_route: int = Field(3, ge=0)

    @field_validator("iou_thresholds")
    @classmethod
    def _thresholds_in_unit_interval(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not (0.0 < t <= 1.0) for t in v):
            raise ValueError("iou_thresholds must be a non-empty list of numbers in (0, 1]")
        return v


class TrackingConfig(_Section):
    """MLflow. The tracking URI comes from MLFLOW_TRACKING_URI when set (never a secret here)."""

    enabled: bool = True
    uri: str = "sqlite:///mlflow.db"
    artifact_location: str | None = None  # e.g. s3://bucket/mlflow (endpoint from the env)
    promote_metric: str = "val_r1_iou0.5"
    log_system_metrics: bool = True


def _gpu_node_selector() -> dict[str, str]:
    # the label NVIDIA's GPU operator / feature discovery puts on every GPU node
    return {"nvidia.com/gpu.present": "true"}


#: a Kubernetes toleration's fields (kfp's names) and the values Kubernetes accepts
TOLERATION_KEYS = frozenset(
    {"key", "operator", "value", "effect", "toleration_seconds", "tolerationSeconds"}
)
TOLERATION_OPERATORS = ("Exists", "Equal")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _gpu_tolerations() -> list[dict[str, str]]:
    # GPU node pools are usually tainted nvidia.com/gpu:NoSchedule (GKE, AKS, EKS' GPU AMIs
    # with the operator) so that CPU pods stay off them: without this a GPU pod never schedules
    return [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


class GpuRequest(_Section):
    """GPU request and placement for one Kubeflow task.

    The defaults schedule on the common GPU cluster (docs/cluster.md, "GPU placement"): a node
    labelled ``nvidia.com/gpu.present=true``, tolerating the ``nvidia.com/gpu`` NoSchedule
    taint. Override per task in params.yaml (``node_selector: {}`` / ``tolerations: []`` remove
    them, e.g. with ``count: 0`` on a CPU-only cluster).
    """

    count: int = Field(1, ge=0)
    accelerator: str = "nvidia.com/gpu"
    node_selector: dict[str, str] = Field(default_factory=_gpu_node_selector)
    tolerations: list[dict[str, str]] = Field(default_factory=_gpu_tolerations)

    @field_validator("tolerations")
    @classmethod
    def _check_tolerations(cls, v: list[dict[str, str]]) -> list[dict[str, str]]:
        """Kubernetes' rules for a toleration, checked here: kfp compiles any string into the
        pipeline and the cluster refuses the pod only when the task is scheduled."""
        for n, tol in enumerate(v):
            unknown = sorted(set(tol) - TOLERATION_KEYS)
            if unknown:
                raise ValueError(
                    f"toleration {n}: unknown key(s) {unknown}; use {sorted(TOLERATION_KEYS)}"
                )
            operator = tol.get("operator", "Equal")
            if operator not in TOLERATION_OPERATORS:
                raise ValueError(
                    f"toleration {n}: operator {operator!r} is not one Kubernetes allows "
                    f"({', '.join(TOLERATION_OPERATORS)})"
                )
            if operator == "Exists" and tol.get("value"):
                raise ValueError(f"toleration {n}: a value needs operator Equal, not Exists")
            if not tol.get("key") and operator != "Exists":
                raise ValueError(f"toleration {n}: without a key the operator must be Exists")
            effect = tol.get("effect", "")
            if effect and effect not in TOLERATION_EFFECTS:
                raise ValueError(
                    f"toleration {n}: effect {effect!r} is not one Kubernetes allows "
                    f"({', '.join(TOLERATION_EFFECTS)}, or none for all)"
                )
        return v


class PipelineConfig(_Section):
    """Kubeflow pipeline settings."""

    name: str = "dynpath"
    image: str = "ghcr.io/dynpath/dynpath:0.1.0"
    experiment: str = "dynpath"
    run_name: str = "dynpath-ablation"
    data_repo: str = ""  # git URL the pods fetch DVC-tracked data from ("" = the origin remote)
    data_rev: str = "HEAD"
    mlflow_secret: str = "dynpath-mlflow"
    s3_secret: str = "dynpath-s3"
    gpu: dict[str, GpuRequest] = Field(
        default_factory=lambda: {"extract": GpuRequest(), "train": GpuRequest()}
    )

    @field_validator("image")
    @classmethod
    def _check_image(cls, v: str) -> str:
        """Every pod runs this image: an empty or blank name compiles, and fails on the
        cluster only (kfp does not check it)."""
        if not v.strip() or any(c.isspace() for c in v):
            raise ValueError(
                f"must be a container image reference (e.g. ghcr.io/dynpath/dynpath:0.1.0), "
                f"got {v!r}"
            )
        return v


class Config(_Section):
    """The whole of params.yaml."""

    seed: int = 12345
    # Training seeds (initialisation and sample order); ``seed`` stays the seed of the data
    # (synthetic generation, backbone init, validation carve), so every training seed sees the
    # same splits. seeds[0] is the primary run: outputs/models/<variant>/ and outputs/eval/
    # <variant>/ as before, the only one tracked in MLflow. Every further seed S writes
    # <those dirs>/seeds/S/ (see dynpath.seeds). Absent: [seed], so old params files still load.
    seeds: tuple[int, ...] = (12345,)
    data: DataConfig = DataConfig()
    synth: SynthConfig = SynthConfig()
    extract: ExtractConfig = ExtractConfig()
    vocab: VocabConfig = VocabConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    variants: dict[str, dict[str, Any]] = Field(default_factory=dict)
    tracking: TrackingConfig = TrackingConfig()
    pipeline: PipelineConfig = PipelineConfig()

    @model_validator(mode="before")
    @classmethod
    def _seeds_default_to_seed(cls, data: Any) -> Any:
        """A params file without ``seeds`` trains once, with its own ``seed`` (the old meaning)."""
        if isinstance(data, dict) and data.get("seeds") is None:
            return {**data, "seeds": [data.get("seed", cls.model_fields["seed"].default)]}
        return data

    @field_validator("seed")
    @classmethod
    def _check_seed(cls, v: int) -> int:
        if not 0 <= v <= MAX_SEED:
            raise ValueError(f"must be an integer in 0..{MAX_SEED} (2**32-1), got {v}")
        return v

    @field_validator("seeds")
    @classmethod
    def _check_seeds(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v:
            raise ValueError("must list at least one training seed (seeds[0] is the primary run)")
        if any(s < 0 for s in v):
            raise ValueError(f"training seeds must be >= 0 (they name directories), got {list(v)}")
        if any(s > MAX_SEED for s in v):
            raise ValueError(f"training seeds must be at most {MAX_SEED} (2**32-1), got {list(v)}")
        repeated = sorted({s for s in v if v.count(s) > 1})
        if repeated:
            raise ValueError(f"training seeds must be unique; repeated: {repeated}")
        return v

    def variant_overrides(self, name: str) -> tuple[str, dict[str, Any]]:
        """The architecture name and the dotted overrides of variant ``name``: the one parser of
        ``variants:`` entries (flat ``model.dropout`` and nested ``{model: {dropout: ...}}`` alike),
        used by :meth:`variant` and by ``dynpath model-info``."""
        if name not in self.variants:
            raise ConfigError(
                f"unknown variant {name!r}: params.yaml 'variants' has {sorted(self.variants)}"
            )
        overrides = _flatten(dict(self.variants[name] or {}))
        arch = str(overrides.pop("arch", name))
        return arch, overrides

    def variant(self, name: str) -> tuple[str, Config]:
        """The architecture name and the fully resolved config of variant ``name``."""
        arch, overrides = self.variant_overrides(name)
        raw = self.model_dump(mode="python")
        for dotted, value in overrides.items():
            set_dotted(raw, dotted, value, where=f"variants.{name}.{dotted}")
        return arch, validate_config(raw, source=f"variants.{name}")


def _flatten(overrides: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested overrides ({model: {dropout: 0.1}}, as `dvc exp run -S variants.x.model.dropout=0.1`
    writes them) become dotted keys, so they override one key instead of replacing a section."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and dotted != "arch":
            flat.update(_flatten(value, prefix=f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def set_dotted(raw: dict[str, Any], dotted: str, value: Any, where: str) -> None:
    """Set one existing key of a config mapping by its dotted path; a missing key is an error
    naming ``where`` (no silent new keys)."""
    keys = dotted.split(".")
    node: Any = raw
    for key in keys[:-1]:
        if not isinstance(node, dict) or key not in node:
            raise ConfigError(f"{where}: no such config key {dotted!r}")
        node = node[key]
    if not isinstance(node, dict) or keys[-1] not in node:
        raise ConfigError(f"{where}: no such config key {dotted!r}")
    node[keys[-1]] = value


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _format_error(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        kind = "unknown key" if e["type"] == "extra_forbidden" else e["msg"]
        kind = kind.removeprefix("Value error, ")
        if e["type"] == "string_pattern_mismatch" and loc.endswith("device"):
            kind = f"unknown device {e['input']!r}; use auto, cpu, cuda or cuda:N"
        lines.append(f"{source}: {loc}: {kind}")
    return "\n".join(lines)


def validate_config(raw: dict[str, Any], source: str) -> Config:
    """``raw`` as a Config, or a ConfigError with one line per bad key (``source: key: why``):
    a params file, an override, or the JSON params a Kubeflow component receives."""
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None


def load_config(
    path: str | Path = DEFAULT_PARAMS, overrides: dict[str, Any] | None = None
) -> Config:
    """Load and validate a params file (strict safe YAML:
    :func:`dynpath.strict_yaml.strict_yaml_load`), applying optional dotted overrides."""
    path = Path(path)
    try:
        raw = strict_yaml_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; give the params file (params.yaml)") from None
    except UnicodeDecodeError as err:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {err.start}: {err.reason}); re-save it as UTF-8"
        ) from None
    except OSError as err:
        from dynpath.errors import os_error_message

        raise ConfigError(f"params file {os_error_message(err)}") from None
    except YAMLRefused as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {_one_line(str(err))}") from None
    if raw is None or raw == {}:  # empty, only comments, `---`, `~` or `{}`: no params at all
        raise ConfigError(
            f"{path}: the params file is empty (no keys); write the params into it, e.g. "
            "`dynpath --params FILE profile synthetic` writes a complete one"
        )
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(raw).__name__}")
    cfg = validate_config(raw, source=str(path))
    if overrides:
        full = cfg.model_dump(mode="python")
        if "seeds" not in raw and "seeds" not in overrides:
            del full["seeds"]  # still derived from `seed`, which an override may change
        for dotted, value in overrides.items():
            set_dotted(full, dotted, value, where=f"{path}: override")
        cfg = validate_config(full, source=f"{path} (with overrides)")
    return cfg


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``overlay`` into a copy of ``base`` (profiles are overlays of the defaults)."""
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key != "variants":
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out
