"""A corpus of bad inputs, each run through the real CLI: a specific clear error or a reported skip.

Every case builds its bad input in a fresh directory beside a small real project (annotations,
features, vocabulary, a model trained by ``dynpath train``), runs one ``dynpath`` command
in-process (``dynpath.cli.main``; a few run as real subprocesses because their input is the
process's own argv or must not be trusted in-process) and checks:

- the exit code: 2 (a one-line ``dynpath <cmd>: error: ...``, never a traceback) for an input the
  command cannot use, 0 for a record the readers skip and report (``data-stats`` lists the line
  and its reason) or an input that is accepted as documented (a very long query is truncated);
- the specific message (a regex over stderr and the log, or over the skip report);
- no partial output: the files the command would have written do not exist, inputs it must not
  touch are byte-identical, and no temp file is left anywhere in the case directory.

Unit tests of each reader/loader live with their modules (tests/test_data_*, test_extract_*,
test_config); this corpus checks what a user sees at the command line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from reliability_workspace import (
    VARIANT,
    Workspace,
    build_workspace,
    child_env,
    extract_params,
    params_dict,
    write_params,
    write_videos,
)

from dynpath import cli

pytestmark = pytest.mark.slow


@dataclass
class Ctx:
    """What a case may use: the base project (read-only) and its own directory."""

    ws: Workspace
    dir: Path
    absent: list[Path] = field(default_factory=list)  # outputs that must not exist afterwards
    unchanged: dict[Path, str] = field(default_factory=dict)  # inputs that must not change

    @property
    def model_dir(self) -> Path:
        return self.ws.model_dir(VARIANT)

    def keep(self, *paths: Path) -> None:
        for p in paths:
            self.unchanged[p] = hashlib.sha256(p.read_bytes()).hexdigest()

    def params(self, **sections: dict[str, Any]) -> Path:
        return write_params(self.dir / "params.yaml", params_dict(self.ws.data, **sections))

    def copy_features(self) -> Path:
        dst = self.dir / "features.h5"
        shutil.copy(self.ws.features, dst)
        return dst

    def train(self, params: Path, *extra: str, variant: str = VARIANT) -> list[str]:
        out = self.dir / "models"
        self.absent += [out / variant / n for n in ("best.pt", "train_summary.json")]
        self.absent.append(out / variant / "history.json")
        argv = self.ws.train_argv(*extra, variant=variant, out=out)
        argv[1] = str(params)
        return argv

    def evaluate(self, variant: str, models: Path, params: Path | None = None) -> list[str]:
        out = self.dir / "eval"
        self.absent.append(out)
        return [
            "--params",
            str(params or self.ws.params),
            "evaluate",
            "--variant",
            variant,
            "--vocab",
            str(self.ws.vocab),
            "--models",
            str(models),
            "--out",
            str(out),
        ]

    def localize(self, query: str, *extra: str, model: Path | None = None) -> list[str]:
        model = model or self.model_dir
        return ["localize", "--model", str(model), "--query", query, "--json", *extra]

    def checkpoint(self, variant: str, edit: Callable[[dict[str, Any]], Any]) -> Path:
        """``<dir>/models/<variant>/best.pt`` = the trained checkpoint after ``edit``."""
        ckpt = torch.load(self.model_dir / "best.pt", weights_only=True)
        ckpt = edit(ckpt)
        path = self.dir / "models" / variant / "best.pt"
        path.parent.mkdir(parents=True)
        torch.save(ckpt, path)
        self.keep(path)
        return self.dir / "models"


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Ctx], list[str]]
    code: int
    message: str  # regex: over stderr + log for errors, over the skip report for data-stats
    subprocess: bool = False


# --------------------------------------------------------------------------- annotations

DURATIONS = {"v1": {"duration": 30.0}, "v2": {"subset": "training"}, "v3": {"duration": 0}}
GOOD = b"v1 0.0 5.0##a person opens the door"


def charades(line: bytes, test: bytes = GOOD) -> Callable[[Ctx], list[str]]:
    """A Charades-STA set whose train file is one good line then ``line``."""

    def make(ctx: Ctx) -> list[str]:
        root = ctx.dir / "charades"
        root.mkdir()
        (root / "charades.json").write_text(json.dumps(DURATIONS))
        (root / "charades_sta_train.txt").write_bytes(GOOD + b"\n" + line + b"\n")
        (root / "charades_sta_test.txt").write_bytes(test + b"\n")
        return ["data-stats", "--dataset", "charades_sta", "--root", str(root), "--json"]

    return make


def jsonl(record: str) -> Callable[[Ctx], list[str]]:
    def make(ctx: Ctx) -> list[str]:
        root = ctx.dir / "jsonl"
        root.mkdir()
        good = {
            "qid": "q0",
            "vid": "v1",
            "query": "a person opens the door",
            "duration": 30.0,
            "relevant_windows": [[0.0, 5.0]],
        }
        (root / "train.jsonl").write_text(json.dumps(good) + "\n" + record + "\n")
        (root / "test.jsonl").write_text(json.dumps(good) + "\n")
        return ["data-stats", "--dataset", "jsonl", "--root", str(root), "--json"]

    return make


def skip(reason: str) -> str:
    return rf"train\.\w+:2: {re.escape(reason)}$"


def _rec(**kw: Any) -> str:
    base = {"qid": "q1", "vid": "v2", "query": "the person sits", "duration": 20.0}
    base.update(kw)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


def _charades_structure(kind: str) -> Callable[[Ctx], list[str]]:
    def make(ctx: Ctx) -> list[str]:
        root = ctx.dir / "charades"
        charades(b"v1 1 2##x y")(ctx)
        if kind == "json":
            (root / "charades.json").write_text('{"v1": {"duration": 30.0},')
        elif kind == "no-test":
            (root / "charades_sta_test.txt").unlink()
        elif kind == "no-durations":
            (root / "charades.json").unlink()
        return ["data-stats", "--dataset", "charades_sta", "--root", str(root), "--json"]

    return make


def _tacos_mismatch(ctx: Ctx) -> list[str]:
    root = ctx.dir / "tacos"
    root.mkdir()
    bad = {"s13-d21.avi": {"timestamps": [[0, 10], [5, 20]], "sentences": ["he cuts"],
                           "fps": 29.4, "num_frames": 400}}  # fmt: skip
    for split in ("train", "test"):
        (root / f"{split}.json").write_text(json.dumps(bad))
    return ["data-stats", "--dataset", "tacos", "--root", str(root)]


ANNOTATIONS = [
    Case("no-separator", charades(b"v1 0.0 5.0 a person opens the door"), 0, skip("unparsable")),
    Case("two-fields", charades(b"v1 5.0##a person opens the door"), 0, skip("unparsable")),
    Case("four-fields", charades(b"v1 0 5.0 7.0##a person sits"), 0, skip("unparsable")),
    Case("time-not-a-number", charades(b"v1 zero 5.0##a person sits"), 0, skip("unparsable")),
    Case("time-nan", charades(b"v1 nan 5.0##a person sits"), 0, skip("unparsable")),
    Case("time-inf", charades(b"v1 0.0 inf##a person sits"), 0, skip("unparsable")),
    Case("negative-start", charades(b"v1 -2.0 5.0##a person sits"), 0, skip("negative start")),
    Case("start-after-end", charades(b"v1 6.0 5.0##a person sits"), 0, skip("start >= end")),
    Case("start-beyond-video", charades(b"v1 31.0 35.0##a person"), 0, skip("start >= end")),
    Case("empty-query", charades(b"v1 0.0 5.0##"), 0, skip("empty query")),
    Case("punctuation-query", charades(b"v1 0.0 5.0## ?! ..."), 0, skip("empty query")),
    Case("unknown-video", charades(b"zz99 0.0 5.0##a person sits"), 0, skip("unknown video")),
    Case("duration-missing", charades(b"v2 0.0 5.0##a person sits"), 0, skip("missing duration")),
    Case("duration-zero", charades(b"v3 0.0 5.0##a person sits"), 0, skip("invalid duration")),
    Case("not-utf8", charades(b"v1 0.0 5.0##a caf\xe9 door"), 0, skip("unparsable")),
    Case("not-utf8-latin1-file", charades(b"\xff\xfe" + GOOD), 0, skip("unparsable")),
    Case(
        "very-long-query-kept",
        charades(b"v1 0.0 5.0##" + b" ".join([b"person", b"opens"] * 2500)),
        0,
        r"^kept train 2$",  # not a skip: encoded queries are truncated to vocab.max_query_len
    ),
    Case("jsonl-bad-json", jsonl('{"qid": "q1", "vid": '), 0, skip("unparsable")),
    Case("jsonl-not-an-object", jsonl("[1, 2, 3]"), 0, skip("unparsable")),
    Case("jsonl-no-windows", jsonl(_rec(relevant_windows=...)), 0, skip("unparsable")),
    Case("jsonl-bad-window", jsonl(_rec(relevant_windows=[[1.0]])), 0, skip("unparsable")),
    Case(
        "jsonl-no-query", jsonl(_rec(query=..., relevant_windows=[[1, 2]])), 0, skip("unparsable")
    ),
    Case(
        "jsonl-null-duration",
        jsonl(_rec(duration=None, relevant_windows=[[1, 2]])),
        0,
        skip("missing duration"),
    ),
    Case(
        "jsonl-zero-duration",
        jsonl(_rec(duration=0, relevant_windows=[[1, 2]])),
        0,
        skip("invalid duration"),
    ),
    Case(
        "jsonl-text-duration",
        jsonl(_rec(duration="long", relevant_windows=[[1, 2]])),
        0,
        skip("invalid duration"),
    ),
    Case(
        "jsonl-empty-query",
        jsonl(_rec(query="  ", relevant_windows=[[1, 2]])),
        0,
        skip("empty query"),
    ),
    Case("durations-not-json", _charades_structure("json"), 2, r"charades\.json:1: not valid JSON"),
    Case(
        "test-file-missing",
        _charades_structure("no-test"),
        2,
        r"charades_sta_test\.txt: Charades-STA test annotations not found",
    ),
    Case("no-durations", _charades_structure("no-durations"), 2, r"no video durations"),
    Case("tacos-mismatch", _tacos_mismatch, 2, r"'s13-d21\.avi': 2 timestamps but 1 sentences"),
    Case(
        "annotation-dir-missing",
        lambda ctx: ["data-stats", "--dataset", "jsonl", "--root", str(ctx.dir / "nope")],
        2,
        r"nope: annotation directory not found",
    ),
]


# --------------------------------------------------------------------------- features (train)


def features(edit: Callable[[h5py.File], None]) -> Callable[[Ctx], list[str]]:
    """``dynpath train`` on a copy of the feature store changed by ``edit``."""

    def make(ctx: Ctx) -> list[str]:
        store = ctx.copy_features()
        with h5py.File(store, "a") as f:
            edit(f)
        ctx.keep(store)
        return ctx.train(ctx.params(data={"features": str(store)}))

    return make


def _replace(vid: str, value: np.ndarray) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f[vid]
        f.create_dataset(vid, data=value)

    return edit


def _poison(value: float) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        arr = f["vid001"][()]
        arr[3, 2] = value
        f["vid001"][...] = arr

    return edit


def _damaged_store(kind: str) -> Callable[[Ctx], list[str]]:
    def make(ctx: Ctx) -> list[str]:
        store = ctx.dir / "features.h5"
        raw = ctx.ws.features.read_bytes()
        if kind == "truncated":
            store.write_bytes(raw[: len(raw) // 2])
        else:
            store.write_bytes(np.random.default_rng(0).bytes(len(raw)))
        ctx.keep(store)
        return ctx.train(ctx.params(data={"features": str(store)}))

    return make


def _empty_train_split(ctx: Ctx) -> list[str]:
    data = ctx.dir / "data"
    shutil.copytree(ctx.ws.data, data)
    lines = (data / "train.jsonl").read_text().splitlines()
    bad = [json.dumps({**json.loads(x), "duration": 0}) for x in lines]
    (data / "train.jsonl").write_text("\n".join(bad) + "\n")
    raw = params_dict(data)
    return ctx.train(write_params(ctx.dir / "params.yaml", raw))


def _missing_video(f: h5py.File) -> None:
    del f["vid001"]


FEATURES = [
    Case("features-nan", features(_poison(float("nan"))), 2, r"'vid001' has NaN/Inf features"),
    Case("features-inf", features(_poison(float("inf"))), 2, r"'vid001' has NaN/Inf features"),
    Case(
        "features-wrong-dim",
        features(_replace("vid001", np.ones((20, 10), np.float32))),
        2,
        r"'vid001' has dimension 10, the store says 12",
    ),
    Case(
        "features-zero-length",
        features(_replace("vid001", np.ones((0, 12), np.float32))),
        2,
        r"'vid001' has no feature positions",
    ),
    Case(
        "features-3d",
        features(_replace("vid001", np.ones((20, 12, 1), np.float32))),
        2,
        r"'vid001': expected \[T, D\], got \(20, 12, 1\)",
    ),
    Case(
        "features-missing-video",
        features(_missing_video),
        2,
        r"1 of \d+ videos have no features, e\.g\. vid001",
    ),
    Case("features-corrupt", _damaged_store("corrupt"), 2, r"not a readable HDF5 file"),
    Case("features-truncated", _damaged_store("truncated"), 2, r"not a readable HDF5 file"),
    Case("train-split-empty", _empty_train_split, 2, r"has no train moments"),
]


# --------------------------------------------------------------------------- videos (extract)


def _bad_videos(ctx: Ctx) -> list[str]:
    """``dynpath extract`` (extract.max_failures 0) over one good video and four bad ones; one
    run for all four (each run builds the I3D backbone, the expensive part)."""
    import av

    vdir = write_videos(ctx.dir / "videos", [24])
    good = (vdir / "v00.mp4").read_bytes()
    (vdir / "corrupt.mp4").write_bytes(np.random.default_rng(1).bytes(4000))
    (vdir / "text.mp4").write_text("this is not a video\n")
    (vdir / "truncated.mp4").write_bytes(good[: len(good) * 2 // 3])
    c = av.open(str(vdir / "empty.avi"), "w")
    s = c.add_stream("mpeg4", rate=8)
    s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
    c.start_encoding()
    c.close()
    output = ctx.dir / "features.h5"
    ctx.absent.append(output)
    params = extract_params(ctx.dir)
    return ["--params", str(params), "extract", "--videos", str(vdir), "--output", str(output)]


def _all(*patterns: str) -> str:
    """A regex matching a text that contains every pattern, in any order."""
    return "(?s)" + "".join(f"(?=.*{p})" for p in patterns)


VIDEOS = [
    Case(
        "videos-corrupt-text-truncated-empty",
        _bad_videos,
        2,
        _all(
            r"4 of 5 videos could not be decoded \(extract\.max_failures=0\.0\): "
            r"corrupt\.mp4, empty\.avi, text\.mp4, truncated\.mp4",
            r"skipping corrupt\.mp4: \S+corrupt\.mp4: cannot open video",
            r"skipping text\.mp4: \S+text\.mp4: cannot open video",
            r"skipping truncated\.mp4: \S+truncated\.mp4: ",
            r"skipping empty\.avi: \S+empty\.avi: no video frames could be decoded",
        ),
    ),
]


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

CASES = ANNOTATIONS + FEATURES + VIDEOS + CHECKPOINTS + PARAMS + QUERIES


# --------------------------------------------------------------------------- runner


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The base project, with ``dynamic`` trained by the real CLI (best.pt, last.pt)."""
    ws = build_workspace(tmp_path_factory.mktemp("bad_inputs"))
    threads = torch.get_num_threads()
    try:
        assert cli.main(ws.train_argv()) == 0
    finally:
        torch.set_num_threads(threads)
    return ws


