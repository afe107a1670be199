"""Property-based tests (Hypothesis) of the input boundaries: the config schema, the annotation
and feature readers, the seconds <-> index span mapping and span decoding.

For each: random VALID inputs round-trip (what is written is what is read back), and random
INVALID inputs raise the dynpath error (a :class:`DynpathError` subclass) and nothing else: no
KeyError, TypeError, IndexError or silent garbage from deep inside.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from dynpath.config import ConfigError, load_config
from dynpath.data.annotations import read_charades_sta, read_jsonl
from dynpath.data.features import FeatureStore, write_features
from dynpath.data.spans import indices_to_seconds, seconds_to_indices
from dynpath.engine.decode import spans_to_seconds, topk_spans
from dynpath.errors import DynpathError

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

_SCRATCH: list[Path] = []


def _scratch() -> Path:
    """A fresh directory per example (Hypothesis runs many examples per test function)."""
    path = Path(tempfile.mkdtemp(prefix="dynpath-prop-"))
    _SCRATCH.append(path)
    return path


@pytest.fixture(autouse=True, scope="module")
def _clean_scratch() -> Iterator[None]:
    yield
    while _SCRATCH:
        shutil.rmtree(_SCRATCH.pop(), ignore_errors=True)


# --------------------------------------------------------------------------- config schema

# (section, key, strategy of valid values) for the numeric keys users edit most
VALID_KEYS: list[tuple[str, str, st.SearchStrategy[Any]]] = [
    ("train", "epochs", st.integers(1, 10_000)),
    ("train", "batch_size", st.integers(1, 4096)),
    ("train", "lr", st.floats(1e-9, 10.0)),
    ("train", "warmup_fraction", st.floats(0.0, 0.99)),
    ("train", "clip_norm", st.floats(1e-6, 1e6)),
    ("train", "threads", st.integers(0, 256)),
    ("eval", "topk", st.integers(1, 100)),
    ("eval", "nms_iou", st.floats(1e-6, 1.0)),
    ("eval", "iou_thresholds", st.lists(st.floats(1e-6, 1.0), min_size=1, max_size=5)),
    ("model", "dropout", st.floats(0.0, 0.99)),
    ("model", "gumbel_tau", st.floats(1e-6, 100.0)),
    ("data", "max_len", st.integers(2, 4096)),
    ("data", "val_fraction", st.floats(1e-6, 0.49)),
]
# the same keys with values the schema must refuse
INVALID_VALUES = st.one_of(
    st.booleans(),
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(float("-inf")),
    st.integers(-(10**6), -1),
    st.text(alphabet="abcxyz", min_size=1, max_size=5),
    st.none(),
    st.lists(st.booleans(), min_size=1, max_size=2),
)


def _write_yaml(raw: Any) -> Path:
    fd, name = tempfile.mkstemp(suffix=".yaml")
    path = Path(name)
    with open(fd, "w", encoding="utf-8") as fh:
        yaml.safe_dump(raw, fh)
    return path


@SETTINGS
@given(st.data())
def test_valid_params_round_trip_through_yaml(data: st.DataObject) -> None:
    raw: dict[str, dict[str, Any]] = {}
    # at least one key: an empty params file is refused by name (issue 26), not run on defaults
    keys = data.draw(st.lists(st.sampled_from(VALID_KEYS), min_size=1, max_size=6))
    for section, key, strategy in keys:
        raw.setdefault(section, {})[key] = data.draw(strategy)
    path = _write_yaml(raw)
    try:
        cfg = load_config(path)
        again = load_config(_write_yaml(cfg.model_dump(mode="json")))
    finally:
        path.unlink()
    assert again == cfg
    for section, values in raw.items():
        for key, value in values.items():
            got = getattr(getattr(cfg, section), key)
            assert (list(got) if isinstance(got, tuple) else got) == value


@SETTINGS
@given(st.sampled_from(VALID_KEYS), INVALID_VALUES)
def test_invalid_numbers_raise_config_error_only(key: tuple[str, str, Any], bad: Any) -> None:
    section, name, _ = key
    if name == "threads" and isinstance(bad, int) and not isinstance(bad, bool):
        assume(bad < 0)
    if name in ("warmup_fraction", "dropout") and bad == 0:
        assume(False)
    path = _write_yaml({section: {name: bad}})
    try:
        with pytest.raises(ConfigError) as info:
            load_config(path)
    finally:
        path.unlink()
    assert isinstance(info.value, DynpathError)
    assert f"{section}.{name}" in str(info.value)


YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


@SETTINGS
@given(
    st.dictionaries(st.sampled_from(["train", "eval", "model", "data", "seed", "x"]), YAML_VALUES)
)
def test_arbitrary_params_files_load_or_raise_config_error(raw: dict[str, Any]) -> None:
    path = _write_yaml(raw)
    try:
        load_config(path)
    except ConfigError:
        pass
    finally:
        path.unlink()


@SETTINGS
@given(st.binary(max_size=200))
def test_arbitrary_bytes_as_params_raise_config_error_only(blob: bytes) -> None:
    fd, name = tempfile.mkstemp(suffix=".yaml")
    with open(fd, "wb") as fh:
        fh.write(blob)
    try:
        load_config(name)
    except ConfigError:
        pass
    finally:
        Path(name).unlink()


# --------------------------------------------------------------------------- annotation readers

WORD = st.sampled_from(["person", "opens", "door", "the", "sits", "chair", "cup", "walks"])


@st.composite
def jsonl_records(draw: st.DrawFn) -> list[dict[str, Any]]:
    n = draw(st.integers(1, 6))
    out = []
    for k in range(n):
        duration = draw(st.floats(1.0, 1000.0))
        start = draw(st.floats(0.0, duration * 0.9))
        end = draw(st.floats(start + duration * 0.01, duration))
        assume(end > start)
        out.append(
            {
                "qid": f"q{k}",
                "vid": f"v{k}",  # distinct moments (identical ones are merged as duplicates)
                "query": " ".join(draw(st.lists(WORD, min_size=1, max_size=6))),
                "duration": duration,
                "relevant_windows": [[start, end]],
            }
        )
    return out


def _jsonl_root(train: str, test: str) -> Path:
    root = _scratch()
    (root / "train.jsonl").write_text(train, encoding="utf-8")
    (root / "test.jsonl").write_text(test, encoding="utf-8")
    return root


@SETTINGS
@given(jsonl_records())
def test_valid_jsonl_records_round_trip(records: list[dict[str, Any]]) -> None:
    text = "".join(json.dumps(r) + "\n" for r in records)
    splits, report = read_jsonl(_jsonl_root(text, text))
    got = [(m.qid, m.vid, m.query, m.start, m.end, m.duration) for m in splits["train"]]
    want = [
        (r["qid"], r["vid"], r["query"], *r["relevant_windows"][0], r["duration"]) for r in records
    ]
    assert got == [tuple(w) for w in want]
    assert report.skipped == []


@SETTINGS
@given(st.lists(st.binary(max_size=80), min_size=1, max_size=5))
def test_arbitrary_jsonl_lines_are_skipped_or_a_data_error(lines: list[bytes]) -> None:
    root = _scratch()
    (root / "train.jsonl").write_bytes(b"\n".join(lines))
    (root / "test.jsonl").write_bytes(b"\n".join(lines))
    with contextlib.suppress(DynpathError):  # anything else fails the test
        read_jsonl(root)


@SETTINGS
@given(jsonl_records(), st.data())
def test_mutated_jsonl_records_are_skipped_or_a_data_error(
    records: list[dict[str, Any]], data: st.DataObject
) -> None:
    """A field replaced by a value of another type/range: skipped with a reason or refused."""
    rec = records[0]
    key = data.draw(st.sampled_from(sorted(rec)))
    rec[key] = data.draw(YAML_VALUES)
    text = "".join(json.dumps(r) + "\n" for r in records)
    try:
        splits, _ = read_jsonl(_jsonl_root(text, text))
    except DynpathError:
        return
    for m in splits["train"]:
        assert 0 <= m.start < m.end <= m.duration and math.isfinite(m.duration)


@SETTINGS
@given(st.lists(st.binary(max_size=60), min_size=1, max_size=5))
def test_arbitrary_charades_lines_are_skipped_or_a_data_error(lines: list[bytes]) -> None:
    root = _scratch()
    (root / "charades.json").write_text(json.dumps({"v1": {"duration": 30.0}}))
    (root / "charades_sta_train.txt").write_bytes(b"\n".join(lines))
    (root / "charades_sta_test.txt").write_bytes(b"v1 0.0 5.0##a person opens the door\n")
    try:
        splits, _ = read_charades_sta(root)
    except DynpathError:
        return
    for m in splits["train"]:
        assert 0 <= m.start < m.end <= m.duration


# --------------------------------------------------------------------------- feature store

ATTRS = {"backbone": "i3d", "fps": 8.0, "window": 16, "stride": 16, "pretrained": False,
         "weights": None}  # fmt: skip
FINITE = st.floats(-1e6, 1e6, width=32)


@SETTINGS
@given(
    st.dictionaries(
        st.text(alphabet="abcdefgh0123456789_-", min_size=1, max_size=8),
        st.integers(1, 20),
        min_size=1,
        max_size=4,
    ),
    st.integers(1, 8),
    st.data(),
)
def test_feature_store_round_trips(lengths: dict[str, int], dim: int, data: st.DataObject) -> None:
    feats = {
        vid: data.draw(arrays(np.float32, (t, dim), elements=FINITE)) for vid, t in lengths.items()
    }
    path = _scratch() / "f.h5"
    write_features(path, feats, ATTRS)
    with FeatureStore(path) as store:
        assert sorted(store.keys()) == sorted(feats)
        for vid, arr in feats.items():
            np.testing.assert_array_equal(store.read(vid), arr)


BAD_ARRAYS = st.one_of(
    arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 4)), elements=st.just(np.nan)),
    arrays(np.float32, st.tuples(st.integers(1, 5), st.integers(1, 4)), elements=st.just(np.inf)),
    arrays(np.float32, st.tuples(st.just(0), st.integers(1, 4))),
    arrays(np.float32, st.integers(1, 5)),
    arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 3))),
)


@SETTINGS
@given(BAD_ARRAYS)
def test_invalid_features_raise_data_error_only(bad: np.ndarray) -> None:
    path = _scratch() / "f.h5"
    with pytest.raises(DynpathError):
        write_features(path, {"v": bad}, ATTRS)
    assert not path.exists()


# --------------------------------------------------------------------------- spans and decoding


@SETTINGS
@given(st.integers(1, 500), st.floats(0.01, 1e5), st.data())
def test_indices_seconds_indices_round_trip(T: int, duration: float, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, T - 1))
    j = data.draw(st.integers(i, T - 1))
    s, e = indices_to_seconds(i, j, duration, T)
    assert 0.0 <= s < e <= duration
    assert seconds_to_indices(s, e, duration, T) == (i, j)


@SETTINGS
@given(st.integers(1, 500), st.floats(0.01, 1e5), st.data())
def test_seconds_to_indices_cover_the_span(T: int, duration: float, data: st.DataObject) -> None:
    start = data.draw(st.floats(0.0, duration))
    end = data.draw(st.floats(start, duration))
    i, j = seconds_to_indices(start, end, duration, T)
    assert 0 <= i <= j < T
    s, e = indices_to_seconds(i, j, duration, T)
    step = duration / T
    assert s <= start + step * 1e-5 and (e >= end - step * 1e-5 or j == T - 1 or e >= s)


NON_FINITE = st.sampled_from([float("nan"), float("inf"), float("-inf")])


@SETTINGS
@given(NON_FINITE, st.sampled_from(["start", "end", "duration"]))
def test_non_finite_span_inputs_raise_data_error(bad: float, which: str) -> None:
    args = {"start": 1.0, "end": 2.0, "duration": 10.0, which: bad}
    with pytest.raises(DynpathError):
        seconds_to_indices(args["start"], args["end"], args["duration"], 5)


@SETTINGS
@given(st.floats(-1e6, 0.0), st.integers(-5, 0))
def test_impossible_durations_and_lengths_raise_data_error(duration: float, T: int) -> None:
    with pytest.raises(DynpathError):
        seconds_to_indices(0.0, 1.0, duration, 5)
    with pytest.raises(DynpathError):
        seconds_to_indices(0.0, 1.0, 10.0, T)
    with pytest.raises(DynpathError):
        indices_to_seconds(0, 1, duration, 5)


@SETTINGS
@given(st.integers(1, 3), st.integers(1, 24), st.integers(1, 6), st.data())
def test_decoded_spans_are_valid_ranked_and_map_back(
    b: int, t: int, k: int, data: st.DataObject
) -> None:
    """Random finite logits: every valid span is inside its sample's unpadded positions,
    scores do not increase, seconds lie in [0, D] and map back to the same indices."""
    logits = data.draw(arrays(np.float32, (2, b, t), elements=st.floats(-30, 30, width=32)))
    lengths = [data.draw(st.integers(1, t)) for _ in range(b)]
    durations = [data.draw(st.floats(0.5, 1e4)) for _ in range(b)]
    mask = torch.zeros(b, t, dtype=torch.bool)
    for n, length in enumerate(lengths):
        mask[n, :length] = True
    top = topk_spans(torch.from_numpy(logits[0]), torch.from_numpy(logits[1]), mask, k, 0.5)
    n_pos = torch.tensor(lengths)
    dur = torch.tensor(durations, dtype=torch.float64)
    s_sec, e_sec = spans_to_seconds(top.start, top.end, n_pos, dur)
    for n in range(b):
        valid = top.valid[n].tolist()
        scores = top.score[n][top.valid[n]].tolist()
        assert scores == sorted(scores, reverse=True)
        assert valid == sorted(valid, reverse=True)  # the valid slots come first
        for slot in range(k):
            if not valid[slot]:
                continue
            i, j = int(top.start[n, slot]), int(top.end[n, slot])
            assert 0 <= i <= j < lengths[n]
            s, e = float(s_sec[n, slot]), float(e_sec[n, slot])
            assert 0.0 <= s < e <= durations[n] * (1 + 1e-6)
            assert seconds_to_indices(s, e, durations[n], lengths[n]) == (i, j)


def test_long_video_span_end_maps_back_to_its_index() -> None:
    """The case the property above found in CI: with D=8732.19 s and T=17, the end of span (0, 15)
    computed in float32 came back as index 16 (st.data() draws cannot be pinned by @example)."""
    start, end = torch.tensor([[0]]), torch.tensor([[15]])
    duration = 8732.189944268568
    s, e = spans_to_seconds(
        start, end, torch.tensor([17]), torch.tensor([duration], dtype=torch.float64)
    )
    assert seconds_to_indices(float(s[0, 0]), float(e[0, 0]), duration, 17) == (0, 15)
