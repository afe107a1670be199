"""Annotation readers (Charades-STA, TACoS, ActivityNet, JSONL, synthetic); one ``load_splits``.

Every reader turns its native format into :class:`~dynpath.data.types.Moment` records in SECONDS
plus a :class:`~dynpath.data.types.DataReport`. The rules are the same for every format, so that a
number in the report means the same thing whatever the dataset:

* a record is checked in this order, and the first failing check names the skip reason:
  ``unparsable`` (not UTF-8, missing ``##``, wrong field count, non-numeric or non-finite times,
  bad JSON), ``empty query`` (no word token), ``unknown video`` (no entry in the duration source),
  ``missing duration`` / ``invalid duration`` (entry without a usable positive duration),
  ``negative start``; then the end is CLIPPED to the duration (counted in ``clipped``), and finally
  ``start >= end`` is checked on the clipped span (so a start at or beyond the duration is caught
  too). ``clipped`` therefore counts every end beyond the duration that was read, including the
  few lines then skipped for ``start >= end`` (3 of the 1,805 in Charades-STA train);
  ``clipped_kept`` counts only the kept ones.
* exact duplicates (same video, start, end and sentence in one split) are counted in
  ``duplicates`` and only the first one is kept: a duplicate would double a sample's weight in
  training and in the metrics. Public TACoS copies have them.
* every skipped line is logged as a warning with ``file:line`` and listed in the report; a line is
  never silently changed or dropped. Whitespace-only lines are not records and are not counted.

Datasets without a validation split (Charades-STA, synthetic, JSONL without ``val.jsonl``) get one
carved from train by :func:`load_splits`: video-disjoint (scikit-learn ``GroupShuffleSplit`` on
video ids), seeded by ``cfg.seed``, ``cfg.data.val_fraction`` of the training VIDEOS. Model
selection must never look at test.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dynpath.data.records import (
    SplitBuilder,
    as_duration,
    json_time,
    load_json,
    read_lines,
    require_file,
)
from dynpath.data.types import DataReport, Moment
from dynpath.errors import DataError
from dynpath.io import refuse_uri
from dynpath.registry import Registry
from dynpath.schemas import DATA_REPORT

if TYPE_CHECKING:
    from dynpath.config import Config

log = logging.getLogger(__name__)

Splits = dict[str, list[Moment]]
Reader = Callable[[Path], tuple[Splits, DataReport]]

READERS: Registry[Reader] = Registry("dataset")

# --------------------------------------------------------------------------- Charades-STA


def load_charades_durations(root: Path) -> tuple[dict[str, float | None], str]:
    """Video durations from ``charades.json`` or, failing that, the ``Charades_v1_*.csv`` files.

    ``charades.json`` is ``{"VID": {"subset", "duration", "actions"}}``; the official CSVs have
    ``id`` and ``length`` columns. Returns the mapping and a description of what was read.
    """
    js = root / "charades.json"
    if js.is_file():
        raw = load_json(js)
        if not isinstance(raw, dict):
            raise DataError(f"{js}: expected an object keyed by video id")
        out: dict[str, float | None] = {}
        for vid, entry in raw.items():
            out[str(vid)] = as_duration(entry.get("duration")) if isinstance(entry, dict) else None
        return out, str(js)
    csvs = sorted(root.glob("Charades_v1_*.csv"))
    if not csvs:
        raise DataError(
            f"{root}: no video durations: expected charades.json or Charades_v1_train.csv/"
            "Charades_v1_test.csv (columns id, length)"
        )
    import pandas as pd

    out = {}
    for path in csvs:
        try:
            df = pd.read_csv(path, usecols=["id", "length"], dtype={"id": str})
        except ValueError as err:
            raise DataError(f"{path}: needs columns 'id' and 'length' ({err})") from None
        for vid, length in zip(df["id"], df["length"], strict=True):
            out.setdefault(str(vid), as_duration(length))
    return out, ", ".join(str(p) for p in csvs)


def _read_charades_file(
    path: Path, split: str, durations: dict[str, float | None], report: DataReport
) -> list[Moment]:
    b = SplitBuilder(report, split, path)
    for number, text, raw in read_lines(path):
        b.line()
        if text is None:
            b.skip(number, "unparsable", f"not UTF-8: {raw[:80]!r}")
            continue
        if "##" not in text:
            b.skip(number, "unparsable", text)
            continue
        head, query = text.split("##", 1)
        fields = head.split()
        if len(fields) != 3:
            b.skip(number, "unparsable", text)
            continue
        vid = fields[0]
        try:
            start, end = float(fields[1]), float(fields[2])
        except ValueError:
            b.skip(number, "unparsable", text)
            continue
        b.add(
            line=number,
            text=text,
            qid=f"{split}-{number}",
            vid=vid,
            query=query,
            start=start,
            end=end,
            duration=durations.get(vid),
            known_video=vid in durations,
        )
    return b.finish()


def read_charades_sta(root: Path, dataset: str = "charades_sta") -> tuple[Splits, DataReport]:
    """``charades_sta_{train,test}.txt`` (``VID start end##sentence``, seconds) + durations."""
    durations, source = load_charades_durations(root)
    report = DataReport(dataset=dataset)
    report.sources["durations"] = source
    splits: Splits = {}
    for split in ("train", "test"):
        path = require_file(root / f"charades_sta_{split}.txt", f"Charades-STA {split} annotations")
        splits[split] = _read_charades_file(path, split, durations, report)
    return splits, report


READERS.add("charades_sta", read_charades_sta)
# The synthetic benchmark writes Charades-STA files (dynpath.data.synthetic): same reader.
READERS.add("synthetic", lambda root: read_charades_sta(root, dataset="synthetic"))


# --------------------------------------------------------------------------- TACoS


def _timestamped_videos(
    raw: dict[Any, Any], path: Path
) -> Iterator[tuple[Any, dict[str, Any], list[Any], list[Any]]]:
    """(video, entry, timestamps, sentences) of a ``{video: {timestamps, sentences, ...}}`` file
    (2D-TAN's TACoS, ActivityNet Captions), with the structure every record needs checked: a
    malformed video entry is an error naming the file and the video, not a skipped line."""
    for vid, entry in raw.items():
        if not isinstance(entry, dict):
            kind = type(entry).__name__
            raise DataError(f"{path}: video {vid!r}: expected an object, got {kind}")
        stamps, sentences = entry.get("timestamps"), entry.get("sentences")
        if not isinstance(stamps, list) or not isinstance(sentences, list):
            raise DataError(f"{path}: video {vid!r}: needs lists 'timestamps' and 'sentences'")
        if len(stamps) != len(sentences):
            raise DataError(
                f"{path}: video {vid!r}: {len(stamps)} timestamps but {len(sentences)} sentences"
            )
        yield vid, entry, stamps, sentences


def _stamp_pair(stamp: Any, sentence: Any) -> tuple[float, float]:
    """The (start, end) of one timestamped sentence, both JSON numbers (:func:`_json_time`: a
    bool or a quoted string is not a time); ValueError/TypeError makes the record "unparsable"."""
    if not isinstance(sentence, str) or len(stamp) != 2:
        raise ValueError(f"not a [start, end] pair with a sentence: {stamp!r}")
    return json_time(stamp[0]), json_time(stamp[1])


def _read_tacos_file(path: Path, split: str, report: DataReport) -> list[Moment]:
    raw = load_json(path)
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected an object keyed by video name (2D-TAN TACoS format)")
    b = SplitBuilder(report, split, path)
    number = 0
    for vid, entry, stamps, sentences in _timestamped_videos(raw, path):
        fps = as_duration(entry.get("fps"))
        frames = as_duration(entry.get("num_frames"))
        duration: float | None
        if fps is None or frames is None:
            duration = None
        elif fps <= 0 or not math.isfinite(fps):
            duration = float("nan")  # reported as "invalid duration"
        else:
            duration = frames / fps
        for k, (stamp, sentence) in enumerate(zip(stamps, sentences, strict=True)):
            number += 1
            b.line()
            text = f"{vid}[{k}]: {stamp!r} {sentence!r}"
            try:
                s_frame, e_frame = _stamp_pair(stamp, sentence)
            except (TypeError, ValueError):
                b.skip(number, "unparsable", text)
                continue
            # Without a usable fps the record is skipped on its duration before times are used.
            scale = fps if fps is not None and fps > 0 and math.isfinite(fps) else 1.0
            b.add(
                line=number,
                text=text,
                qid=f"{split}-{vid}-{k}",
                vid=str(vid),
                query=sentence,
                start=s_frame / scale,
                end=e_frame / scale,
                duration=duration,
                known_video=True,
            )
    return b.finish()


@READERS.register("tacos")
def read_tacos(root: Path) -> tuple[Splits, DataReport]:
    """2D-TAN TACoS JSON: ``{"vid.avi": {"timestamps": [[f0, f1]], "sentences", "fps",
    "num_frames"}}``; times in FRAMES (seconds = frame / fps, duration = num_frames / fps)."""
    report = DataReport(dataset="tacos")
    report.notes.append("exact duplicate (video, timestamps, sentence) entries counted and dropped")
    splits: Splits = {}
    for split in ("train", "val", "test"):
        path = root / f"{split}.json"
        if split == "val" and not path.is_file():
            continue
        require_file(path, f"TACoS {split} annotations")
        splits[split] = _read_tacos_file(path, split, report)
    return splits, report


# --------------------------------------------------------------------------- ActivityNet Captions

#: The files of the ActivityNet Captions release and the split each one is. ``val_1`` is the
#: validation split and ``val_2`` the test split, as EAMAT (``datasets/activitynet.py``: "val_1.json
#: is renamed as val.json, val_2.json is renamed as test.json") and 2D-TAN use them; the official
#: test annotations were never released.
ACTIVITYNET_FILES = {"train": "train.json", "val": "val_1.json", "test": "val_2.json"}


def _read_activitynet_file(path: Path, split: str, report: DataReport) -> list[Moment]:
    raw = load_json(path)
    if not isinstance(raw, dict):
        raise DataError(
            f"{path}: expected an object keyed by video id (ActivityNet Captions format "
            "{video: {duration, timestamps, sentences}})"
        )
    b = SplitBuilder(report, split, path)
    number = 0
    for vid, entry, stamps, sentences in _timestamped_videos(raw, path):
        has_duration = entry.get("duration") is not None
        duration = as_duration(entry.get("duration"))
        if has_duration and duration is None:
            duration = float("nan")  # present but not a number: "invalid duration"
        for k, (stamp, sentence) in enumerate(zip(stamps, sentences, strict=True)):
            number += 1
            b.line()
            text = f"{vid}[{k}]: {stamp!r} {sentence!r}"
            try:
                start, end = _stamp_pair(stamp, sentence)
            except (TypeError, ValueError):
                b.skip(number, "unparsable", text)
                continue
            b.add(
                line=number,
                text=text,
                qid=f"{split}-{vid}-{k}",
                vid=str(vid),
                query=sentence,
                start=start,
                end=end,
                duration=duration,
                known_video=True,
            )
    return b.finish()


@READERS.register("activitynet")
def read_activitynet(root: Path) -> tuple[Splits, DataReport]:
    """ActivityNet Captions JSON: ``{"v_xxx": {"duration": s, "timestamps": [[s0, s1], ...],
    "sentences": [...]}}``, times in SECONDS; ``train.json``, ``val_1.json`` (validation,
    optional: carved from train when absent) and ``val_2.json`` (test), see ACTIVITYNET_FILES.

    A "line" of the report is one (timestamp, sentence) pair, numbered from 1 through the file in
    its order; reversed spans (start > end, a few in the public release) are skipped as
    ``start >= end`` and ends beyond the video's duration are clipped, as for every dataset.
    """
    report = DataReport(dataset="activitynet")
    report.notes.append("splits: train.json = train, val_1.json = val, val_2.json = test")
    splits: Splits = {}
    for split, name in ACTIVITYNET_FILES.items():
        path = root / name
        if split == "val" and not path.is_file():
            continue
        require_file(path, f"ActivityNet Captions {split} annotations ({name})")
        splits[split] = _read_activitynet_file(path, split, report)
    return splits, report


# --------------------------------------------------------------------------- JSONL


def _read_jsonl_file(path: Path, split: str, report: DataReport) -> list[Moment]:
    b = SplitBuilder(report, split, path)
    multi = 0
    for number, text, raw in read_lines(path):
        b.line()
        if text is None:
            b.skip(number, "unparsable", f"not UTF-8: {raw[:80]!r}")
            continue
        try:
            rec = json.loads(text)
            if not isinstance(rec, dict):
                raise ValueError
            qid, vid, query = str(rec["qid"]), str(rec["vid"]), rec["query"]
            windows = rec["relevant_windows"]
            if not isinstance(query, str) or not isinstance(windows, list) or not windows:
                raise ValueError
            spans = [(json_time(w[0]), json_time(w[1])) for w in windows if len(w) == 2]
            if len(spans) != len(windows):
                raise ValueError
        except (ValueError, KeyError, TypeError, IndexError):
            b.skip(number, "unparsable", text)
            continue
        has_duration = "duration" in rec and rec["duration"] is not None
        duration = as_duration(rec.get("duration"))
        if has_duration and duration is None:
            duration = float("nan")  # present but not a number: "invalid duration"
        multi += len(spans) > 1
        for k, (start, end) in enumerate(spans):
            b.add(
                line=number,
                text=text,
                qid=qid if len(spans) == 1 else f"{qid}#{k}",
                vid=vid,
                query=query,
                start=start,
                end=end,
                duration=duration,
                known_video=True,
            )
    if multi:
        report.notes.append(
            f"{path}: {multi} queries with several relevant windows became one moment per window "
            "(qid#k)"
        )
    return b.finish()


@READERS.register("jsonl")
def read_jsonl(root: Path) -> tuple[Splits, DataReport]:
    """Moment-DETR/Lighthouse JSONL: ``{"qid", "query", "vid", "duration",
    "relevant_windows": [[s, e], ...]}`` in ``{train,val,test}.jsonl`` (val optional)."""
    report = DataReport(dataset="jsonl")
    splits: Splits = {}
    for split in ("train", "val", "test"):
        path = root / f"{split}.jsonl"
        if split == "val" and not path.is_file():
            continue
        splits[split] = _read_jsonl_file(require_file(path, f"JSONL {split} file"), split, report)
    return splits, report


# --------------------------------------------------------------------------- entry points


def read_dataset(dataset: str, root: str | Path) -> tuple[Splits, DataReport]:
    """The source splits of ``dataset`` under ``root`` exactly as the files define them."""
    try:
        reader = READERS.get(dataset)
    except KeyError as err:
        raise DataError(str(err.args[0])) from None
    root = refuse_uri(root, "annotation directory")
    if not root.is_dir():
        raise DataError(f"{root}: annotation directory not found (data.root, dataset {dataset!r})")
    return reader(root)


CARVE_METHOD = "sklearn GroupShuffleSplit by video id"


def _groups_digest(vids: list[str]) -> str:
    """What GroupShuffleSplit's draw depends on besides fraction and seed: the sorted distinct
    video ids (it shuffles ``np.unique`` of the groups)."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(set(vids))).encode()).hexdigest()


def carve_validation(
    train: list[Moment], fraction: float, seed: int, recorded: dict[str, Any] | None = None
) -> tuple[list[Moment], list[Moment]]:
    """Split train into (train, val) by VIDEO: no video is in both (GroupShuffleSplit).

    ``recorded`` is a carve written earlier (``DataReport.carved`` of the vocab stage's
    ``data_report.json``): when its fraction, seed and training videos are these, its validation
    videos are taken as they are. Why: the draw is a pure function of those three, and importing
    scikit-learn costs ~2 s in every train worker and evaluate process of ``make run``."""
    groups = [m.vid for m in train]
    if len(set(groups)) < 2:
        raise DataError(
            f"cannot carve a validation split from {len(set(groups))} training video(s)"
        )
    val_vids = _recorded_val_videos(recorded, groups, fraction, seed)
    if val_vids is None:
        from sklearn.model_selection import GroupShuffleSplit

        splitter = GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed)
        _, val_idx = next(splitter.split(train, groups=groups))
        val_vids = {groups[i] for i in val_idx.tolist()}
    kept = [m for m in train if m.vid not in val_vids]
    val = [replace(m, split="val") for m in train if m.vid in val_vids]
    return kept, val


def _recorded_val_videos(
    recorded: dict[str, Any] | None, groups: list[str], fraction: float, seed: int
) -> set[str] | None:
    """The validation videos of ``recorded`` if it is a carve of these inputs, else None."""
    if not recorded or recorded.get("method") != CARVE_METHOD:
        return None
    ids = recorded.get("val_video_ids")
    if (
        recorded.get("fraction") != fraction
        or recorded.get("seed") != seed
        or recorded.get("groups_sha256") != _groups_digest(groups)
        or not isinstance(ids, list)
        or not ids
    ):
        return None
    vids = {str(v) for v in ids}
    return vids if vids <= set(groups) else None


def recorded_carve(vocab_dir: str | Path) -> dict[str, Any] | None:
    """The carve the vocab stage recorded in ``vocab_dir/data_report.json``, or None (no file,
    unreadable, or a dataset with its own validation split): the caller then carves afresh."""
    path = Path(vocab_dir) / DATA_REPORT
    try:
        carved = json.loads(path.read_text(encoding="utf-8")).get("carved")
    except (OSError, ValueError, AttributeError):
        return None
    return carved if isinstance(carved, dict) else None


def load_splits(cfg: Config, recorded: dict[str, Any] | None = None) -> tuple[Splits, DataReport]:
    """train / val / test Moments of ``cfg.data`` and the report (val carved if none exists;
    ``recorded``: a carve written before, see :func:`carve_validation`)."""
    splits, report = read_dataset(cfg.data.dataset, cfg.data.root)
    if "test" not in splits or not splits["test"]:
        raise DataError(f"{cfg.data.root}: dataset {cfg.data.dataset!r} has no test moments")
    if not splits.get("train"):
        raise DataError(f"{cfg.data.root}: dataset {cfg.data.dataset!r} has no train moments")
    if not splits.get("val"):
        source_vids = [m.vid for m in splits["train"]]
        train, val = carve_validation(splits["train"], cfg.data.val_fraction, cfg.seed, recorded)
        splits["train"], splits["val"] = train, val
        report.carved = {
            "from": "train",
            "fraction": cfg.data.val_fraction,
            "seed": cfg.seed,
            "method": CARVE_METHOD,
            "train_moments": len(train),
            "val_moments": len(val),
            "train_videos": len({m.vid for m in train}),
            "val_videos": len({m.vid for m in val}),
            # the draw itself, so that train and evaluate take it without scikit-learn
            "groups_sha256": _groups_digest(source_vids),
            "val_video_ids": sorted({m.vid for m in val}),
        }
        for name, ms in (("train", train), ("val", val)):
            report.kept[name] = len(ms)
            report.videos[name] = len({m.vid for m in ms})
        log.info(
            "carved val from train: %d moments / %d videos (fraction %.2f, seed %d)",
            len(val),
            report.videos["val"],
            cfg.data.val_fraction,
            cfg.seed,
        )
    return {k: splits[k] for k in ("train", "val", "test")}, report
