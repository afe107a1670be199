"""The Charades-STA-format files the generator writes (annotations, ``charades.json``, a
GloVe-format text file, the meta JSON): the same files every later step reads for real data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np

from dynpath.data.synthetic.grammar import COLOURS, FAMILIES, GRAMMAR_VERSION, SHAPES, vocabulary
from dynpath.data.synthetic.planner import SynthParams, VideoSpec


def annotation_lines(specs: Sequence[VideoSpec], split: str) -> list[str]:
    """Charades-STA lines ``VID start end##sentence`` (1 decimal), video order, event order."""
    out = []
    for spec in specs:
        if spec.split != split:
            continue
        for ev in spec.events:
            if ev.query is not None:
                out.append(f"{spec.vid} {ev.start:.1f} {ev.end:.1f}##{ev.query}")
    return out


def durations_json(specs: Sequence[VideoSpec]) -> dict[str, dict[str, Any]]:
    """The real ``charades.json`` layout; "actions" stays empty (no Charades classes here)."""
    subset = {"train": "training", "test": "testing"}
    return {
        s.vid: {"subset": subset[s.split], "duration": s.duration, "actions": []} for s in specs
    }


def glove_text(dim: int, seed: int) -> str:
    """Seeded GloVe-format vectors for the grammar's words.

    Words of one role (colours, shapes, directions, ...) share a random group direction, so the
    frozen embeddings carry a little of the structure real GloVe vectors have.
    """
    groups = {
        **{w: "colour" for w in COLOURS},
        **{w: "shape" for w in SHAPES},
        **{w: "direction" for w in ("left", "right", "up", "down", "top", "bottom")},
        **{w: "size" for w in ("grows", "shrinks", "big", "small")},
        **{w: "appearance" for w in ("hollow", "striped", "blinks", "spins")},
    }
    rng = np.random.default_rng([seed, 31337])
    names = sorted(set(groups.values()))
    centres = {g: rng.standard_normal(dim).astype(np.float32) for g in names}
    lines = []
    for word in vocabulary():
        vec = rng.standard_normal(dim).astype(np.float32)
        if word in groups:
            vec = 0.6 * centres[groups[word]] + 0.8 * vec
        vec *= 4.0 / max(float(np.linalg.norm(vec)), 1e-6)  # GloVe-like norm
        lines.append(word + " " + " ".join(f"{x:.5f}" for x in vec))
    return "\n".join(lines) + "\n"


def meta_json(params: SynthParams, specs: Sequence[VideoSpec]) -> dict[str, Any]:
    """Ground truth beyond Charades-STA: each query's family and distractor (for analyses)."""
    queries = []
    for spec in specs:
        for ev in spec.events:
            if ev.query is None:
                continue
            partner = spec.events[ev.partner] if ev.partner is not None else None
            queries.append(
                {
                    "vid": spec.vid,
                    "split": spec.split,
                    "start": ev.start,
                    "end": ev.end,
                    "query": ev.query,
                    "family": FAMILIES[ev.kind],
                    "object": spec.objects[ev.obj].name,
                    "actions": list(ev.actions),
                    "distractor": [partner.start, partner.end] if partner else None,
                }
            )
    return {
        "generator": "dynpath.data.synthetic",
        "grammar_version": GRAMMAR_VERSION,
        "params": asdict(params),
        "videos": [asdict(s) for s in specs],
        "queries": queries,
    }


META_FILE = "synthetic_meta.json"


ANNOTATION_FILES = ("charades_sta_train.txt", "charades_sta_test.txt", "charades.json")


def glove_name(dim: int) -> str:
    return f"glove.synthetic.{dim}d.txt"
