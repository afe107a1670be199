"""`dynpath demo`: a local web page to try a trained localizer on a video and a sentence.

The ecosystem's usual way to try a moment-retrieval model is a small web page (Lighthouse ships a
Gradio one); this is dynpath's. The page takes

- a model URI, loaded by :meth:`Localizer.load` exactly as ``dynpath localize --model`` loads it
  (a training directory such as ``outputs/models/dynamic``, ``models:/NAME@ALIAS``, ``runs:/...``);
- a video: uploaded, or picked from the configured data (``data.videos`` of params.yaml: the
  synthetic default's generated videos after ``make run``), whose annotated sentences are offered
  as examples;
- a sentence,

and shows the top-5 spans on a timeline under the video (with the annotated moment when the
sentence is one of the picked video's annotations), plays the video from a span when its bar or
row is clicked (and pauses at the span's end), and says which pathway the selector chose and with
what probability; models without a selector (the fusion variants) say so.

Every error a user can cause (an unreadable or non-video file, an empty sentence, a sentence none
of whose words the model knows, a bad model URI) is a message on the page; anything unexpected is
logged with its traceback on the server and shown as one line, never as a stack trace.

The logic is plain functions (:func:`localize`, :func:`timeline_html`, :func:`route_text`,
:class:`ModelCache`) tested without a browser; :func:`build_app` only wires them into Gradio, which
is an optional extra (``pip install 'dynpath[demo]'``) imported when the page is built. The server
binds 127.0.0.1 unless told otherwise: the page runs models on files a visitor uploads.
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import re
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dynpath.errors import DynpathError, UsageError

if TYPE_CHECKING:
    from dynpath.config import Config
    from dynpath.data.types import Moment
    from dynpath.inference.localizer import Localizer

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MODEL = "outputs/models/dynamic"
TOPK = 5
MAX_FILE_SIZE = "500mb"  # uploads above this are refused by Gradio with a message
VIDEO_ELEM_ID = "dynpath-video"
# Lane colours: the best span stands out, the others fade with rank; the annotation is green.
_RANK_COLOURS = ("#d62728", "#ff7f0e", "#1f77b4", "#9467bd", "#7f7f7f")
_TRUTH_COLOUR = "#2ca02c"

# Clicking a bar or a row of the timeline seeks the player above it to the span's start, plays,
# and pauses at the span's end. Delegated to the component's root, so it survives re-renders.
TIMELINE_JS = f"""
element.addEventListener('click', (ev) => {{
  const hit = ev.target.closest('[data-start]');
  if (!hit) return;
  const video = document.querySelector('#{VIDEO_ELEM_ID} video');
  if (!video) return;
  const start = parseFloat(hit.dataset.start), end = parseFloat(hit.dataset.end);
  video.dataset.stopAt = String(end);
  if (!video.dataset.dynpathBound) {{
    video.dataset.dynpathBound = '1';
    video.addEventListener('timeupdate', () => {{
      const stop = parseFloat(video.dataset.stopAt || 'NaN');
      if (video.currentTime >= stop) {{ video.pause(); delete video.dataset.stopAt; }}
    }});
  }}
  video.currentTime = start;
  video.play().catch(() => {{}});
  element.querySelectorAll('[data-rank]').forEach((n) => {{
    n.classList.toggle('dynpath-active', n.dataset.rank === hit.dataset.rank);
  }});
}});
"""

TIMELINE_CSS = """
.dynpath-timeline svg { width: 100%; height: auto; display: block; }
.dynpath-timeline [data-start] { cursor: pointer; }
.dynpath-timeline table { width: 100%; border-collapse: collapse; font-size: 0.9em; }
.dynpath-timeline td, .dynpath-timeline th { padding: 2px 6px; text-align: right; }
.dynpath-timeline tr.dynpath-active { background: #fff3c4; }
.dynpath-timeline rect.dynpath-active { stroke: #000; stroke-width: 2; }
"""


# --------------------------------------------------------------------------- models


class ModelCache:
    """Loaded localizers by URI: the first query on a model pays the load, later ones do not.

    ``predict`` is thread-safe (see :mod:`dynpath.inference.localizer`), so one instance serves
    every visitor; the lock only keeps two first requests from loading the same model twice.
    A ``models:/NAME@ALIAS`` is resolved once per server: restart it after moving the alias.
    """

    def __init__(self, device: str = "auto", loader: Callable[..., Localizer] | None = None):
        self.device = device
        self._loader = loader
        self._models: dict[str, Localizer] = {}
        self._lock = threading.Lock()

    def get(self, uri: str) -> Localizer:
        uri = uri.strip()
        if not uri:
            raise DynpathError(
                "no model given: enter a training directory (outputs/models/dynamic) "
                "or a registry URI (models:/NAME@ALIAS)"
            )
        with self._lock:
            if uri not in self._models:
                loader = self._loader
                if loader is None:
                    from dynpath.inference.localizer import Localizer

                    loader = Localizer.load
                self._models[uri] = loader(uri, device=self.device)
            return self._models[uri]


# --------------------------------------------------------------------------- listed videos


@dataclass
class VideoCatalog:
    """The configured data's videos (``data.videos``) and their annotated moments by video id.

    Optional in every way: without params.yaml, videos or readable annotations the page still
    works with uploads; ``note`` says why nothing is listed.
    """

    videos: dict[str, Path] = field(default_factory=dict)
    moments: dict[str, list[Moment]] = field(default_factory=dict)
    note: str = ""

    @classmethod
    def from_config(cls, cfg: Config | None, videos_dir: Path | None = None) -> VideoCatalog:
        from dynpath.extract.video import list_videos

        directory = videos_dir or (Path(cfg.data.videos) if cfg is not None else None)
        if directory is None:
            return cls(note="no params.yaml: upload a video")
        try:
            videos = {p.stem: p.resolve() for p in list_videos(directory)}
        except DynpathError as err:
            return cls(note=f"{err} (upload a video, or run `make run` for the synthetic data)")
        moments: dict[str, list[Moment]] = {}
        if cfg is not None:
            try:
                from dynpath.data.annotations import read_dataset

                splits, _ = read_dataset(cfg.data.dataset, cfg.data.root)
                for ms in splits.values():
                    for m in ms:
                        moments.setdefault(m.vid, []).append(m)
            except (DynpathError, OSError) as err:  # annotations are hints only
                log.info("no annotated sentences for the listed videos: %s", err)
        note = "" if videos else f"{directory}: no videos"
        return cls(videos=videos, moments=moments, note=note)

    def sentences(self, vid: str) -> list[str]:
        """The annotated sentences of a listed video, in file order, without repeats."""
        return list(dict.fromkeys(m.query for m in self.moments.get(vid, [])))

    def truth(self, vid: str | None, query: str) -> tuple[float, float] | None:
        """The annotated moment of ``query`` in listed video ``vid`` (words compared as
        lower-case tokens), or None."""
        if not vid:
            return None
        key = _words(query)
        for m in self.moments.get(vid, []):
            if _words(m.query) == key:
                return m.start, m.end
        return None


def _words(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"[a-z0-9']+", text.lower()))


# --------------------------------------------------------------------------- one query


@dataclass
class Answer:
    """What the page shows for one request: a status line, the route line, the timeline."""

    ok: bool
    status: str
    route: str = ""
    timeline: str = ""
    result: dict[str, Any] | None = None


def localize(
    models: ModelCache,
    model_uri: str,
    video: str | Path | None,
    query: str,
    truth: tuple[float, float] | None = None,
    topk: int = TOPK,
) -> Answer:
    """Run one query for the page; every failure becomes an :class:`Answer` with a message."""
    query = (query or "").strip()
    if not query:
        return Answer(False, "**Error:** the sentence is empty: type what happens in the video.")
    if video is None or not str(video):
        return Answer(False, "**Error:** no video: upload one or pick one from the list.")
    path = Path(video)
    try:
        loc = models.get(model_uri)
    except DynpathError as err:
        return Answer(False, f"**Error:** cannot load model `{model_uri.strip()}`: {_md(err)}")
    except Exception as err:  # a bug or an unforeseen library error: logged, one line shown
        log.exception("loading model %s", model_uri)
        return Answer(False, f"**Error:** cannot load model: {_unexpected(err)}")
    tokens = list(dict.fromkeys(loc.vocab.tokenize(query)))
    unknown = [w for w in tokens if w not in loc.vocab]
    if tokens and len(unknown) == len(tokens):  # answered before the video is decoded
        known = sorted(w for w in loc.vocab.words if w.isalpha() and len(w) >= 4)[:12]
        return Answer(
            False,
            f"**Error:** none of the words of “{_md(query[:80])}” is in the model's vocabulary "
            f"({len(loc.vocab)} words, e.g. {_md(', '.join(known))}): rephrase it.",
        )
    try:
        result = loc.predict(video=path, query=query, topk=topk)
    except DynpathError as err:
        text = str(err).replace(str(path), path.name)  # not the server's temp path
        return Answer(False, f"**Error:** {_md(text)}")
    except Exception as err:
        log.exception("localizing %r in %s", query, path)
        return Answer(False, f"**Error:** {_unexpected(err)}")
    status = (
        f"{len(result['spans'])} spans of **{_md(query)}** in `{path.name}` "
        f"({result['duration']:.2f} s), model `{loc.variant}`."
    )
    if unknown:
        status += f" Words the model does not know (read as unknown): {_md(', '.join(unknown))}."
    return Answer(
        True,
        status,
        route=route_text(result),
        timeline=timeline_html(result, truth),
        result=result,
    )


def route_text(result: Mapping[str, Any]) -> str:
    """Which pathway the selector chose and its probability; models without one say so."""
    route = result.get("route")
    if route is None:
        return (
            f"**Pathway:** none: model `{result.get('variant', '?')}` has no selector "
            "(every query takes the same path)."
        )
    probs = result.get("route_probs") or {}
    chosen = f"**Pathway:** {route}"
    if route in probs:
        chosen += f" (p = {float(probs[route]):.2f})"
    others = [f"{name} {float(p):.2f}" for name, p in probs.items() if name != route]
    if others:
        chosen += f"; {', '.join(others)}"
    return chosen + "."


def timeline_html(result: Mapping[str, Any], truth: tuple[float, float] | None = None) -> str:
    """An SVG timeline of the ranked spans (one lane each, best on top) and a table of them.

    Bars and rows carry ``data-start``/``data-end`` (seconds): the page's script plays the
    video from there. The annotated moment, when known, is drawn in its own lane at the bottom.
    """
    duration = float(result["duration"])
    spans = list(result["spans"])
    width, left, right, lane, top = 640.0, 34.0, 14.0, 22.0, 8.0
    usable = width - left - right

    def x(t: float) -> float:
        return left + usable * min(max(t / duration, 0.0), 1.0) if duration > 0 else left

    lanes = len(spans) + (1 if truth else 0)
    axis_y = top + lane * lanes + 6
    height = axis_y + 24
    parts = [
        f'<svg viewBox="0 0 {width:.0f} {height:.0f}" role="img" '
        f'aria-label="top {len(spans)} spans on a timeline of {duration:.1f} s">'
    ]
    for i, span in enumerate(spans):
        y = top + lane * i
        colour = _RANK_COLOURS[min(i, len(_RANK_COLOURS) - 1)]
        start, end = float(span["start"]), float(span["end"])
        parts.append(
            f'<text x="{left - 6:.0f}" y="{y + 15:.1f}" text-anchor="end" font-size="13">'
            f"#{i + 1}</text>"
            f'<rect class="dynpath-span" data-rank="{i + 1}" data-start="{start:.3f}" '
            f'data-end="{end:.3f}" x="{x(start):.1f}" y="{y + 2:.1f}" '
            f'width="{max(x(end) - x(start), 2.0):.1f}" height="{lane - 6:.1f}" rx="3" '
            f'fill="{colour}" fill-opacity="{1.0 - 0.12 * i:.2f}">'
            f"<title>#{i + 1}: {start:.2f}-{end:.2f} s, score {float(span['score']):.3f}"
            "</title></rect>"
        )
    if truth:
        y = top + lane * len(spans)
        s, e = truth
        parts.append(
            f'<text x="{left - 6:.0f}" y="{y + 15:.1f}" text-anchor="end" font-size="11">GT</text>'
            f'<rect class="dynpath-truth" data-rank="gt" data-start="{s:.3f}" data-end="{e:.3f}" '
            f'x="{x(s):.1f}" y="{y + 2:.1f}" width="{max(x(e) - x(s), 2.0):.1f}" '
            f'height="{lane - 6:.1f}" rx="3" fill="{_TRUTH_COLOUR}">'
            f"<title>annotated moment: {s:.2f}-{e:.2f} s</title></rect>"
        )
    parts.append(
        f'<line x1="{left:.0f}" y1="{axis_y:.1f}" x2="{width - right:.0f}" y2="{axis_y:.1f}" '
        'stroke="#444"/>'
    )
    for tick in _ticks(duration):
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{axis_y:.1f}" x2="{x(tick):.1f}" '
            f'y2="{axis_y + 5:.1f}" stroke="#444"/>'
            f'<text x="{x(tick):.1f}" y="{axis_y + 18:.1f}" text-anchor="middle" '
            f'font-size="12">{tick:g} s</text>'
        )
    parts.append("</svg>")
    caption = html.escape(str(result.get("query", "")))
    return (
        f'<div class="dynpath-timeline"><div class="dynpath-query">{caption}</div>'
        + "".join(parts)
        + _spans_table(spans, truth)
        + "</div>"
    )


def _spans_table(spans: list[Any], truth: tuple[float, float] | None) -> str:
    """The table under the timeline: one row per span (and the annotated moment), each with
    ``data-start``/``data-end`` so that a click plays it."""
    rows = [
        "<table><thead><tr><th>#</th><th>start (s)</th><th>end (s)</th><th>score</th>"
        "<th></th></tr></thead><tbody>"
    ]
    for i, span in enumerate(spans):
        start, end = float(span["start"]), float(span["end"])
        rows.append(
            f'<tr class="dynpath-row" data-rank="{i + 1}" data-start="{start:.3f}" '
            f'data-end="{end:.3f}"><td>{i + 1}</td><td>{start:.2f}</td><td>{end:.2f}</td>'
            f"<td>{float(span['score']):.4f}</td><td>&#9654; play</td></tr>"
        )
    if truth:
        rows.append(
            f'<tr class="dynpath-row" data-rank="gt" data-start="{truth[0]:.3f}" '
            f'data-end="{truth[1]:.3f}"><td>GT</td><td>{truth[0]:.2f}</td>'
            f"<td>{truth[1]:.2f}</td><td>annotated</td><td>&#9654; play</td></tr>"
        )
    rows.append("</tbody></table>")
    return "".join(rows)


def _ticks(duration: float) -> list[float]:
    """About six round tick positions from 0 to ``duration`` seconds."""
    if duration <= 0:
        return [0.0]
    step = next(
        (s for s in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600) if duration / s <= 8), 1200
    )
    n = int(duration // step)
    return [round(k * step, 3) for k in range(n + 1)]


def _md(text: object) -> str:
    """User text inside the page's Markdown: HTML escaped, Markdown markers neutralised."""
    return re.sub(r"([\\`*_\[\]<>#|])", r"\\\1", str(text))


def _unexpected(err: BaseException) -> str:
    first = (str(err).splitlines() or [""])[0][:300]
    return f"unexpected {type(err).__name__}: {_md(first)} (details in the server log)"


# --------------------------------------------------------------------------- the page


def _import_gradio() -> Any:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # a local tool phones no one
    try:
        import gradio as gr
    except ImportError:
        raise DynpathError(
            "the demo page needs Gradio, an optional extra: "
            "pip install -c constraints.txt -e '.[demo]' (make setup installs it)"
        ) from None
    return gr


def build_app(
    model: str = DEFAULT_MODEL,
    catalog: VideoCatalog | None = None,
    models: ModelCache | None = None,
) -> Any:
    """The Gradio Blocks of the page (not launched): :func:`serve` launches it."""
    gr = _import_gradio()
    catalog = catalog or VideoCatalog()
    models = models or ModelCache()
    listed = sorted(catalog.videos)

    def pick(vid: str | None) -> tuple[Any, str | None, Any, str]:
        if not vid or vid not in catalog.videos:
            return gr.update(), None, gr.update(), ""
        sentences = catalog.sentences(vid)
        hint = (
            "Annotated sentences of this video: " + "; ".join(f"*{_md(s)}*" for s in sentences[:8])
            if sentences
            else "This video has no annotated sentence."
        )
        query = gr.update(value=sentences[0]) if sentences else gr.update()
        return str(catalog.videos[vid]), vid, query, hint

    def run(model_uri: str, video: str | None, query: str, vid: str | None) -> tuple[str, ...]:
        answer = localize(models, model_uri, video, query, catalog.truth(vid, query or ""))
        return answer.status, answer.route, answer.timeline

    with gr.Blocks(title="dynpath demo", analytics_enabled=False) as app:
        gr.Markdown(
            "## dynpath: find the moment a sentence describes\n"
            "Upload a video (or pick one of the configured data), type a sentence, press "
            "**Localize**. Click a span to play it."
        )
        listed_vid = gr.State(None)
        with gr.Row():
            with gr.Column(scale=3):
                video = gr.Video(
                    label="Video",
                    sources=["upload"],
                    elem_id=VIDEO_ELEM_ID,
                    include_audio=True,
                    height=360,
                )
                timeline = gr.HTML("", elem_id="dynpath-timeline", js_on_load=TIMELINE_JS)
            with gr.Column(scale=2):
                model_box = gr.Textbox(
                    value=model,
                    label="Model",
                    info="training directory, models:/NAME@ALIAS or runs:/ID/model",
                    elem_id="dynpath-model",
                )
                chooser = gr.Dropdown(
                    choices=listed,
                    value=None,
                    label="Or pick a video of the configured data",
                    info=catalog.note or f"{len(listed)} videos (data.videos)",
                    interactive=bool(listed),
                    elem_id="dynpath-listed",
                )
                query = gr.Textbox(
                    label="Sentence",
                    placeholder="e.g. the red circle moves left and then grows",
                    elem_id="dynpath-query",
                )
                hint = gr.Markdown("", elem_id="dynpath-hint")
                button = gr.Button("Localize", variant="primary", elem_id="dynpath-run")
                status = gr.Markdown("", elem_id="dynpath-status")
                route = gr.Markdown("", elem_id="dynpath-route")

        chooser.change(pick, inputs=chooser, outputs=[video, listed_vid, query, hint])
        # an upload replaces the listed video: its annotations no longer apply
        video.upload(lambda: (None, ""), outputs=[listed_vid, hint])
        outputs = [status, route, timeline]
        button.click(run, inputs=[model_box, video, query, listed_vid], outputs=outputs)
        query.submit(run, inputs=[model_box, video, query, listed_vid], outputs=outputs)
    return app


def serve(
    model: str = DEFAULT_MODEL,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    cfg: Config | None = None,
    videos_dir: Path | None = None,
    device: str = "auto",
) -> None:
    """Build the page and serve it until interrupted (Ctrl-C or SIGTERM).

    The device and the host are checked before anything starts (a device this machine lacks
    would otherwise fail every query, and an address it cannot bind was blamed on the port).
    SIGTERM ends the page as Ctrl-C does, so that the models downloaded into temporary
    directories (``runs:/``, ``models:/NAME/Stage``) are removed at exit, as after Ctrl-C.
    """
    from dynpath.config import ConfigError, check_device

    try:
        check_device(device, "--device")
    except ConfigError as err:
        raise UsageError(str(err)) from None
    check_host(host)
    if not 0 <= port <= 65535:
        raise DynpathError(f"--port {port}: not a TCP port (0-65535)")
    gr = _import_gradio()
    catalog = VideoCatalog.from_config(cfg, videos_dir)
    app = build_app(model, catalog, ModelCache(device))
    # System fonts: Gradio's default theme fetches web fonts from the internet.
    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "monospace"],
    )
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("demo: bound to %s: other machines can reach the page and upload files", host)
    # the listed videos are served to the player; nothing else outside Gradio's upload cache
    allowed = sorted({str(p.parent) for p in catalog.videos.values()})
    log.info(
        "demo on http://%s:%d (model %s, %d listed videos)", host, port, model, len(catalog.videos)
    )
    try:
        with _sigterm_as_interrupt():
            _launch(app, host, port, allowed, theme)
    except _Interrupted:
        # SIGTERM during Gradio's start-up (its own url check), before its serve loop, which
        # handles the interrupt itself: end as it would, without a traceback
        log.info("demo: stopped by SIGTERM while starting")
    except OSError as err:  # port taken
        reason = str(err).split(". ")[0]  # Gradio's own advice names its env variables
        raise DynpathError(
            f"cannot serve on {host}:{port}: {reason}; pick another --port"
        ) from None


