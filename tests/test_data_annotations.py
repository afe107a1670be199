"""Annotation readers on fixtures in the exact native formats, bad input, and the real files."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dynpath.config import Config
from dynpath.data.annotation_stats import data_stats, format_report
from dynpath.data.annotations import READERS, load_splits, read_dataset, recorded_carve
from dynpath.errors import DataError

DURATIONS = {"AAAAA": 30.0, "BBBBB": 20.0, "CCCCC": 12.5, "DDDDD": 40.0, "EEEEE": 25.0}


def write_charades(root: Path, train: str, test: str, durations: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "charades_sta_train.txt").write_text(train)
    (root / "charades_sta_test.txt").write_text(test)
    d = durations if durations is not None else DURATIONS
    (root / "charades.json").write_text(
        json.dumps({k: {"subset": "training", "duration": v, "actions": []} for k, v in d.items()})
    )
    return root


GOOD_TRAIN = (
    "AAAAA 0.0 6.9##a person is putting a book on a shelf.\n"
    "AAAAA 20.8 30.0##person begins to play on a phone.\n"
    "BBBBB 1.5 21.0##person opens the door.\n"  # end 21.0 > 20.0: clipped
    "DDDDD 3.0 9.0##Person sits DOWN.\n"
    "EEEEE 5.0 8.0##a person eats.\n"
)
GOOD_TEST = "CCCCC 2.0 4.0##someone laughs.\nCCCCC 4.0 12.6##someone runs away.\n"


def test_charades_reader_seconds_clipping_and_report(tmp_path: Path) -> None:
    root = write_charades(tmp_path / "c", GOOD_TRAIN, GOOD_TEST)
    splits, report = read_dataset("charades_sta", root)
    assert [len(splits["train"]), len(splits["test"])] == [5, 2]
    b = splits["train"][2]
    assert (b.vid, b.start, b.end, b.duration, b.split) == ("BBBBB", 1.5, 20.0, 20.0, "train")
    assert b.query == "person opens the door."
    assert report.lines == {"train": 5, "test": 2}
    assert report.clipped == {"train": 1, "test": 1}
    assert report.videos == {"train": 4, "test": 1}
    assert report.skipped == []
    assert len({m.qid for m in splits["train"] + splits["test"]}) == 7


def test_charades_durations_from_official_csv(tmp_path: Path) -> None:
    root = tmp_path / "csv"
    root.mkdir()
    (root / "charades_sta_train.txt").write_text(GOOD_TRAIN)
    (root / "charades_sta_test.txt").write_text(GOOD_TEST)
    header = (
        "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"
    )
    rows = [f'{k},S1,Kitchen,6,7,Yes,"a, b",x,y,c001 0 1,{v}\n' for k, v in DURATIONS.items()]
    (root / "Charades_v1_train.csv").write_text(header + "".join(rows[:3]))
    (root / "Charades_v1_test.csv").write_text(header + "".join(rows[3:]))
    splits, report = read_dataset("charades_sta", root)
    assert len(splits["train"]) == 5 and splits["test"][1].end == 12.5
    assert "Charades_v1_test.csv" in report.sources["durations"]


def test_no_duration_source_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "nodur"
    root.mkdir()
    (root / "charades_sta_train.txt").write_text(GOOD_TRAIN)
    (root / "charades_sta_test.txt").write_text(GOOD_TEST)
    with pytest.raises(DataError, match=r"charades\.json"):
        read_dataset("charades_sta", root)


BAD_LINES = [
    ("AAAAA 1.0 2.0 person without separator", "unparsable"),
    ("AAAAA one 2.0##non numeric start", "unparsable"),
    ("AAAAA 1.0##missing end", "unparsable"),
    ("AAAAA nan 2.0##not finite", "unparsable"),
    ("AAAAA 5.0 5.0##start equals end", "start >= end"),
    ("AAAAA 8.0 3.0##start after end", "start >= end"),
    ("ZZZZZ 1.0 2.0##unknown video", "unknown video"),
    ("NODUR 1.0 2.0##video without duration", "missing duration"),
    ("ZERO0 1.0 2.0##video of zero duration", "invalid duration"),
    ("AAAAA 1.0 2.0##   ", "empty query"),
    ("AAAAA 1.0 2.0##?!", "empty query"),
    ("AAAAA -1.0 2.0##negative start", "negative start"),
    ("BBBBB 25.0 28.0##starts after the video ends", "start >= end"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES)
def test_each_malformed_line_is_reported_with_reason_and_line(
    tmp_path: Path, line: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    durations = {**DURATIONS, "ZERO0": 0.0}
    root = write_charades(tmp_path / "bad", GOOD_TRAIN + line + "\n", GOOD_TEST, durations)
    data = json.loads((root / "charades.json").read_text())
    data["NODUR"] = {"subset": "training", "actions": []}
    (root / "charades.json").write_text(json.dumps(data))
    with caplog.at_level(logging.WARNING, logger="dynpath.data.annotations"):
        splits, report = read_dataset("charades_sta", root)
    assert len(splits["train"]) == 5
    assert report.lines["train"] == 6 and report.kept["train"] == 5
    assert [(s.reason, s.line, s.split) for s in report.skipped] == [(reason, 6, "train")]
    assert f"charades_sta_train.txt:6: skipped ({reason})" in caplog.text


def test_non_utf8_line_is_reported_not_dropped_silently(tmp_path: Path) -> None:
    root = write_charades(tmp_path / "enc", GOOD_TRAIN, GOOD_TEST)
    with open(root / "charades_sta_train.txt", "ab") as fh:
        fh.write(b"AAAAA 1.0 2.0##caf\xe9 latte\n")
    splits, report = read_dataset("charades_sta", root)
    assert len(splits["train"]) == 5
    (s,) = report.skipped
    assert (s.reason, s.line) == ("unparsable", 6) and "UTF-8" in s.text


def test_blank_and_crlf_lines(tmp_path: Path) -> None:
    root = write_charades(tmp_path / "crlf", GOOD_TRAIN.replace("\n", "\r\n") + "\r\n", GOOD_TEST)
    splits, report = read_dataset("charades_sta", root)
    assert report.lines["train"] == 5 and not report.skipped
    assert splits["train"][0].query == "a person is putting a book on a shelf."


def test_exact_duplicates_counted_and_dropped(tmp_path: Path) -> None:
    line = "AAAAA 0.0 6.9##a person is putting a book on a shelf.\n"
    root = write_charades(tmp_path / "dup", GOOD_TRAIN + line + line, GOOD_TEST)
    _, report = read_dataset("charades_sta", root)
    assert report.duplicates["train"] == 2 and report.kept["train"] == 5
    assert report.lines["train"] == 7


def test_missing_annotation_file_names_it(tmp_path: Path) -> None:
    root = write_charades(tmp_path / "m", GOOD_TRAIN, GOOD_TEST)
    (root / "charades_sta_test.txt").unlink()
    with pytest.raises(DataError, match=r"charades_sta_test\.txt"):
        read_dataset("charades_sta", root)


def test_unknown_dataset_and_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="registered"):
        read_dataset("nope", tmp_path)
    with pytest.raises(DataError, match="not found"):
        read_dataset("charades_sta", tmp_path / "absent")
    assert {"charades_sta", "tacos", "jsonl", "synthetic"} <= set(READERS.names())


# ----------------------------------------------------------------------------- TACoS


def write_tacos(root: Path, with_val: bool = True) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    train = {
        "s30-d52.avi": {
            "timestamps": [[141, 354], [361, 732], [141, 354], [500, 400], [7000, 7400]],
            "sentences": [
                "She took out kiwi",
                "She washed it.",
                "She took out kiwi",  # exact duplicate of entry 0
                "bad order",
                "runs past the end",
            ],
            "fps": 29.4,
            "num_frames": 7346,
        },
        "s13-d21.avi": {
            "timestamps": [[0, 294], [10, 20]],
            "sentences": ["He got a knife.", "He got a knife."],  # same text, other span: kept
            "fps": 29.4,
            "num_frames": 2940,
        },
        "s14-d00.avi": {"timestamps": [[0, 10]], "sentences": ["no fps"], "num_frames": 100},
    }
    val = {
        "s21-d45.avi": {
            "timestamps": [[0, 300]],
            "sentences": ["cuts a lime"],
            "fps": 30.0,
            "num_frames": 3000,
        }
    }
    test = {
        "s22-d46.avi": {
            "timestamps": [[30, 60], ["x", 1]],
            "sentences": ["peels", "bad"],
            "fps": 30.0,
            "num_frames": 600,
        }
    }
    (root / "train.json").write_text(json.dumps(train))
    if with_val:
        (root / "val.json").write_text(json.dumps(val))
    (root / "test.json").write_text(json.dumps(test))
    return root


def test_tacos_frames_to_seconds_duplicates_and_skips(tmp_path: Path) -> None:
    splits, report = read_dataset("tacos", write_tacos(tmp_path / "t"))
    train = splits["train"]
    first = train[0]
    assert first.vid == "s30-d52.avi"
    assert first.start == pytest.approx(141 / 29.4) and first.end == pytest.approx(354 / 29.4)
    assert first.duration == pytest.approx(7346 / 29.4)
    assert report.duplicates["train"] == 1
    assert report.lines == {"train": 8, "val": 1, "test": 2}
    # kept: kiwi, washed, runs-past-end (clipped), knife x2
    assert len(train) == 5 and report.clipped["train"] == 1
    assert train[2].end == pytest.approx(7346 / 29.4)
    assert report.skipped_by_reason("train") == {"start >= end": 1, "missing duration": 1}
    assert report.skipped_by_reason("test") == {"unparsable": 1}
    assert len(splits["val"]) == 1 and splits["val"][0].end == pytest.approx(10.0)


def test_tacos_mismatched_lists_is_an_error(tmp_path: Path) -> None:
    root = write_tacos(tmp_path / "t2")
    bad = {"v.avi": {"timestamps": [[0, 1]], "sentences": [], "fps": 1, "num_frames": 9}}
    (root / "test.json").write_text(json.dumps(bad))
    with pytest.raises(DataError, match=r"v\.avi.*1 timestamps but 0 sentences"):
        read_dataset("tacos", root)


def test_tacos_bad_json_names_file_and_line(tmp_path: Path) -> None:
    root = write_tacos(tmp_path / "t3")
    (root / "val.json").write_text('{"a": \n [1, }')
    with pytest.raises(DataError, match=r"val\.json:2"):
        read_dataset("tacos", root)


# ----------------------------------------------------------------------------- JSONL


def write_jsonl(root: Path, with_val: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)

    def rec(
        qid: int, vid: str, dur: float | None, windows: list, query: str = "a man talks"
    ) -> str:
        r = {"qid": qid, "query": query, "vid": vid, "relevant_windows": windows}
        if dur is not None:
            r["duration"] = dur
        return json.dumps(r)

    train = [rec(i, f"v{i % 6}", 150.0, [[2.0 * i, 2.0 * i + 10]]) for i in range(12)]
    train.append(rec(100, "v1", 150.0, [[0, 4], [140, 152]]))  # two windows, one clipped
    train.append(rec(101, "v2", None, [[0, 4]]))  # no duration
    train.append("{not json")
    train.append(rec(102, "v3", 150.0, []))  # no window
    (root / "train.jsonl").write_text("\n".join(train) + "\n")
    (root / "test.jsonl").write_text(rec(7, "t1", 60.0, [[1, 2]], "the dog barks") + "\n")
    if with_val:
        (root / "val.jsonl").write_text(rec(8, "x1", 60.0, [[1, 2]]) + "\n")
    return root


def test_jsonl_reader(tmp_path: Path) -> None:
    splits, report = read_dataset("jsonl", write_jsonl(tmp_path / "j"))
    train = splits["train"]
    assert len(train) == 14  # 12 + two windows of qid 100
    assert [m.qid for m in train[-2:]] == ["100#0", "100#1"]
    assert train[-1].end == 150.0 and report.clipped["train"] == 1
    assert report.skipped_by_reason("train") == {"missing duration": 1, "unparsable": 2}
    assert "val" not in splits and any("several relevant windows" in n for n in report.notes)


def test_jsonl_val_optional_then_carved(tmp_path: Path) -> None:
    root = write_jsonl(tmp_path / "j2")
    cfg = Config.model_validate(
        {"data": {"dataset": "jsonl", "root": str(root), "val_fraction": 0.3}}
    )
    splits, report = load_splits(cfg)
    assert splits["val"] and report.carved["from"] == "train"
    root2 = write_jsonl(tmp_path / "j3", with_val=True)
    cfg2 = Config.model_validate({"data": {"dataset": "jsonl", "root": str(root2)}})
    splits2, report2 = load_splits(cfg2)
    assert [m.qid for m in splits2["val"]] == ["8"] and report2.carved == {}


# ----------------------------------------------------------------------------- carving


def _many_videos(tmp_path: Path) -> Path:
    durs = {f"V{i:04d}": 30.0 for i in range(60)}
    lines = [
        f"V{i:04d} {k}.0 {k + 5}.0##person does thing {k}\n" for i in range(50) for k in range(3)
    ]
    test = [f"V{i:04d} 1.0 3.0##test query\n" for i in range(50, 60)]
    return write_charades(tmp_path / "many", "".join(lines), "".join(test), durs)


def test_load_splits_carves_seeded_video_disjoint_val(tmp_path: Path) -> None:
    root = _many_videos(tmp_path)
    cfg = Config.model_validate(
        {"seed": 7, "data": {"dataset": "synthetic", "root": str(root), "val_fraction": 0.2}}
    )
    splits, report = load_splits(cfg)
    tv, vv = {m.vid for m in splits["train"]}, {m.vid for m in splits["val"]}
    assert not tv & vv and len(vv) == 10 and len(tv) == 40
    assert all(m.split == "val" for m in splits["val"])
    assert report.dataset == "synthetic" and report.kept["val"] == 30
    assert report.carved["val_videos"] == 10 and report.lines["train"] == 150
    again, _ = load_splits(cfg)
    assert [m.qid for m in again["val"]] == [m.qid for m in splits["val"]]
    other, _ = load_splits(cfg.model_copy(update={"seed": 8}))
    assert {m.vid for m in other["val"]} != vv
    assert not {m.vid for m in splits["test"]} & (tv | vv)


def _qids(splits: dict[str, list[Any]]) -> dict[str, list[str]]:
    return {k: [m.qid for m in v] for k, v in splits.items()}


def test_a_recorded_carve_gives_the_same_splits_as_scikit_learns(tmp_path: Path) -> None:
    """train and evaluate take the vocab stage's recorded carve (data_report.json) instead of
    importing scikit-learn: the moments must be the very ones GroupShuffleSplit draws."""
    root = _many_videos(tmp_path)
    for seed, fraction in ((7, 0.2), (12345, 0.1), (3, 0.35)):
        cfg = Config.model_validate(
            {
                "seed": seed,
                "data": {"dataset": "synthetic", "root": str(root), "val_fraction": fraction},
            }
        )
        fresh, report = load_splits(cfg)
        record = json.loads(json.dumps(report.carved))  # as data_report.json holds it
        assert record["val_video_ids"] == sorted({m.vid for m in fresh["val"]})
        taken, report2 = load_splits(cfg, record)
        assert _qids(taken) == _qids(fresh)
        assert [m.split for m in taken["val"]] == ["val"] * len(fresh["val"])
        assert report2.carved == report.carved


def test_a_recorded_carve_of_other_inputs_is_not_taken(tmp_path: Path) -> None:
    root = _many_videos(tmp_path)
    cfg = Config.model_validate(
        {"seed": 7, "data": {"dataset": "synthetic", "root": str(root), "val_fraction": 0.2}}
    )
    fresh, report = load_splits(cfg)
    record = dict(report.carved)
    # the record of another seed, fraction or set of training videos would give other moments
    for key, value in (
        ("seed", 8),
        ("fraction", 0.25),
        ("groups_sha256", "0" * 64),
        ("method", "something else"),
    ):
        bogus = {**record, key: value, "val_video_ids": ["V0000", "V0001"]}
        taken, _ = load_splits(cfg, bogus)
        assert _qids(taken) == _qids(fresh), key
    # ids that are not training videos (a hand-edited file): carved afresh
    taken, _ = load_splits(cfg, {**record, "val_video_ids": ["V0000", "NOPE"]})
    assert _qids(taken) == _qids(fresh)
    # a record that passes every check is what decides (the proof the record is used at all)
    forced, _ = load_splits(cfg, {**record, "val_video_ids": ["V0000", "V0001"]})
    assert {m.vid for m in forced["val"]} == {"V0000", "V0001"}


def test_a_recorded_carve_does_not_import_scikit_learn(tmp_path: Path) -> None:
    """The point of the record: a train worker or evaluate process skips the ~2 s import."""
    root = _many_videos(tmp_path)
    cfg = {"seed": 7, "data": {"dataset": "synthetic", "root": str(root), "val_fraction": 0.2}}
    _, report = load_splits(Config.model_validate(cfg))
    (tmp_path / "data_report.json").write_text(json.dumps({"carved": report.carved}))
    code = (
        "import sys, json\n"
        "from dynpath.config import Config\n"
        "from dynpath.data.annotations import load_splits, recorded_carve\n"
        f"cfg = Config.model_validate(json.loads({json.dumps(json.dumps(cfg))}))\n"
        f"splits, _ = load_splits(cfg, recorded_carve({str(tmp_path)!r}))\n"
        "print(len(splits['val']), 'sklearn' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(report.kept["val"]), "False"]


def test_recorded_carve_reads_the_vocab_stage_report(tmp_path: Path) -> None:
    assert recorded_carve(tmp_path) is None  # no data_report.json
    (tmp_path / "data_report.json").write_text("{not json", encoding="utf-8")
    assert recorded_carve(tmp_path) is None
    (tmp_path / "data_report.json").write_text('{"carved": {}}', encoding="utf-8")
    assert recorded_carve(tmp_path) == {}
    (tmp_path / "data_report.json").write_text('{"carved": {"seed": 1}}', encoding="utf-8")
    assert recorded_carve(tmp_path) == {"seed": 1}


# ----------------------------------------------------------------------------- stats


def test_data_stats_is_json_and_formats(tmp_path: Path) -> None:
    root = write_charades(tmp_path / "s", GOOD_TRAIN + "AAAAA 5.0 1.0##bad\n", GOOD_TEST)
    d = data_stats("charades_sta", root)
    json.dumps(d)
    tr = d["splits"]["train"]
    assert (tr["lines"], tr["kept"], tr["skipped"], tr["clipped"]) == (6, 5, {"start >= end": 1}, 1)
    assert tr["query_words"]["max"] == 9.0 and tr["query_words"]["min"] == 3.0
    assert tr["moment_seconds"]["min"] == 3.0
    text = format_report(d)
    assert "start >= end: 1" in text and "charades_sta_train.txt:6" in text


# ----------------------------------------------------------------------------- real data


def test_real_charades_sta_counts(shared_data: Path) -> None:
    root = shared_data / "charades_sta"
    splits, report = read_dataset("charades_sta", root)
    assert report.lines == {"train": 12408, "test": 3720}
    assert report.skipped_by_reason("train") == {"start >= end": 4}
    assert report.skipped_by_reason("test") == {}
    assert report.clipped == {"train": 1805, "test": 562}
    assert report.clipped_kept == {"train": 1802, "test": 562}
    assert (len(splits["train"]), len(splits["test"])) == (12404, 3720)
    assert sorted((s.line, s.text.split()[0]) for s in report.skipped) == [
        (8252, "LEOL6"),
        (8440, "IOL8Q"),
        (9623, "AKKWU"),
        (9624, "AKKWU"),
    ]
    assert not {m.vid for m in splits["train"]} & {m.vid for m in splits["test"]}
    assert all(0 <= m.start < m.end <= m.duration for m in splits["train"] + splits["test"])
