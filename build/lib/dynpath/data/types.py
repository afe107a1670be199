"""Records shared by every reader, the dataset and the evaluator.

All readers (Charades-STA, TACoS, JSONL, synthetic) return :class:`Moment` records in SECONDS with
ends already clipped to the video duration, plus a :class:`DataReport` of what they skipped and
changed, so nothing is ever silently kept or dropped.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Moment:
    """One (video, query, ground-truth span) sample."""

    qid: str
    vid: str
    query: str
    start: float  # seconds, >= 0
    end: float  # seconds, > start, <= duration (clipped)
    duration: float  # seconds, > 0
    split: str  # train | val | test

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SkippedLine:
    """A source line that was not turned into a Moment, with why."""

    split: str
    file: str
    line: int  # 1-based line number (or entry index for JSON formats)
    reason: str  # e.g. "start >= end", "unknown video", "unparsable"
    text: str = ""


@dataclass
class DataReport:
    """What a reader saw: counts per split, skipped lines with reasons, clipped ends, duplicates."""

    dataset: str
    lines: dict[str, int] = field(default_factory=dict)  # split -> source lines read
    kept: dict[str, int] = field(default_factory=dict)  # split -> Moments returned
    videos: dict[str, int] = field(default_factory=dict)  # split -> distinct videos
    clipped: dict[str, int] = field(default_factory=dict)  # split -> ends clipped to duration
    duplicates: dict[str, int] = field(default_factory=dict)  # split -> exact duplicates seen
    skipped: list[SkippedLine] = field(default_factory=list)
    # Added by the data layer (backward compatible, all default empty):
    clipped_kept: dict[str, int] = field(default_factory=dict)  # split -> clipped AND kept
    sources: dict[str, str] = field(default_factory=dict)  # split / "durations" -> file read
    carved: dict[str, Any] = field(default_factory=dict)  # how val was carved from train, if so
    notes: list[str] = field(default_factory=list)  # decisions a reader made, in words

    def skipped_by_reason(self, split: str | None = None) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.skipped:
            if split is None or s.split == split:
                out[s.reason] = out.get(s.reason, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
