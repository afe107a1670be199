"""Score a predictions file against a dataset's annotations (``dynpath score``).

Two formats, told apart per line (a file may not mix them):

- dynpath's ``predictions.jsonl`` (``dynpath evaluate``): ``{"qid", "vid", "query", "topk":
  [[start, end, score], ...], ...}``;
- the common external format Moment-DETR and Lighthouse write: ``{"qid", "query", "vid",
  "pred_relevant_windows": [[start, end, score], ...]}``.

Spans are in seconds, best first, in the order the file gives them (as both tools write them;
nothing is re-sorted by score). A line is matched to the annotations by its ``qid`` (a
multi-window JSONL query ``X`` may be named ``X`` or by one of its windows ``X#k``), or, when the
qid is unknown, by ``(vid, query text)`` (whitespace and case ignored). A line whose ``vid``
differs from the matched annotation's, or that matches nothing, is an error: the file belongs to
another dataset or split.

Several ground-truth windows: a query whose annotation has several windows (JSONL
``relevant_windows`` with more than one entry, or the same sentence annotated twice in one video
and matched by text) is a hit at R@k, IoU m if ANY of its first k spans has IoU >= m with ANY of
its windows, and its mIoU term is the top-1 span's best IoU over the windows (Moment-DETR's
rule). With one window per query (Charades-STA, TACoS, ActivityNet) this is exactly the metric of
``dynpath evaluate`` (:func:`dynpath.engine.evaluator.score`), computed by the same functions of
:mod:`dynpath.engine.metrics`.

Every annotated query of the split must have a prediction unless ``allow_missing`` (then only the
predicted ones are scored and ``missing`` says how many were not).

Torch-free: scoring a file needs no model.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dynpath.data.types import Moment
from dynpath.engine.metrics import metric_key, miou, recall_at_k, topk_ious
from dynpath.errors import DataError

#: The spans' key of each format, and the format's name in the result.
FORMATS = {"topk": "dynpath", "pred_relevant_windows": "moment_detr"}

_WINDOW_QID = re.compile(r"^(.+)#\d+$")  # the JSONL reader's qid for window k of query X


def _norm(text: str) -> str:
    return " ".join(str(text).split()).lower()


@dataclass
class _Query:
    """One annotated query: its video and every ground-truth window (seconds)."""

    key: str
    vid: str
    windows: list[tuple[float, float]]


class _Annotations:
    """A split's queries, found by qid, by the base qid of a window, or by (vid, text)."""

    def __init__(self, moments: Sequence[Moment]) -> None:
        self.queries: dict[str, _Query] = {}
        self.by_qid: dict[str, str] = {}
        self.by_text: dict[tuple[str, str], list[str]] = {}
        for m in moments:
            found = _WINDOW_QID.match(m.qid)
            base = found.group(1) if found else m.qid
            if base not in self.queries:
                self.queries[base] = _Query(base, m.vid, [])
                self.by_text.setdefault((m.vid, _norm(m.query)), []).append(base)
            self.queries[base].windows.append((m.start, m.end))
            self.by_qid[m.qid] = base
            self.by_qid.setdefault(base, base)

    def match(self, rec: dict[str, Any], taken: set[str]) -> tuple[str, _Query] | None:
        """(unit, query) of a prediction line, or None when it matches nothing.

        By qid, the unit is the qid (a JSONL window ``X#k`` is a unit of its own, as in
        ``dynpath evaluate``). By text, the line takes the first annotation of that sentence in
        that video not taken yet, and is scored against the windows of all of them (the same
        sentence annotated twice in one video is one query with several windows).
        """
        qid = rec.get("qid")
        if qid is not None and str(qid) in self.by_qid:
            q = self.queries[self.by_qid[str(qid)]]
            if "vid" in rec and str(rec["vid"]) != q.vid:
                return None  # same qid, another video: another dataset's "test-12"
            return str(qid), q
        if "vid" not in rec or "query" not in rec:
            return None
        bases = self.by_text.get((str(rec["vid"]), _norm(rec["query"])))
        if not bases:
            return None
        free = [b for b in bases if b not in taken]
        base = free[0] if free else bases[0]  # all taken: reported as predicted again
        windows = [w for b in bases for w in self.queries[b].windows]
        return base, _Query(base, self.queries[base].vid, windows)


