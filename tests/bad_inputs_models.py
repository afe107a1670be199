"""Bad-input cases of what a run reads besides the data: checkpoints (``evaluate``, ``train
--resume``, ``localize``), params.yaml and the queries and videos given to ``localize``. Run by
tests/test_reliability_bad_inputs.py.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from bad_inputs import Case, Ctx
from reliability_workspace import (
    VARIANT,
    params_dict,
    write_params,
)

# --------------------------------------------------------------------------- checkpoints

MARKER = "PWNED"


class _Evil:
    """Unpickling this calls os.system: what a crafted checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _evil_checkpoint(ctx: Ctx) -> list[str]:
    marker = ctx.dir / MARKER
    ctx.absent.append(marker)
    path = ctx.dir / "models" / VARIANT / "best.pt"
    path.parent.mkdir(parents=True)
    good = torch.load(ctx.model_dir / "best.pt", weights_only=True)
    good["meta"]["note"] = _Evil(marker)
    torch.save(good, path)
    ctx.keep(path)
    return ctx.evaluate(VARIANT, ctx.dir / "models")


def _other_version(ck: dict[str, Any]) -> dict[str, Any]:
    ck["meta"]["dynpath_version"] = "99.0.0"
    return ck


def _truncated_checkpoint(ctx: Ctx) -> list[str]:
    path = ctx.dir / "models" / VARIANT / "best.pt"
    path.parent.mkdir(parents=True)
    raw = (ctx.model_dir / "best.pt").read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    ctx.keep(path)
    return ctx.evaluate(VARIANT, ctx.dir / "models")


def _resume_from(variant: str, params: Callable[[Ctx], Path] | None = None) -> Callable:
    """``train --resume`` with the trained ``last.pt`` placed in ``<variant>``'s directory."""

    def make(ctx: Ctx) -> list[str]:
        last = ctx.dir / "models" / variant / "last.pt"
        last.parent.mkdir(parents=True)
        shutil.copy(ctx.model_dir / "last.pt", last)
        ctx.keep(last)
        p = params(ctx) if params else ctx.ws.params
        return ctx.train(p, "--resume", variant=variant)

    return make


def _other_vocab(ctx: Ctx) -> list[str]:
    model = ctx.dir / "outputs" / "models" / VARIANT
    model.mkdir(parents=True)
    shutil.copy(ctx.model_dir / "best.pt", model / "best.pt")
    vocab = ctx.dir / "outputs" / "vocab"
    shutil.copytree(ctx.ws.vocab, vocab)
    words = json.loads((vocab / "vocab.json").read_text())
    words["extra"] = len(words)
    (vocab / "vocab.json").write_text(json.dumps(words))
    emb = np.load(vocab / "embeddings.npy")
    np.save(vocab / "embeddings.npy", np.concatenate([emb, emb[-1:]]))
    return ctx.localize("a person opens the door", model=model)


CKPT = r"best\.pt"
CHECKPOINTS = [
    Case(
        "checkpoint-other-variant",
        lambda ctx: ctx.evaluate("sum_fusion", ctx.checkpoint("sum_fusion", lambda c: c)),
        2,
        rf"{CKPT}: checkpoint is for variant 'dynamic', not the requested variant 'sum_fusion'",
    ),
    Case(
        "checkpoint-other-version",
        lambda ctx: ctx.evaluate(VARIANT, ctx.checkpoint(VARIANT, _other_version)),
        2,
        rf"{CKPT}: written by dynpath 99\.0\.0, this is dynpath 0\.\d+\.\d+ \(major versions",
    ),
    Case(
        "checkpoint-not-dynpath",
        lambda ctx: ctx.evaluate(VARIANT, ctx.checkpoint(VARIANT, lambda c: c["model"])),
        2,
        rf"{CKPT}: not a dynpath checkpoint \(no 'meta'/'model' entries\)",
    ),
    Case(
        "checkpoint-truncated",
        _truncated_checkpoint,
        2,
        rf"{CKPT}: not a readable dynpath checkpoint",
    ),
    Case(
        "checkpoint-runs-code-when-unpickled",
        _evil_checkpoint,
        2,
        rf"{CKPT}: not a readable dynpath checkpoint .*(posix\.system|weights_only)",
    ),
    Case(
        "resume-from-other-variant",
        _resume_from("sum_fusion"),
        2,
        r"last\.pt: checkpoint is for variant 'dynamic', not the requested variant 'sum_fusion'",
    ),
    Case(
        "resume-with-another-model-config",
        _resume_from(VARIANT, lambda ctx: ctx.params(model={"dim": 24})),
        2,
        r"last\.pt: written with a different model/data config \(model\.dim\)",
    ),
    Case(
        "localize-with-another-vocabulary",
        _other_vocab,
        2,
        r"vocabulary has \d+ words but .*best\.pt was trained with \d+",
    ),
]


# --------------------------------------------------------------------------- params.yaml


def params_text(text: str) -> Callable[[Ctx], list[str]]:
    def make(ctx: Ctx) -> list[str]:
        path = ctx.dir / "params.yaml"
        path.write_text(text.format(marker=ctx.dir / MARKER))
        ctx.absent.append(ctx.dir / MARKER)
        return ctx.train(path)

    return make


def params_edit(edit: Callable[[dict[str, Any]], None]) -> Callable[[Ctx], list[str]]:
    def make(ctx: Ctx) -> list[str]:
        raw = params_dict(ctx.ws.data)
        edit(raw)
        return ctx.train(write_params(ctx.dir / "params.yaml", raw))

    return make


