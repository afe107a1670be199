"""`dynpath demo` for real: a model trained in this session, the server started by the CLI on an
OS-assigned free port, and the page driven in headless Chromium (the system's, through
Playwright; no browser download).

The project is the tiny profile built by the real CLI in a temporary directory (synth, extract,
vocab, two epochs of ``dynamic`` and of ``sum_fusion``: ~30 s on one core). In the browser: upload
a video, type a sentence, the five spans appear on the timeline, the pathway line shows a
probability, clicking a span plays the video from its start; a non-video file is refused by the
page, a file named .mp4 that is not a video is answered with a message; an empty sentence and a
sentence of unknown words are messages; a listed video fills in its annotated sentence and draws
the annotated moment. No Python traceback ever reaches the page.

Set ``DYNPATH_DEMO_SCREENSHOT=path.png`` to save the page after a query (docs/demo.png is made so
with the synthetic default's model: README, "Try it in the browser").
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from reliability_workspace import child_env, cli_command, run_cli
from system_chromium import chromium  # noqa: F401  (fixture)

from dynpath.demo import ModelCache, VideoCatalog, localize
from dynpath.profiles import use_profile

pytestmark = pytest.mark.slow

VIDEO = "S0006"  # a video of the tiny profile's test split (seeded: the same on every machine)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny profile's data, features, vocabulary and two trained variants, by the CLI."""
    root = tmp_path_factory.mktemp("demo")
    use_profile("tiny", root / "params.yaml")
    for argv in (
        ["data"],
        ["extract"],
        ["vocab"],
        ["train", "--variant", "dynamic"],
        ["train", "--variant", "sum_fusion"],
    ):
        done = run_cli(argv, cwd=root, timeout=600)
        assert done.returncode == 0, f"dynpath {argv}: {done.stderr[-2000:]}"
    assert (root / "outputs" / "models" / "dynamic" / "best.pt").is_file()
    return root


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[str]:
    """``dynpath demo`` in its own process; yields the page's URL."""
    port = _free_port()
    log = (project / "demo.log").open("w")
    proc = subprocess.Popen(
        cli_command(["demo", "--port", str(port), "--device", "cpu"]),
        cwd=project,
        env=child_env(GRADIO_TEMP_DIR=str(project / "gradio-cache")),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (project / "demo.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "demo server did not answer in 120 s"
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    server_log = (project / "demo.log").read_text()
    assert "Traceback" not in server_log, server_log[-3000:]


# --------------------------------------------------------------------------- without a browser


def test_trained_models_answer_through_the_page_logic(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the page shows, from the real models on a real video of the configured data."""
    from dynpath.config import load_config

    monkeypatch.chdir(project)  # the profile's relative data paths, as `dynpath demo` sees them
    catalog = VideoCatalog.from_config(load_config(project / "params.yaml"))
    assert len(catalog.videos) == 24 and catalog.sentences(VIDEO)
    sentence = catalog.sentences(VIDEO)[0]
    truth = catalog.truth(VIDEO, sentence)
    models = ModelCache(device="cpu")
    answer = localize(models, "outputs/models/dynamic", catalog.videos[VIDEO], sentence, truth)
    assert answer.ok and answer.result is not None
    assert len(answer.result["spans"]) == 5
    assert re.fullmatch(
        r"\*\*Pathway:\*\* (exploitation|exploration) \(p = [01]\.\d\d\); "
        r"(exploitation|exploration) [01]\.\d\d\.",
        answer.route,
    )
    assert answer.timeline.count('class="dynpath-span"') == 5
    assert "dynpath-truth" in answer.timeline

    fusion = localize(models, "outputs/models/sum_fusion", catalog.videos[VIDEO], sentence)
    assert fusion.ok and "no selector" in fusion.route and "sum_fusion" in fusion.route

    unknown = localize(models, "outputs/models/dynamic", catalog.videos[VIDEO], sentence + " zebra")
    assert unknown.ok and "does not know" in unknown.status and "zebra" in unknown.status
    none = localize(models, "outputs/models/dynamic", catalog.videos[VIDEO], "zebra xylophone")
    assert not none.ok and "is in the model's vocabulary" in none.status
    assert "circle" in none.status  # examples of words it knows

    fake = tmp_path / "holiday.mp4"
    fake.write_text("not a video\n")
    bad = localize(models, "outputs/models/dynamic", fake, sentence)
    assert not bad.ok and "holiday.mp4: cannot open video" in bad.status
    assert str(tmp_path) not in bad.status  # the server's paths stay on the server


# --------------------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def browser(chromium: str) -> Iterator[Any]:  # noqa: F811
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # --no-sandbox: Chromium refuses to start sandboxed as root (CI runs as root)
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    p = browser.new_page(viewport={"width": 1200, "height": 900})
    p.set_default_timeout(60_000)
    p.goto(server)
    p.wait_for_selector("#dynpath-run")
    yield p
    assert "Traceback" not in p.inner_text("body")
    p.close()


def _localize(page: Any, query: str) -> str:
    """Type ``query``, press Localize, return the status line once the server answered."""
    before = page.inner_text("#dynpath-status")
    page.fill("#dynpath-query textarea", query)
    page.click("#dynpath-run")
    # while the request runs the status shows Gradio's timer ("0.4s"): wait for an answer
    page.wait_for_function(
        "(before) => { const t = document.querySelector('#dynpath-status').innerText.trim();"
        " return t !== before && (t.startsWith('Error:') || / spans of /.test(t)); }",
        arg=before.strip(),
    )
    return str(page.inner_text("#dynpath-status"))


def _video_state(page: Any) -> dict[str, Any]:
    return dict(
        page.evaluate(
            "() => { const v = document.querySelector('#dynpath-video video');"
            " return v ? {ready: v.readyState, duration: v.duration,"
            " error: v.error && v.error.code, time: v.currentTime,"
            " stopAt: v.dataset.stopAt || null} : {}; }"
        )
    )


def test_upload_query_spans_and_play(page: Any, project: Path) -> None:
    video = project / "data" / "tiny" / "videos" / f"{VIDEO}.mp4"
    page.locator("#dynpath-video input[type=file]").set_input_files(str(video))
    page.wait_for_selector("#dynpath-video video")
    status = _localize(page, "the blue circle moves up and then shrinks")
    assert status.startswith("5 spans of") and f"{VIDEO}.mp4" in status, status
    bars = page.locator("#dynpath-timeline rect.dynpath-span")
    assert bars.count() == 5
    route = page.inner_text("#dynpath-route")
    assert re.match(r"Pathway: (exploitation|exploration) \(p = [01]\.\d\d\)", route), route

    # the browser decodes the video (H.264 in Chromium) and a row plays its span
    page.wait_for_function(
        "() => { const v = document.querySelector('#dynpath-video video');"
        " return v && v.readyState >= 1; }"
    )
    state = _video_state(page)
    assert state["error"] is None and state["duration"] == pytest.approx(8.125, abs=0.2)
    rows = page.locator("#dynpath-timeline tr.dynpath-row")
    spans = [
        (float(r.get_attribute("data-start")), float(r.get_attribute("data-end")))
        for r in rows.all()
    ]
    latest = max(range(len(spans)), key=lambda i: spans[i][0])  # a seek away from 0 shows
    start, end = spans[latest]
    assert 0.0 < start < end <= 8.2
    row = rows.nth(latest)
    row.click()
    state = _video_state(page)
    assert start - 0.05 <= state["time"] <= end + 0.05, state
    assert float(state["stopAt"]) == pytest.approx(end)
    assert "dynpath-active" in (row.get_attribute("class") or "")
    shot = os.environ.get("DYNPATH_DEMO_SCREENSHOT")
    if shot:
        page.screenshot(path=shot, full_page=True)


def test_bad_files_and_sentences_are_messages(page: Any, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("shopping list\n")
    page.locator("#dynpath-video input[type=file]").set_input_files(str(notes))
    page.get_by_text(re.compile(r"Invalid file type: notes\.txt")).wait_for()
    assert page.locator("#dynpath-video video").count() == 0

    fake = tmp_path / "holiday.mp4"  # passes the page's type check, fails to decode
    fake.write_text("not a video\n")
    page.locator("#dynpath-video input[type=file]").set_input_files(str(fake))
    status = _localize(page, "the blue circle moves up")
    assert status.startswith("Error: holiday.mp4: cannot open video"), status
    assert page.locator("#dynpath-timeline rect").count() == 0
    assert "gradio-cache" not in status

    assert "the sentence is empty" in _localize(page, "   ")
    vocab = _localize(page, "zebra xylophone")  # checked before the broken video is decoded
    assert "none of the words of “zebra xylophone” is in the model's vocabulary" in vocab


def test_listed_video_brings_its_sentences_and_annotated_moment(page: Any) -> None:
    page.click("#dynpath-listed input")
    page.keyboard.type(VIDEO)  # filters the list, which shows its first 100
    page.get_by_role("option", name=VIDEO, exact=True).click()
    page.wait_for_function(
        "() => document.querySelector('#dynpath-query textarea').value.length > 0"
    )
    sentence = page.input_value("#dynpath-query textarea")
    assert sentence in page.inner_text("#dynpath-hint")
    page.click("#dynpath-run")
    page.wait_for_selector("#dynpath-timeline rect.dynpath-truth")
    assert page.locator("#dynpath-timeline rect.dynpath-span").count() == 5
    gt = page.locator("#dynpath-timeline rect.dynpath-truth")
    assert float(gt.get_attribute("data-end")) > float(gt.get_attribute("data-start"))