def _spans(value: Any, where: str, key: str) -> list[tuple[float, float]]:
    if not isinstance(value, list):
        raise DataError(f"{where}: '{key}' must be a list of [start, end, score] spans")
    out = []
    for span in value:
        try:
            if not isinstance(span, list | tuple) or len(span) < 2:
                raise ValueError
            start, end = float(span[0]), float(span[1])
        except (TypeError, ValueError):
            raise DataError(f"{where}: '{key}' holds {span!r}, not [start, end, score]") from None
        if not (math.isfinite(start) and math.isfinite(end)):
            raise DataError(f"{where}: '{key}' holds a non-finite span {span!r}")
        out.append((start, end))
    return out


def read_predictions(path: str | Path) -> tuple[str, list[tuple[int, dict[str, Any], list]]]:
    """(format, [(line number, record, spans)]) of a predictions file, every line checked."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory; give the predictions .jsonl file")
    if not path.is_file():
        raise DataError(f"{path}: predictions file not found")
    rows: list[tuple[int, dict[str, Any], list]] = []
    formats: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(
                    f"{where}: not valid JSON ({err.msg}, column {err.colno}); "
                    "a truncated or corrupted line"
                ) from None
            if not isinstance(rec, dict):
                raise DataError(f"{where}: expected a JSON object per line")
            keys = [k for k in FORMATS if k in rec]
            if len(keys) != 1:
                raise DataError(
                    f"{where}: needs 'topk' (dynpath predictions.jsonl) or "
                    "'pred_relevant_windows' (Moment-DETR/Lighthouse), exactly one"
                )
            formats.add(FORMATS[keys[0]])
            if len(formats) > 1:
                raise DataError(f"{where}: mixes the dynpath and Moment-DETR formats in one file")
            rows.append((number, rec, _spans(rec[keys[0]], where, keys[0])))
    if not rows:
        raise DataError(f"{path}: no predictions (empty file)")
    return formats.pop(), rows


def score_predictions(
    path: str | Path,
    moments: Sequence[Moment],
    ks: Sequence[int] = (1, 5),
    thresholds: Sequence[float] = (0.3, 0.5, 0.7),
    allow_missing: bool = False,
    where: str = "the annotations",
    parsed: tuple[str, list[tuple[int, dict[str, Any], list]]] | None = None,
) -> dict[str, Any]:
    """R@k at each IoU threshold and mIoU (percent) of the predictions file ``path`` against
    ``moments`` (one split); ``where`` names the split in errors (see the module docstring);
    ``parsed``: :func:`read_predictions`' result when the caller read the file already."""
    fmt, rows = parsed if parsed is not None else read_predictions(path)
    table = _Annotations(moments)
    first_line: dict[str, int] = {}
    matched: list[tuple[_Query, list[tuple[float, float]]]] = []
    unmatched: list[tuple[int, dict[str, Any]]] = []
    for number, rec, spans in rows:
        found = table.match(rec, set(first_line))
        if found is None:
            unmatched.append((number, rec))
            continue
        unit, q = found
        if unit in first_line:
            raise DataError(
                f"{path}:{number}: query {unit!r} predicted again (first on line "
                f"{first_line[unit]}); give one line per query"
            )
        first_line[unit] = number
        matched.append((q, spans))
    if unmatched:
        number, rec = unmatched[0]
        raise DataError(
            f"{path}:{number}: query {rec.get('qid')!r} (video {rec.get('vid')!r}) is not in "
            f"{where}; {len(unmatched)} of {len(rows)} lines match no annotation: predictions "
            "of another dataset or split?"
        )
    covered = {q.key for q, _ in matched}
    missing = [key for key in table.queries if key not in covered]
    if missing and not allow_missing:
        raise DataError(
            f"{path}: {len(missing)} of {len(table.queries)} queries of {where} have no "
            f"prediction (first: {missing[0]!r}); score them all, or pass --allow-missing to "
            "score only the predicted ones"
        )
    k = max(ks)
    preds = np.full((len(matched), k, 2), np.nan)
    for i, (_q, spans) in enumerate(matched):
        for j, span in enumerate(spans[:k]):
            preds[i, j] = span
    width = max(len(q.windows) for q, _ in matched)
    ious = np.zeros((len(matched), k))
    for w in range(width):  # a query with fewer windows repeats its last one: same maximum
        gts = np.array([q.windows[min(w, len(q.windows) - 1)] for q, _ in matched])
        ious = np.maximum(ious, topk_ious(preds, gts))
    result: dict[str, Any] = {
        "predictions": str(path),
        "format": fmt,
        "n": len(matched),
        "missing": len(missing),
        "multi_window": sum(len(q.windows) > 1 for q, _ in matched),
    }
    result.update({metric_key(kk, m): recall_at_k(ious, kk, m) for kk in ks for m in thresholds})
    result["miou"] = miou(ious)
    return result
