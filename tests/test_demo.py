"""The demo page's logic without a browser: timeline, route line, listed videos, error messages.

What a trained model answers on a real video, and the page itself in Chromium, are in
test_demo_browser.py (slow).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from dynpath import demo
from dynpath.cli import main
from dynpath.config import Config
from dynpath.demo import ModelCache, VideoCatalog, localize, route_text, timeline_html

RESULT: dict[str, Any] = {
    "query": "the red circle <b>grows</b>",
    "duration": 20.0,
    "spans": [
        {"start": 5.0, "end": 10.0, "score": 0.6},
        {"start": 0.0, "end": 20.0, "score": 0.2},
        {"start": 12.5, "end": 15.0, "score": 0.1},
    ],
    "route": "exploration",
    "route_probs": {"exploitation": 0.17, "exploration": 0.83},
    "variant": "dynamic",
}


def _bars(page: str, cls: str = "dynpath-span") -> list[dict[str, float]]:
    """data-start/data-end and geometry of each bar of class ``cls`` in the timeline."""
    out = []
    for tag in re.findall(rf'<rect class="{cls}"[^>]*>', page):
        attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', tag))
        out.append({k: float(attrs[k]) for k in ("data-start", "data-end", "x", "width")})
    return out


def test_timeline_draws_each_span_at_its_seconds_and_rows_play_it() -> None:
    page = timeline_html(RESULT)
    bars = _bars(page)
    assert [(b["data-start"], b["data-end"]) for b in bars] == [(5, 10), (0, 20), (12.5, 15)]
    # x is linear in seconds: the whole video spans the axis, a quarter starts a quarter in
    full = bars[1]
    assert bars[0]["x"] == pytest.approx(full["x"] + full["width"] / 4, abs=0.2)
    assert bars[0]["width"] == pytest.approx(full["width"] / 4, abs=0.2)
    rows = re.findall(r'<tr class="dynpath-row" data-rank="(\d)" data-start="([\d.]+)"', page)
    assert rows == [("1", "5.000"), ("2", "0.000"), ("3", "12.500")]
    assert "dynpath-truth" not in page
    # user text is escaped, never markup
    assert "<b>grows" not in page and "&lt;b&gt;grows&lt;/b&gt;" in page


def test_timeline_adds_the_annotated_moment_in_its_own_lane() -> None:
    page = timeline_html(RESULT, truth=(2.0, 4.0))
    (gt,) = _bars(page, "dynpath-truth")
    assert (gt["data-start"], gt["data-end"]) == (2.0, 4.0)
    assert len(_bars(page)) == 3
    assert 'data-rank="gt"' in page and "annotated" in page


def test_ticks_are_round_seconds_within_the_video() -> None:
    assert demo._ticks(9.38) == [0, 2, 4, 6, 8]
    assert demo._ticks(200.0) == [0, 30, 60, 90, 120, 150, 180]
    assert demo._ticks(0.0) == [0.0]


def test_route_line_names_the_chosen_pathway_and_its_probability() -> None:
    assert route_text(RESULT) == "**Pathway:** exploration (p = 0.83); exploitation 0.17."
    fusion = {**RESULT, "route": None, "variant": "sum_fusion"}
    fusion.pop("route_probs")
    text = route_text(fusion)
    assert "no selector" in text and "sum_fusion" in text


def _jsonl(path: Path, rows: list[tuple[str, str, float, float]]) -> None:
    path.write_text(
        "".join(
            json.dumps(
                {"qid": f"q{i}", "vid": v, "query": q, "duration": 20.0,
                 "relevant_windows": [[s, e]]}
            ) + "\n"
            for i, (v, q, s, e) in enumerate(rows)
        )
    )  # fmt: skip


def test_catalog_lists_the_configured_videos_and_their_sentences(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("b.mp4", "a.avi", "notes.txt"):
        (videos / name).write_bytes(b"")
    _jsonl(tmp_path / "train.jsonl", [("a", "a person sits", 1, 3), ("b", "a door opens", 2, 5)])
    _jsonl(
        tmp_path / "test.jsonl",
        [("a", "a person stands", 4, 8), ("a", "a person sits", 1, 3)],
    )
    cfg = Config.model_validate(
        {"data": {"dataset": "jsonl", "root": str(tmp_path), "videos": str(videos)}}
    )
    cat = VideoCatalog.from_config(cfg)
    assert sorted(cat.videos) == ["a", "b"] and cat.videos["a"] == (videos / "a.avi").resolve()
    assert cat.sentences("a") == ["a person sits", "a person stands"]
    assert cat.truth("a", "A person stands.") == (4.0, 8.0)  # case and punctuation ignored
    assert cat.truth("a", "a door opens") is None and cat.truth(None, "a person sits") is None
    assert cat.note == ""


def test_catalog_without_data_says_why(tmp_path: Path) -> None:
    assert "no params.yaml" in VideoCatalog.from_config(None).note
    cfg = Config.model_validate({"data": {"videos": str(tmp_path / "missing")}})
    cat = VideoCatalog.from_config(cfg)
    assert not cat.videos and "videos directory not found" in cat.note and "make run" in cat.note


def test_user_errors_are_messages_before_any_model_is_loaded(tmp_path: Path) -> None:
    models = ModelCache(device="cpu")
    video = tmp_path / "v.mp4"
    empty = localize(models, "outputs/models/dynamic", video, "   ")
    assert not empty.ok and "sentence is empty" in empty.status and not empty.timeline
    novideo = localize(models, "outputs/models/dynamic", None, "a person sits")
    assert not novideo.ok and "no video" in novideo.status
    bad = localize(models, str(tmp_path / "no-such-model"), video, "a person sits")
    assert not bad.ok and "cannot load model" in bad.status and "no-such-model" in bad.status
    blank = localize(models, "  ", video, "a person sits")
    assert "no model given" in blank.status and "models:/NAME@ALIAS" in blank.status


def test_an_unexpected_failure_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    def broken(uri: str, device: str) -> Any:
        raise RuntimeError("tensor shape mismatch\n  File x.py, line 3")

    answer = localize(ModelCache(loader=broken), "m", tmp_path / "v.mp4", "a person sits")
    assert not answer.ok
    assert "unexpected RuntimeError: tensor shape mismatch" in answer.status
    assert "line 3" not in answer.status and "Traceback" not in answer.status


def test_markdown_in_user_text_is_shown_literally() -> None:
    assert demo._md("*bold* `code` <img>") == r"\*bold\* \`code\` \<img\>"


def test_missing_gradio_is_an_install_hint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio -> ImportError
    with pytest.raises(demo.DynpathError, match=r"\.\[demo\]"):
        demo._import_gradio()
    assert main(["--params", str(tmp_path / "none.yaml"), "demo", "--model", "m"]) == 2
    err = capsys.readouterr().err
    assert "needs Gradio" in err and "Traceback" not in err


def test_bad_port_is_refused(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--params", str(tmp_path / "none.yaml"), "demo", "--port", "70000"]) == 2
    assert "--port 70000: not a TCP port" in capsys.readouterr().err


def test_page_wires_the_inputs_to_the_outputs() -> None:
    """The Blocks graph: Localize (and Enter) read model, video, sentence and the listed
    video, and write status, route and timeline; picking a listed video fills the player."""
    app = demo.build_app("outputs/models/dynamic", VideoCatalog(note="none"), ModelCache("cpu"))
    config = app.get_config_file()
    ids = {c["id"]: c.get("props", {}).get("elem_id") for c in config["components"]}
    deps = {}
    for dep in config["dependencies"]:
        for target in dep["targets"]:
            deps[(ids.get(target[0]), target[1])] = (
                [ids.get(i) for i in dep["inputs"]],
                [ids.get(o) for o in dep["outputs"]],
            )
    inputs, outputs = deps[("dynpath-run", "click")]
    assert inputs[:3] == ["dynpath-model", "dynpath-video", "dynpath-query"]
    assert outputs == ["dynpath-status", "dynpath-route", "dynpath-timeline"]
    assert deps[("dynpath-query", "submit")] == deps[("dynpath-run", "click")]
    assert deps[("dynpath-listed", "change")][1][0] == "dynpath-video"


def test_a_taken_port_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = ["--params", str(tmp_path / "none.yaml"), "demo", "--port", str(port)]
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"cannot serve on 127.0.0.1:{port}" in err and "pick another --port" in err
    assert "Traceback" not in err
