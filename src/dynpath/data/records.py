"""The strict parsing every annotation reader shares (the rules of :mod:`dynpath.data.annotations`'
docstring): :class:`SplitBuilder` checks each record in the one order and counts it in the
:class:`~dynpath.data.types.DataReport`; the line, JSON, time and duration helpers read a file
the same way whatever its format (every line ending, a UTF-8 BOM allowed, UTF-16 refused; a JSON
time is a number, never ``true`` nor ``"5"``).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dynpath.data.types import DataReport, Moment, SkippedLine
from dynpath.data.vocab import has_words
from dynpath.errors import DataError

log = logging.getLogger("dynpath.data.annotations")  # the readers' warnings, under one name

MAX_LOGGED_SKIPS = 50  # per split; the report keeps them all


class SplitBuilder:
    """Applies the common validation rules to the records of one split file."""

    def __init__(self, report: DataReport, split: str, file: Path) -> None:
        self.report = report
        self.split = split
        self.file = file
        self.moments: list[Moment] = []
        self._seen: set[tuple[str, float, float, str]] = set()
        # qid -> (line, content): a qid names one moment; the same qid with other content would
        # give two predictions under one id (and silently merged metrics)
        self._qids: dict[str, tuple[int, tuple[str, float, float, str]]] = {}
        self._logged = 0
        for counter in (
            report.lines,
            report.kept,
            report.clipped,
            report.clipped_kept,
            report.duplicates,
        ):
            counter.setdefault(split, 0)
        report.sources[split] = str(file)

    def line(self) -> None:
        self.report.lines[self.split] += 1

    def skip(self, line: int, reason: str, text: str) -> None:
        self.report.skipped.append(SkippedLine(self.split, str(self.file), line, reason, text))
        self._logged += 1
        if self._logged <= MAX_LOGGED_SKIPS:
            log.warning("%s:%d: skipped (%s): %s", self.file, line, reason, text[:200])
        elif self._logged == MAX_LOGGED_SKIPS + 1:
            log.warning("%s: more skipped lines not logged; see the data report", self.file)

    def add(
        self,
        *,
        line: int,
        text: str,
        qid: str,
        vid: str,
        query: str,
        start: float,
        end: float,
        duration: float | None,
        known_video: bool,
    ) -> None:
        """Validate one parsed record (see the module docstring for the order) and keep it."""
        content = (vid, start, end, query.strip())
        first = self._qids.setdefault(qid, (line, content))
        if math.isfinite(start) and math.isfinite(end) and first[1] != content:
            raise DataError(
                f"{self.file}:{line}: qid {qid!r} was already used on line {first[0]} for a "
                "different moment (video, times or query); qids must be unique, fix the file"
            )
        if not (math.isfinite(start) and math.isfinite(end)):
            return self.skip(line, "unparsable", text)
        query = query.strip()
        if not has_words(query):
            return self.skip(line, "empty query", text)
        if not known_video:
            return self.skip(line, "unknown video", text)
        if duration is None:
            return self.skip(line, "missing duration", text)
        if not math.isfinite(duration) or duration <= 0:
            return self.skip(line, "invalid duration", text)
        if start < 0:
            return self.skip(line, "negative start", text)
        clipped = end > duration
        if clipped:
            self.report.clipped[self.split] += 1
            end = duration
        if start >= end:
            return self.skip(line, "start >= end", text)
        key = (vid, start, end, query)
        if key in self._seen:
            self.report.duplicates[self.split] += 1
            return None
        self._seen.add(key)
        if clipped:
            self.report.clipped_kept[self.split] += 1
        self.moments.append(Moment(qid, vid, query, start, end, duration, self.split))
        return None

    def finish(self) -> list[Moment]:
        self.report.kept[self.split] = len(self.moments)
        self.report.videos[self.split] = len({m.vid for m in self.moments})
        return self.moments


_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def read_lines(path: Path) -> Iterator[tuple[int, str | None, bytes]]:
    """(1-based line number, text or None when not UTF-8, raw bytes); blank lines omitted.

    Every line ending counts (``\\n``, ``\\r\\n`` and the old Mac ``\\r``: a file saved with
    CR-only endings is many records, not one), and a UTF-8 byte-order mark is not part of the
    first record. A UTF-16 file (its BOM) is refused whole: read as UTF-8 every line would be
    skipped as unparsable."""
    data = path.read_bytes()
    if data.startswith(_UTF16_BOMS):
        raise DataError(f"{path}: UTF-16 text (byte-order mark); re-save the file as UTF-8")
    data = data.removeprefix(_UTF8_BOM)
    for number, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            yield number, raw.decode("utf-8"), raw
        except UnicodeDecodeError:
            yield number, None, raw


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(f"{path}: {what} not found")
    return path


def load_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as fh:  # a UTF-8 byte-order mark is allowed
            return json.load(fh)
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 ({err})") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from None


def json_time(value: Any) -> float:
    """A time (seconds or frames) of a JSON record: a JSON number, never a bool (``true`` is
    not 1.0) nor a quoted string; anything else raises ValueError (the line is "unparsable")."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def as_duration(value: Any) -> float | None:
    """A duration value as float, or None when absent / not a number (reported, not guessed)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