def check_host(host: str) -> None:
    """Refuse, naming ``--host``, an address that is not one (``999.1.1.1``), a name that does
    not resolve, or an address that is not this machine's (it cannot be bound)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise UsageError(
            f"--host {host!r}: not an IP address nor a host name this machine resolves ({reason})"
        ) from None
    family, kind, _, _, address = infos[0]
    with socket.socket(family, kind) as probe:
        try:
            probe.bind((address[0], 0))
        except OSError as err:
            raise UsageError(
                f"--host {host}: not an address of this machine ({err.strerror}); use 127.0.0.1 "
                "(this machine only) or 0.0.0.0 (every interface)"
            ) from None


class _Interrupted(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C (Gradio's launch loop closes the server on either)."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt in the main thread while the page is served: the
    default action would end the process without running its exit handlers, leaving every
    downloaded model in TMPDIR (measured: one ``dynpath-model-*`` directory per model)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(sig: int, frame: Any) -> None:
        raise _Interrupted()

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _launch(app: Any, host: str, port: int, allowed: list[str], theme: Any) -> None:
    app.queue(default_concurrency_limit=2).launch(
        server_name=host,
        server_port=port,
        allowed_paths=allowed,
        max_file_size=MAX_FILE_SIZE,
        theme=theme,
        css=TIMELINE_CSS,
        ssr_mode=False,
        show_error=False,
        quiet=False,
    )
