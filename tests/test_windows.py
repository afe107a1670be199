"""Long-video windows (dynpath.inference.windows): boundaries, ownership, merge, and the
Localizer's use of them (padding invariance; a video of max_len clips answered as before)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from mlflow_server import FEATURE_DIM, make_model_dir

from dynpath.inference.localizer import Localizer
from dynpath.inference.windows import (
    Candidate,
    merge_candidates,
    owned_ranges,
    ownership_mask,
    window_starts,
)

QUERY = "a person opens the door"


def test_a_video_that_fits_is_one_window() -> None:
    assert window_starts(1, 16) == [0]
    assert window_starts(16, 16) == [0]


def test_window_boundaries_half_overlap_and_the_last_window_aligned_to_the_end() -> None:
    assert window_starts(17, 16) == [0, 1]  # one clip over: a second window ending at 17
    assert window_starts(40, 16) == [0, 8, 16, 24]  # the last regular window ends at 40
    assert window_starts(41, 16) == [0, 8, 16, 24, 25]  # last partial window -> full, shifted
    assert window_starts(600, 24)[-1] == 576 and len(window_starts(600, 24)) == 49
    assert window_starts(10, 1) == list(range(10))  # stride at least one clip


@pytest.mark.parametrize("length", [1, 2, 3, 16, 24])
def test_windows_are_full_length_and_cover_every_clip(length: int) -> None:
    for t in range(1, 5 * length + 3):
        starts = window_starts(t, length)
        assert starts == sorted(set(starts)) and starts[0] == 0
        assert all(s + min(length, t) <= t for s in starts)  # no window past the end: no padding
        assert starts[-1] + min(length, t) == t
        covered = np.zeros(t, bool)
        for s in starts:
            covered[s : s + length] = True
        assert covered.all()
        # consecutive windows overlap by at least half a window
        assert all(b - a <= max(1, length // 2) for a, b in itertools.pairwise(starts))


@pytest.mark.parametrize(("t", "length"), [(17, 16), (41, 16), (100, 24), (51, 10)])
def test_each_short_span_is_owned_by_exactly_one_window_that_holds_all_of_it(
    t: int, length: int
) -> None:
    starts = window_starts(t, length)
    masks = [
        ownership_mask(s, length, lo, hi)
        for s, (lo, hi) in zip(starts, owned_ranges(starts, length), strict=True)
    ]
    for i in range(t):
        for j in range(i, t):
            owners = [
                w
                for w, s in enumerate(starts)
                if s <= i and j < s + length and masks[w][i - s, j - s]
            ]
            if j - i + 1 <= length // 2:
                assert len(owners) == 1, (i, j, owners)
            else:
                assert len(owners) <= 1, (i, j, owners)  # never decoded twice


def test_merge_is_nms_over_all_windows_best_score_first() -> None:
    cands = [
        Candidate(10, 14, 0.5, 0),
        Candidate(11, 14, 0.9, 1),  # IoU 0.8 with the first: it wins, the first is dropped
        Candidate(30, 35, 0.7, 2),
        Candidate(14, 20, 0.6, 1),  # IoU 1/10 with 11..14: kept
        Candidate(31, 35, 0.1, 3),
    ]
    got = merge_candidates(cands, k=5, nms_iou=0.5)
    assert [(c.start, c.end) for c in got] == [(11, 14), (30, 35), (14, 20)]
    assert [c.start for c in merge_candidates(cands, k=2, nms_iou=0.5)] == [11, 30]
    assert len(merge_candidates(cands, k=5, nms_iou=1.0)) == 5  # 1.0: no suppression


@pytest.fixture(scope="module")
def localizer(tmp_path_factory: pytest.TempPathFactory) -> Localizer:
    loc = Localizer.load(make_model_dir(tmp_path_factory.mktemp("win")), device="cpu")
    assert loc.cfg.data.max_len == 16
    return loc


def _feats(t: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(t, FEATURE_DIM)).astype(np.float32)


def _squeezed_reference(loc: Localizer, feats: np.ndarray, duration: float, k: int) -> list:
    """What the Localizer answered before windows: features resampled to max_len bins, one
    forward pass through the evaluator's decoder."""
    import torch

    from dynpath.data.dataset import collate
    from dynpath.data.features import resample
    from dynpath.engine.evaluator import decode_batch

    item = {
        "video": resample(feats, loc.cfg.data.max_len),
        "words": np.asarray(loc.vocab.encode(QUERY, loc.cfg.vocab.max_query_len), np.int64),
        "start": 0.0,
        "end": duration,
        "duration": duration,
        "qid": "q",
        "vid": "v",
        "query": QUERY,
    }
    with torch.inference_mode():
        _, preds = decode_batch(loc.model, collate([item]), k=k, nms_iou=loc.cfg.eval.nms_iou)
    return [[round(s, 3), round(e, 3), p] for s, e, p in preds[0].spans]


def test_a_video_exactly_max_len_long_gives_the_answer_of_before(localizer: Localizer) -> None:
    feats = _feats(16)
    out = localizer.predict(features=feats, query=QUERY, duration=20.0, topk=5)
    assert out["windows"] == 1
    assert [[s["start"], s["end"], s["score"]] for s in out["spans"]] == _squeezed_reference(
        localizer, feats, 20.0, 5
    )


def test_a_longer_video_is_not_squeezed(localizer: Localizer) -> None:
    feats = _feats(50)
    out = localizer.predict(features=feats, query=QUERY, duration=50.0, topk=5)
    assert out["windows"] == len(window_starts(50, 16)) == 6
    assert len(out["spans"]) == 5 and len({(s["start"], s["end"]) for s in out["spans"]}) == 5
    scores = [s["score"] for s in out["spans"]]
    assert scores == sorted(scores, reverse=True) and all(0 < p <= 1 for p in scores)
    for s in out["spans"]:  # on the grid of the video's own 50 clips (one per second)
        assert s["start"] == round(s["start"]) and s["end"] == round(s["end"])
        assert 0 <= s["start"] < s["end"] <= 50
    assert out["route"] in ("exploitation", "exploration")
    old = _squeezed_reference(localizer, feats, 50.0, 5)
    assert [[s["start"], s["end"]] for s in out["spans"]] != [[a, b] for a, b, _ in old]


def test_padding_invariance_a_long_video_answers_the_same_in_any_batch(
    localizer: Localizer,
) -> None:
    """Windows are all exactly max_len clips: batched with a short video (which pads the
    batch) or alone, a long video's answer is the same."""
    long, short = _feats(45, seed=1), _feats(9, seed=2)
    alone = localizer.predict(features=long, query=QUERY, duration=90.0, topk=3)
    short_alone = localizer.predict(features=short, query=QUERY, duration=9.0, topk=3)
    both = localizer.predict_batch([short, long, short], [QUERY] * 3, [9.0, 90.0, 9.0], topk=3)
    assert both == [short_alone, alone, short_alone]


def test_several_queries_in_one_call_answer_like_one_call_each(localizer: Localizer) -> None:
    feats = _feats(45, seed=3)
    queries = [QUERY, "the door closes", "a person sits"]
    each = [localizer.predict(features=feats, query=q, duration=45.0) for q in queries]
    assert localizer.predict_queries(queries, features=feats, duration=45.0) == each
