"""`dynpath localize` with several queries: one video decode, one answer per query."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from mlflow_server import make_feature_store, make_model_dir, make_video

from dynpath import cli
from dynpath.extract import extractor

QUERIES = ["a person opens the door", "the door closes", "a person sits"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_model_dir(tmp_path_factory.mktemp("q"), feature_dim=1024)  # I3D features


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    is_json = code == 0 and "--json" in argv
    return code, (json.loads(out) if is_json else out), err


def test_three_queries_one_video_decode(
    model_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    video = make_video(tmp_path / "clip.mp4", frames=40, fps=8)
    opened: list[Path] = []

    class CountingReader(extractor.VideoReader):
        def __init__(self, path: str | Path, *args: Any, **kwargs: Any) -> None:
            opened.append(Path(path))
            super().__init__(path, *args, **kwargs)

    monkeypatch.setattr(extractor, "VideoReader", CountingReader)
    base = ["localize", "--model", str(model_dir), "--video", str(video), "--device", "cpu"]
    argv = [*base, "--json", "--topk", "2"]
    for q in QUERIES:
        argv += ["--query", q]
    code, answers, err = _run(argv, capsys)
    assert code == 0, err
    assert opened == [video]  # decoded once for the three queries
    assert [a["query"] for a in answers] == QUERIES
    assert all(len(a["spans"]) == 2 and a["duration"] == pytest.approx(5.0) for a in answers)
    # each answer is what a call with that query alone answers
    opened.clear()
    code, alone, err = _run([*base, "--json", "--topk", "2", "--query", QUERIES[1]], capsys)
    assert code == 0, err
    assert isinstance(alone, dict) and alone == answers[1] and len(opened) == 1


def test_queries_file_equals_repeated_query(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_feature_store(tmp_path / "f.h5", {"vidA": 30}, dim=1024)
    base = ["localize", "--model", str(model_dir), "--features", str(store)]
    base += ["--video-id", "vidA", "--device", "cpu", "--json"]
    file = tmp_path / "queries.txt"
    file.write_text(f"{QUERIES[0]}\n\n  {QUERIES[1]}  \n{QUERIES[2]}\n", encoding="utf-8")
    code, from_file, err = _run([*base, "--queries", str(file)], capsys)
    assert code == 0, err
    repeated = [*base]
    for q in QUERIES:
        repeated += ["--query", q]
    assert _run(repeated, capsys)[1] == from_file
    assert [a["query"] for a in from_file] == QUERIES
    one = tmp_path / "one.txt"
    one.write_text(QUERIES[0] + "\n", encoding="utf-8")
    listed = _run([*base, "--queries", str(one)], capsys)[1]
    assert listed == from_file[:1]  # --queries always gives a list
    text_argv = [a for a in base if a != "--json"] + ["--query", QUERIES[0], "--query", "sits"]
    code, text, _ = _run(text_argv, capsys)
    assert code == 0 and text.count("query:") == 2


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "file not found"),
        ("\n   \n\n", "no query in the file (only empty lines)"),
        (b"\xff\xfe bad", "not UTF-8 text"),
    ],
)
def test_bad_queries_file_is_one_line_exit_2(
    model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    content: str | bytes | None,
    expected: str,
) -> None:
    file = tmp_path / "queries.txt"
    if isinstance(content, bytes):
        file.write_bytes(content)
    elif content is not None:
        file.write_text(content, encoding="utf-8")
    argv = ["localize", "--model", str(model_dir), "--queries", str(file), "--duration", "5"]
    code = cli.main([*argv, "--features", str(tmp_path / "none.h5")])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"--queries {file}" in err and expected in err, err


def test_no_query_at_all_is_a_usage_error(
    model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["localize", "--model", str(model_dir), "--features", "x.h5"]) == 2
    assert "give --query TEXT" in capsys.readouterr().err
