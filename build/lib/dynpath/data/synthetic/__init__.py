"""The embedded synthetic benchmark: procedurally animated videos with Charades-STA annotations.

Why it exists: ``dvc repro`` on a fresh machine must run the WHOLE chain (decode video -> features
-> vocab -> train -> evaluate -> report) with no download. So this module writes real mp4 files
(H.264 through PyAV), ``charades_sta_{train,test}.txt``, ``charades.json`` and a GloVe-format text
file, and every later step reads them exactly as it reads the real Charades-STA.

The grammar (documented in docs/synthetic.md) mirrors the paper's two kinds of actions:

* exploitation-type ("ordered"): an object performs two sub-actions in a given order, e.g.
  "the red circle moves left and then grows". Its distractor is the SAME object performing the
  same two sub-actions in the OTHER order elsewhere in the video, so temporal order is needed.
* exploration-type ("posture"): an object holds a static state, e.g. "the blue square rests in
  the top left corner". Its distractor is the same posture held by ANOTHER object elsewhere.

Each pair of events is queried both ways (each event is the target of one query and the distractor
of the other), so no annotation is wasted. Events come one at a time (they never overlap: a clip
feature then shows one action), in a random order with randomly cut free time between them,
independently of the text; query texts recur across videos at different positions. A model that
reads only the query cannot beat the prior of span positions and lengths.

The visual signal is deliberately coarse (large saturated shapes on a plain background, fast
motion, instant onset/offset), because features later come from a 3D-CNN with RANDOM weights.

Determinism: a video's plan depends only on ``(seed, index)`` and the sizes; rendering is pure
numpy on that plan; x264 runs single-threaded. The same seed gives byte-identical annotations and
identical decoded frames.

Layout: ``grammar`` (vocabulary, templates, constants), ``planner`` (plans), ``render``
(frames, mp4), ``writers`` (annotation, GloVe and meta files); this module re-exports their
public names and runs :func:`generate` (plan -> render in worker processes -> write).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from tqdm import tqdm

from dynpath.data.synthetic.grammar import (
    BACKGROUND,
    BLINK_PERIOD,
    COLOURS,
    CORNER,
    FAMILIES,
    GRAMMAR_VERSION,
    GROW_FACTOR,
    HOME_RING,
    MIN_CLIPS,
    MIN_GAP,
    MIN_TRAVEL,
    MOMENT_FRACTION,
    MOVE_SPEED,
    MOVE_TO,
    OBJECT_RADIUS,
    ORDERED_TEMPLATES,
    POSTURE_SCALE,
    POSTURE_TEMPLATES,
    POSTURES,
    SHAPES,
    SHRINK_FACTOR,
    SLACK,
    SPIN_SPEED,
    SUB_ACTIONS,
    vocabulary,
)
from dynpath.data.synthetic.planner import (
    VID_PATTERN,
    EventSpec,
    ObjectSpec,
    SynthParams,
    VideoSpec,
    plan_dataset,
    plan_video,
    test_count,
    video_ids,
)

# Private helpers the tests reach through this package (generate() looks _render_one up here, so
# a test can replace it).
from dynpath.data.synthetic.planner import _moves_ok as _moves_ok
from dynpath.data.synthetic.render import _render_one as _render_one
from dynpath.data.synthetic.render import decode_video, encode_video, render_video
from dynpath.data.synthetic.writers import (
    ANNOTATION_FILES,
    META_FILE,
    annotation_lines,
    durations_json,
    glove_name,
    glove_text,
    meta_json,
)
from dynpath.errors import DataError
from dynpath.io import write_json, write_text

__all__ = [
    "ANNOTATION_FILES",
    "BACKGROUND",
    "BLINK_PERIOD",
    "COLOURS",
    "CORNER",
    "FAMILIES",
    "GRAMMAR_VERSION",
    "GROW_FACTOR",
    "HOME_RING",
    "META_FILE",
    "MIN_CLIPS",
    "MIN_GAP",
    "MIN_TRAVEL",
    "MOMENT_FRACTION",
    "MOVE_SPEED",
    "MOVE_TO",
    "OBJECT_RADIUS",
    "ORDERED_TEMPLATES",
    "POSTURES",
    "POSTURE_SCALE",
    "POSTURE_TEMPLATES",
    "SHAPES",
    "SHRINK_FACTOR",
    "SLACK",
    "SPIN_SPEED",
    "SUB_ACTIONS",
    "VID_PATTERN",
    "EventSpec",
    "ObjectSpec",
    "SynthParams",
    "VideoSpec",
    "annotation_lines",
    "decode_video",
    "durations_json",
    "encode_video",
    "generate",
    "glove_name",
    "glove_text",
    "meta_json",
    "plan_dataset",
    "plan_video",
    "render_video",
    "test_count",
    "video_ids",
    "vocabulary",
]


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to overwrite a real dataset: only a directory this generator wrote is reused."""
    if any((out_dir / f).exists() for f in ANNOTATION_FILES) and not (out_dir / META_FILE).exists():
        raise DataError(
            f"{out_dir}: holds Charades-STA files not written by `dynpath synth` (no {META_FILE}); "
            "choose another --out or remove them"
        )


