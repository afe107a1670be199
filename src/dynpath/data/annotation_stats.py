"""Statistics of an annotation set as its files define it (``dynpath data-stats``, the data
stage's report): counts per split and skip reason, and the distributions of query lengths,
moment lengths and video durations.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dynpath.data.annotations import read_dataset
from dynpath.data.vocab import tokenize


def _describe(values: list[float]) -> dict[str, float]:
    import pandas as pd

    if not values:
        return {}
    d = pd.Series(values, dtype="float64").describe(percentiles=[0.5])
    return {
        "mean": round(float(d["mean"]), 4),
        "std": round(float(d["std"]), 4) if len(values) > 1 else 0.0,
        "min": round(float(d["min"]), 4),
        "median": round(float(d["50%"]), 4),
        "max": round(float(d["max"]), 4),
    }


def data_stats(dataset: str, root: Path) -> dict[str, Any]:
    """JSON-able report of an annotation set as its files define it (no carving)."""
    t0 = time.perf_counter()
    splits, report = read_dataset(dataset, root)
    seconds = time.perf_counter() - t0
    out: dict[str, Any] = {
        "dataset": dataset,
        "root": str(root),
        "parse_seconds": round(seconds, 4),
        "sources": report.sources,
        "notes": report.notes,
        "splits": {},
    }
    for split, moments in splits.items():
        video_durations = {m.vid: m.duration for m in moments}
        out["splits"][split] = {
            "lines": report.lines.get(split, 0),
            "kept": report.kept.get(split, 0),
            "skipped": report.skipped_by_reason(split),
            "skipped_total": sum(report.skipped_by_reason(split).values()),
            "clipped": report.clipped.get(split, 0),
            "clipped_kept": report.clipped_kept.get(split, 0),
            "duplicates": report.duplicates.get(split, 0),
            "videos": report.videos.get(split, 0),
            "query_words": _describe([float(len(tokenize(m.query))) for m in moments]),
            "moment_seconds": _describe([m.end - m.start for m in moments]),
            "moment_fraction": _describe([(m.end - m.start) / m.duration for m in moments]),
            "video_seconds": _describe(list(video_durations.values())),
        }
    out["skipped_lines"] = [
        {"split": s.split, "file": s.file, "line": s.line, "reason": s.reason, "text": s.text}
        for s in report.skipped[:200]
    ]
    return out


def format_report(d: dict[str, Any]) -> str:
    """Human-readable text of :func:`data_stats` (a counts table, then the distributions)."""
    import pandas as pd

    rows = []
    for split, s in d["splits"].items():
        rows.append(
            {
                "split": split,
                "lines": s["lines"],
                "kept": s["kept"],
                "skipped": s["skipped_total"],
                "clipped": s["clipped"],
                "duplicates": s["duplicates"],
                "videos": s["videos"],
                "words/query": s["query_words"].get("mean", float("nan")),
                "moment s": s["moment_seconds"].get("mean", float("nan")),
                "video s": s["video_seconds"].get("mean", float("nan")),
            }
        )
    table = pd.DataFrame(rows).set_index("split")
    lines = [
        f"dataset {d['dataset']} at {d['root']} (parsed in {d['parse_seconds']:.2f} s)",
        table.to_string(float_format=lambda x: f"{x:.2f}"),
    ]
    for split, s in d["splits"].items():
        if s["skipped"]:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(s["skipped"].items()))
            lines.append(f"{split} skipped by reason: {reasons}")
    for entry in d.get("skipped_lines", [])[:20]:
        lines.append(f"  {entry['file']}:{entry['line']} ({entry['reason']}) {entry['text'][:80]}")
    lines.extend(d.get("notes", []))
    lines.append(
        "clipped = ends beyond the video duration cut to it (counted as read, incl. lines then "
        "skipped); mean values shown, --json for the full distributions"
    )
    return "\n".join(lines)