def _report_lines(stdout: str) -> str:
    """The data-stats skip report as ``file:line: reason`` lines plus ``kept <split> <n>``."""
    report = json.loads(stdout)
    lines = [f"{Path(e['file']).name}:{e['line']}: {e['reason']}" for e in report["skipped_lines"]]
    lines += [f"kept {split} {s['kept']}" for split, s in report["splits"].items()]
    return "\n".join(lines)


def _command(argv: list[str]) -> str:
    return argv[2] if argv[0] == "--params" else argv[0]


def _run(case: Case, argv: list[str], cwd: Path, capsys: Any, caplog: Any) -> tuple[int, str, str]:
    if case.subprocess:
        env = child_env(LC_ALL="C.UTF-8")
        # str -> bytes with surrogate escapes undone: the child gets the original raw bytes
        args = [sys.executable, "-m", "dynpath.cli", *argv]
        done = subprocess.run(
            [os.fsencode(a) for a in args], cwd=cwd, env=env, capture_output=True, timeout=300
        )
        out, err = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
        return done.returncode, out, err.replace("\r", "\n")
    capsys.readouterr()
    caplog.clear()
    threads = torch.get_num_threads()
    old = Path.cwd()
    os.chdir(cwd)  # nothing may land in the working directory either
    try:
        code = cli.main(argv)
    finally:
        os.chdir(old)
        torch.set_num_threads(threads)
    out, err = capsys.readouterr()
    return code, out, (err + "\n" + caplog.text).replace("\r", "\n")  # tqdm's \r: new lines


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(
    case: Case, ws: Workspace, tmp_path: Path, capsys: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ctx = Ctx(ws=ws, dir=tmp_path)
    argv = case.make(ctx)
    before = sorted(p.name for p in ws.model_dir().iterdir())
    code, out, err = _run(case, argv, tmp_path, capsys, caplog)
    assert code == case.code, f"exit {code}, expected {case.code}\n{out[-2000:]}\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    if code == 2:  # one line from the CLI, naming the command
        # (not anchored at a line start: an interrupted progress bar leaves no newline behind)
        assert f"dynpath {_command(argv)}: error: " in err, err[-2000:]
        assert re.search(case.message, err, re.MULTILINE), f"{case.message!r} not in:\n{err}"
    elif "data-stats" in argv:
        assert re.search(case.message, _report_lines(out), re.MULTILINE), _report_lines(out)
    else:
        assert re.search(case.message, out), out[-2000:]
    for path in ctx.absent:
        assert not path.exists(), f"{path} was written"
    for path, digest in ctx.unchanged.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest, f"{path} changed"
    leftovers = [p for p in tmp_path.rglob(".*") if p.is_file()]
    assert leftovers == [], leftovers
    assert sorted(p.name for p in ws.model_dir().iterdir()) == before  # the base is untouched
