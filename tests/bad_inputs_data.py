"""Bad-input cases of the data: annotation files (``data-stats`` reports the skipped line, or
the command fails on one line), feature stores (``train``) and videos (``extract``). Run by
tests/test_reliability_bad_inputs.py.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np
from bad_inputs import Case, Ctx
from reliability_workspace import (
    extract_params,
    params_dict,
    write_params,
    write_videos,
)

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