PARAMS = [
    Case(
        "params-unknown-key",
        params_edit(lambda r: r["train"].update(epoch=3)),
        2,
        r"params\.yaml: train\.epoch: unknown key",
    ),
    Case(
        "params-unknown-section",
        params_edit(lambda r: r.update(trian={"epochs": 3})),
        2,
        r"params\.yaml: trian: unknown key",
    ),
    Case(
        "params-mistyped-value",
        params_edit(lambda r: r["train"].update(epochs="many")),
        2,
        r"params\.yaml: train\.epochs: Input should be a valid integer",
    ),
    Case(
        "params-out-of-range",
        params_edit(lambda r: r["train"].update(lr=-1)),
        2,
        r"params\.yaml: train\.lr: Input should be greater than 0",
    ),
    Case(
        "params-bad-variant-override",
        params_edit(lambda r: r["variants"].update(dynamic={"model.dimm": 8})),
        2,
        r"variants\.dynamic\.model\.dimm: no such config key 'model\.dimm'",
    ),
    Case(
        "params-unknown-variant",
        params_edit(lambda r: r.update(variants={"sum_fusion": {}})),
        2,
        r"unknown variant 'dynamic': params\.yaml 'variants' has \['sum_fusion'\]",
    ),
    Case("params-not-yaml", params_text("train: [1, 2\n"), 2, r"params\.yaml: not valid YAML"),
    Case(
        "params-not-a-mapping",
        params_text("- 1\n- 2\n"),
        2,
        r"params\.yaml: top level must be a mapping, got list",
    ),
    Case(
        "params-python-tag-runs-nothing",
        params_text("seed: !!python/object/apply:os.system ['touch {marker}']\n"),
        2,
        r"params\.yaml: not valid YAML: could not determine a constructor",
    ),
    Case(
        "params-missing",
        lambda ctx: ["--params", str(ctx.dir / "none.yaml"), "vocab", "--out", str(ctx.dir / "v")],
        2,
        r"none\.yaml: params file not found",
    ),
]


# --------------------------------------------------------------------------- queries (localize)


def _store_with(ctx: Ctx, value: np.ndarray, name: str = "bad") -> Path:
    store = ctx.copy_features()
    with h5py.File(store, "a") as f:
        f.create_dataset(name, data=value)
    return store


def _localize_store(value: np.ndarray, vid: str = "bad") -> Callable[[Ctx], list[str]]:
    def make(ctx: Ctx) -> list[str]:
        store = _store_with(ctx, value)
        return ctx.localize("a person opens the door", "--features", str(store), "--video-id", vid)

    return make


def _localize_video(kind: str) -> Callable[[Ctx], list[str]]:
    def make(ctx: Ctx) -> list[str]:
        path = ctx.dir / "clip.mp4"
        if kind == "corrupt":
            path.write_bytes(np.random.default_rng(2).bytes(3000))
        return ctx.localize("a person opens the door", "--video", str(path))

    return make


def _store_query(query: str) -> Callable[[Ctx], list[str]]:
    def make(ctx: Ctx) -> list[str]:
        return ctx.localize(query, "--features", str(ctx.ws.features), "--video-id", "vid001")

    return make


NAN = np.full((10, 12), np.nan, np.float32)
QUERIES = [
    Case("query-empty", _store_query(""), 2, r"localize: error: query is empty"),
    Case("query-whitespace", _store_query("  \t "), 2, r"localize: error: query is empty"),
    Case("query-punctuation", _store_query("?!?"), 2, r"no word tokens in '\?!\?'"),
    Case(
        "query-only-unknown-words",
        _store_query("zyzzyva quokka flibbertigibbet"),
        2,
        r"query 'zyzzyva quokka flibbertigibbet': none of its words is in the model's vocabulary",
    ),
    Case(
        "query-very-long-accepted",
        _store_query(" ".join(["person", "opens", "the", "door"] * 1500)),
        0,
        r'"spans": \[',  # truncated to vocab.max_query_len tokens, answered
    ),
    Case(
        "query-not-utf8",
        lambda ctx: [
            *ctx.localize("person opens the door \udce9", "--features", str(ctx.ws.features)),
            "--video-id",
            "vid001",
        ],
        2,
        r"localize: error: query .* is not valid UTF-8 text",
        subprocess=True,  # the bytes arrive through the process's argv (surrogate-escaped)
    ),
    Case(
        "features-unknown-video-id",
        lambda ctx: ctx.localize(
            "a person opens the door", "--features", str(ctx.ws.features), "--video-id", "nope"
        ),
        2,
        r"no features for video 'nope'",
    ),
    Case("localize-features-nan", _localize_store(NAN), 2, r"video 'bad' has NaN/Inf features"),
    Case(
        "localize-features-zero-length",
        _localize_store(np.zeros((0, 12), np.float32)),
        2,
        r"video 'bad' has no feature positions",
    ),
    Case(
        "localize-video-missing",
        _localize_video("missing"),
        2,
        r"clip\.mp4: video file not found",
    ),
    Case("localize-video-corrupt", _localize_video("corrupt"), 2, r"clip\.mp4: cannot open video"),
    Case(
        "localize-topk-zero",
        lambda ctx: [*_store_query("a person opens the door")(ctx), "--topk", "0"],
        2,
        r"--topk: must be >= 1, got 0",  # refused by the argument parser, before any work
    ),
    Case(
        "localize-model-missing",
        lambda ctx: ctx.localize("a person", model=ctx.dir / "no-model"),
        2,
        r"no-model: no such file or directory, and not an MLflow URI",
    ),
]