def _workers(requested: int | None) -> int:
    if requested is not None:
        return max(1, requested)
    env = os.environ.get("DYNPATH_SYNTH_WORKERS")
    if env:
        return max(1, int(env))
    return max(1, min(8, len(os.sched_getaffinity(0))))


def generate(
    params: SynthParams, out_dir: Path, workers: int | None = None, progress: bool = True
) -> dict[str, Any]:
    """Write the whole dataset under ``out_dir``; annotations land last, each atomically.

    A killed run leaves, at worst, complete videos and the previous annotation files (or none):
    never a half-written annotation file nor a truncated mp4.
    """
    t0 = time.perf_counter()
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    specs = plan_dataset(params)
    videos = out_dir / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    wanted = {f"{s.vid}.mp4" for s in specs}
    for stale in sorted(videos.iterdir()):  # a previous, larger run's videos would be extracted
        if VID_PATTERN.match(stale.name) and stale.name not in wanted:
            stale.unlink()
    jobs = [(s, str(videos / f"{s.vid}.mp4")) for s in specs]
    n_workers = min(_workers(workers), len(jobs))
    frames = 0
    # disable=None: drawn on a terminal only (a log file would get one line per redraw)
    bar = tqdm(
        total=len(jobs), desc="synth videos", unit="video", disable=None if progress else True
    )
    try:
        results: Iterator[tuple[str, int]]
        if n_workers == 1:
            results = map(_render_one, jobs)
            for _, n in results:
                frames += n
                bar.update()
        else:
            with ProcessPoolExecutor(max_workers=n_workers) as pool:
                for _, n in pool.map(_render_one, jobs, chunksize=4):
                    frames += n
                    bar.update()
    finally:
        bar.close()
    write_text(
        out_dir / glove_name(params.embedding_dim), glove_text(params.embedding_dim, params.seed)
    )
    write_json(out_dir / META_FILE, meta_json(params, specs))
    write_json(out_dir / "charades.json", durations_json(specs))
    counts: dict[str, Any] = {}
    for split in ("train", "test"):
        lines = annotation_lines(specs, split)
        write_text(out_dir / f"charades_sta_{split}.txt", "\n".join(lines) + "\n")
        counts[f"{split}_queries"] = len(lines)
        counts[f"{split}_videos"] = sum(s.split == split for s in specs)
    families: dict[str, int] = {}
    for s in specs:
        for ev in s.events:
            if ev.query is not None:
                families[FAMILIES[ev.kind]] = families.get(FAMILIES[ev.kind], 0) + 1
    return {
        "out_dir": str(out_dir),
        "videos": len(specs),
        **counts,
        "families": families,
        "frames": frames,
        "vocabulary": len(vocabulary()),
        "workers": n_workers,
        "seconds": round(time.perf_counter() - t0, 2),
    }
