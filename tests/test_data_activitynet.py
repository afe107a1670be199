"""ActivityNet Captions: the reader (splits, skip/clip rules, report), its profile, data-stats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dynpath.cli import main
from dynpath.config import load_config
from dynpath.data.annotation_stats import data_stats
from dynpath.data.annotations import read_dataset
from dynpath.errors import DataError
from dynpath.profiles import resolve, use_profile

TRAIN = {
    "v_aaa": {
        "duration": 60.0,
        "timestamps": [[0.0, 10.5], [12.0, 70.0], [30.0, 20.0]],  # end clipped; reversed span
        "sentences": ["A man opens a door.", "He walks to the car.", "He sits down."],
    },
    "v_bbb": {
        "duration": 30.0,
        "timestamps": [[5.0, 15.0], [5.0, 15.0], [35.0, 40.0]],  # duplicate; start past the end
        "sentences": ["A woman dances.", "A woman dances.", "She bows."],
    },
    "v_ccc": {"duration": 20.0, "timestamps": [[1.0, 4.0]], "sentences": ["A dog runs."]},
}
VAL_1 = {"v_ddd": {"duration": 40.0, "timestamps": [[2.0, 8.0]], "sentences": ["A cat jumps."]}}
VAL_2 = {
    "v_eee": {
        "duration": 50.0,
        "timestamps": [[10.0, 20.0], [-1.0, 5.0]],
        "sentences": ["Someone cooks.", "Someone eats."],
    }
}


def write_slice(root: Path, val: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.json").write_text(json.dumps(TRAIN))
    if val:
        (root / "val_1.json").write_text(json.dumps(VAL_1))
    (root / "val_2.json").write_text(json.dumps(VAL_2))
    return root


def test_reader_splits_skips_and_clips(tmp_path: Path) -> None:
    splits, report = read_dataset("activitynet", write_slice(tmp_path))
    assert set(splits) == {"train", "val", "test"}
    train = splits["train"]
    assert [(m.vid, m.start, m.end) for m in train] == [
        ("v_aaa", 0.0, 10.5),
        ("v_aaa", 12.0, 60.0),  # 70 s clipped to the 60 s video
        ("v_bbb", 5.0, 15.0),
        ("v_ccc", 1.0, 4.0),
    ]
    assert train[0].qid == "train-v_aaa-0" and train[0].duration == 60.0
    assert report.lines == {"train": 7, "val": 1, "test": 2}
    assert report.kept == {"train": 4, "val": 1, "test": 1}
    assert report.clipped["train"] == 2  # 70 > 60 (kept) and 40 > 30 (then start >= end)
    assert report.clipped_kept["train"] == 1
    assert report.duplicates["train"] == 1
    reasons = {(s.split, s.line): s.reason for s in report.skipped}
    assert reasons == {
        ("train", 3): "start >= end",  # the reversed span [30, 20]
        ("train", 6): "start >= end",  # [35, 40] in a 30 s video: clipped to [35, 30]
        ("test", 2): "negative start",
    }
    assert splits["val"][0].split == "val" and splits["test"][0].vid == "v_eee"


def test_val_1_is_optional_val_2_is_not(tmp_path: Path) -> None:
    splits, _ = read_dataset("activitynet", write_slice(tmp_path, val=False))
    assert set(splits) == {"train", "test"}  # load_splits carves val from train
    (tmp_path / "val_2.json").unlink()
    with pytest.raises(DataError, match=r"val_2\.json: ActivityNet Captions test"):
        read_dataset("activitynet", tmp_path)


def test_malformed_entries_are_named(tmp_path: Path) -> None:
    write_slice(tmp_path)
    bad = {"v_x": {"duration": 5, "timestamps": [[0, 1]], "sentences": []}}
    (tmp_path / "train.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"train\.json: video 'v_x': 1 timestamps but 0"):
        read_dataset("activitynet", tmp_path)
    (tmp_path / "train.json").write_text('{"v_x": {"duration": 5,')
    with pytest.raises(DataError, match=r"train\.json:1: not valid JSON"):
        read_dataset("activitynet", tmp_path)


def test_unparsable_pair_and_missing_duration_are_skipped(tmp_path: Path) -> None:
    write_slice(tmp_path)
    odd = {
        "v_y": {"timestamps": [[0, 1]], "sentences": ["no duration here"]},
        "v_z": {"duration": 9, "timestamps": [[0, "x"], [1]], "sentences": ["a b", "c d"]},
    }
    (tmp_path / "train.json").write_text(json.dumps({**TRAIN, **odd}))
    _, report = read_dataset("activitynet", tmp_path)
    by_reason = report.skipped_by_reason("train")
    assert by_reason == {"start >= end": 2, "missing duration": 1, "unparsable": 2}


def test_data_stats_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stats = data_stats("activitynet", write_slice(tmp_path))
    train = stats["splits"]["train"]
    assert (train["lines"], train["kept"], train["skipped_total"]) == (7, 4, 2)
    assert (train["clipped"], train["clipped_kept"], train["duplicates"]) == (2, 1, 1)
    assert train["videos"] == 3 and stats["splits"]["test"]["skipped"] == {"negative start": 1}
    assert main(["data-stats", "--dataset", "activitynet", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "train skipped by reason: start >= end: 2" in out
    assert "val_1.json = val, val_2.json = test" in out


def test_profile_follows_the_paper_and_eamat(tmp_path: Path) -> None:
    cfg = load_config(use_profile("activitynet", tmp_path / "params.yaml"))
    assert cfg.data.dataset == "activitynet" and cfg.data.max_len == 500
    assert (cfg.model.dim, cfg.model.heads, cfg.model.lstm_scales) == (512, 8, 3)
    assert (cfg.train.lr, cfg.train.epochs, cfg.vocab.max_query_len) == (5e-4, 50, 30)
    assert (cfg.extract.backbone, cfg.extract.stride) == ("c3d", 8)
    assert resolve("activitynet")["data"]["features"] == "data/features/activitynet.h5"


def test_data_stats_cli_bad_root_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            *(sys.executable, "-m", "dynpath.cli", "data-stats"),
            *("--dataset", "activitynet", "--root", str(tmp_path / "nowhere")),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "annotation directory not found" in lines[0], done.stderr


def test_a_bool_or_a_quoted_number_is_not_a_time(tmp_path: Path) -> None:
    """The readers' one rule for JSON times (records.json_time): `true` is not 1.0 and "5"
    is not 5.0; such a record is reported unparsable, as in the TACoS and JSONL readers."""
    write_slice(tmp_path)
    odd = {"v_q": {"duration": 9, "timestamps": [[True, 5], ["1", "5"]], "sentences": ["a", "b"]}}
    (tmp_path / "train.json").write_text(json.dumps({**TRAIN, **odd}))
    splits, report = read_dataset("activitynet", tmp_path)
    assert report.skipped_by_reason("train")["unparsable"] == 2
    assert not [m for m in splits["train"] if m.vid == "v_q"]
