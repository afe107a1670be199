"""Clip windows and the resumable HDF5 extraction (step ``extract``) on real decoded videos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
import torch

from dynpath.config import Config, ExtractConfig
from dynpath.errors import DataError
from dynpath.extract import extractor as ex
from dynpath.extract.extractor import (
    extract_directory,
    extract_video_features,
    iter_clips,
    num_clips,
)
from dynpath.steps import extract as extract_step

FPS = 8
CFG = ExtractConfig(size=16, batch_size=2, max_failures=0.0, amp=False)  # fp32: exact


def write_video(path: Path, n: int, codec: str = "libx264") -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=FPS)
        s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
        rng = np.random.default_rng(n)
        for _ in range(n):
            img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


@pytest.mark.parametrize(
    ("n", "window", "stride", "expected"),
    [
        (0, 16, 16, 0),
        (1, 16, 16, 1),
        (15, 16, 16, 1),
        (16, 16, 16, 1),
        (17, 16, 16, 2),
        (40, 16, 16, 3),  # 5 s at 8 fps: 2 full clips + 1 padded
        (48, 16, 16, 3),
        (49, 16, 16, 4),
        (40, 16, 8, 4),  # overlapping: starts 0, 8, 16, 24 (24..39 full)
        (41, 16, 8, 5),
        (17, 16, 8, 2),
        (17, 16, 32, 1),  # stride > window: no clip may start past the last frame
        (50, 16, 32, 2),
    ],
)
def test_num_clips(n: int, window: int, stride: int, expected: int) -> None:
    assert num_clips(n, window, stride) == expected


def test_iter_clips_pads_the_tail_with_the_last_frame() -> None:
    frames = [np.full((1, 1, 3), i, np.uint8) for i in range(40)]
    clips = [c[:, 0, 0, 0].tolist() for c in iter_clips(frames, 16, 16)]
    assert clips == [list(range(16)), list(range(16, 32)), [*range(32, 40), *[39] * 8]]
    short = [c[:, 0, 0, 0].tolist() for c in iter_clips(frames[:5], 16, 16)]
    assert short == [[0, 1, 2, 3, 4, *[4] * 11]]
    assert list(iter_clips([], 16, 16)) == []


@pytest.mark.parametrize(("window", "stride"), [(16, 16), (16, 8), (4, 3), (8, 1), (4, 6)])
def test_iter_clips_agrees_with_num_clips_and_covers_every_frame(window: int, stride: int) -> None:
    for n in range(1, 45):
        frames = [np.full((1, 1, 3), i, np.uint8) for i in range(n)]
        clips = list(iter_clips(frames, window, stride))
        assert len(clips) == num_clips(n, window, stride), n
        assert all(c.shape == (window, 1, 1, 3) for c in clips)
        for k, c in enumerate(clips):
            assert c[0, 0, 0, 0] == k * stride  # starts are stride apart
        covered = {int(v) for c in clips for v in c[:, 0, 0, 0]}
        if stride <= window:
            assert covered == set(range(n)), n


@pytest.fixture
def videos(tmp_path: Path) -> Path:
    d = tmp_path / "videos"
    d.mkdir()
    write_video(d / "v40.mp4", 40)  # 5 s -> 3 clips
    write_video(d / "v10.webm", 10, codec="libvpx-vp9")  # shorter than a window -> 1 clip
    write_video(d / "v33.avi", 33, codec="mpeg4")  # -> 3 clips
    return d


def _read(path: Path) -> tuple[dict, dict[str, np.ndarray]]:
    with h5py.File(path, "r") as f:
        return dict(f.attrs), {k: f[k][()] for k in f}


def test_extracts_every_video_with_counts_and_attrs(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "features" / "f.h5"
    summary = extract_directory(videos, out, "i3d", CFG, None, seed=3, progress=False)
    assert summary["extracted"] == 3 and summary["failed"] == 0 and summary["skipped"] == 0
    assert summary["clips"] == 3 + 1 + 3 and summary["clips_per_s"] > 0
    assert summary["pretrained"] is False and summary["weights"] == "random-init(seed=3)"
    attrs, data = _read(out)
    assert {k: v.shape for k, v in data.items()} == {
        "v40": (3, 1024),
        "v10": (1, 1024),
        "v33": (3, 1024),
    }
    assert all(v.dtype == np.float32 for v in data.values())
    assert attrs["backbone"] == "i3d" and attrs["dim"] == 1024 and not attrs["pretrained"]
    assert attrs["weights"] == "random-init(seed=3)"
    assert (attrs["window"], attrs["stride"], attrs["fps"]) == (16, 16, 0.0)
    with h5py.File(out, "r") as f:
        assert f["v40"].attrs["n_frames"] == 40 and f["v40"].attrs["fps"] == pytest.approx(FPS)
        assert f["v40"].attrs["precision"] == "float32"
    assert not (tmp_path / "features" / "f.h5.partial").exists()
    # Different clips of random-noise videos give different features; the padded tail is fine.
    assert not np.allclose(data["v40"][0], data["v40"][2])
    # On-the-fly extraction (Localizer) gives the stored features.
    live = extract_video_features(videos / "v33.avi", "i3d", CFG, None, "cpu", seed=3)
    np.testing.assert_allclose(live, data["v33"], rtol=1e-5, atol=1e-6)


def test_second_run_skips_and_new_videos_are_added(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.h5"
    extract_directory(videos, out, "i3d", CFG, None, seed=3, progress=False)
    before = out.read_bytes()
    again = extract_directory(videos, out, "i3d", CFG, None, seed=3, progress=False)
    assert (again["extracted"], again["skipped"]) == (0, 3)
    assert out.read_bytes() == before  # not rewritten
    write_video(videos / "new.mp4", 20)
    more = extract_directory(videos, out, "i3d", CFG, None, seed=3, progress=False)
    assert (more["extracted"], more["skipped"]) == (1, 3)
    assert _read(out)[1]["new"].shape == (2, 1024)
    # Other settings (another seed = other weights) are never mixed into the same store.
    other = extract_directory(videos, out, "i3d", CFG, None, seed=4, progress=False)
    assert (other["extracted"], other["skipped"]) == (4, 0)
    assert _read(out)[0]["weights"] == "random-init(seed=4)"


def test_killed_run_leaves_no_output_and_resumes(
    videos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "f.h5"
    real = ex.ClipFeatureExtractor.video
    calls = []

    def dying(self: ex.ClipFeatureExtractor, path: Path) -> ex.VideoFeatures:
        calls.append(path.name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process is killed while extracting the 2nd video
        return real(self, path)

    monkeypatch.setattr(ex.ClipFeatureExtractor, "video", dying)
    with pytest.raises(KeyboardInterrupt):
        extract_directory(videos, out, "i3d", CFG, None, seed=3, progress=False)
    monkeypatch.setattr(ex.ClipFeatureExtractor, "video", real)
    partial = tmp_path / "f.h5.partial"
    assert not out.exists() and partial.exists()
    first = calls[0].rsplit(".", 1)[0]
    assert list(_read(partial)[1]) == [first]
    resumed = extract_directory(videos, out, "i3d", CFG, None, seed=3, progress=False)
    assert (resumed["extracted"], resumed["skipped"]) == (2, 1)
    assert set(_read(out)[1]) == {"v40", "v10", "v33"} and not partial.exists()


def test_partial_file_keeps_complete_videos_only(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.h5"
    extract_directory(videos, out, "i3d", CFG, None, seed=3, progress=False)
    partial = tmp_path / "f.h5.partial"
    shutil.move(out, partial)
    with h5py.File(partial, "a") as f:
        f["v40"][...] = 0.0  # sentinel: a complete video that must be kept as is
        del f["v33"].attrs["complete"]  # a half-written video from a killed run
        f["v33"][...] = 0.0
    summary = extract_directory(videos, out, "i3d", CFG, None, seed=3, progress=False)
    assert (summary["extracted"], summary["skipped"]) == (1, 2)
    data = _read(out)[1]
    assert np.all(data["v40"] == 0.0) and np.abs(data["v33"]).max() > 0


def test_unreadable_partial_file_is_discarded(videos: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.h5"
    (tmp_path / "f.h5.partial").write_bytes(b"\x89HDF\r\n garbage from a crash")
    summary = extract_directory(videos, out, "i3d", CFG, None, seed=3, progress=False)
    assert (summary["extracted"], summary["skipped"]) == (3, 0)
    assert len(_read(out)[1]) == 3


def _add_broken(videos: Path) -> None:
    (videos / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(3000))
    c = av.open(str(videos / "empty.avi"), "w")
    s = c.add_stream("mpeg4", rate=FPS)
    s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
    c.start_encoding()
    c.close()


def test_broken_videos_are_reported_and_skipped_within_the_limit(
    videos: Path, tmp_path: Path
) -> None:
    _add_broken(videos)
    out = tmp_path / "f.h5"
    cfg = CFG.model_copy(update={"max_failures": 2})  # an absolute count
    summary = extract_directory(videos, out, "c3d", cfg, None, seed=0, progress=False)
    assert summary["failed"] == 2 and summary["extracted"] == 3
    assert sorted(f["video"] for f in summary["failures"]) == ["corrupt.mp4", "empty.avi"]
    assert (
        "no video frames"
        in next(f for f in summary["failures"] if f["video"] == "empty.avi")["error"]
    )
    attrs, data = _read(out)
    assert set(data) == {"v40", "v10", "v33"} and data["v40"].shape == (3, 4096)
    assert {f["video"] for f in json.loads(attrs["failures"])} == {"corrupt.mp4", "empty.avi"}
    sidecar = json.loads((tmp_path / "f.h5.failures.json").read_text())
    assert {f["video"] for f in sidecar} == {"corrupt.mp4", "empty.avi"}


def test_too_many_failures_fail_the_step_naming_them(videos: Path, tmp_path: Path) -> None:
    _add_broken(videos)
    out = tmp_path / "f.h5"
    cfg = CFG.model_copy(update={"max_failures": 0.2})  # 2 of 5 > 20%
    with pytest.raises(DataError, match=r"2 of 5 videos.*corrupt\.mp4.*empty\.avi"):
        extract_directory(videos, out, "i3d", cfg, None, seed=0, progress=False)
    assert not out.exists() and (tmp_path / "f.h5.partial").exists()
    ok = CFG.model_copy(update={"max_failures": 0.4})
    summary = extract_directory(videos, out, "i3d", ok, None, seed=0, progress=False)
    assert (summary["extracted"], summary["skipped"], summary["failed"]) == (0, 3, 2)
    assert out.exists()


def test_step_run_returns_the_summary(videos: Path, tmp_path: Path) -> None:
    cfg = Config(seed=7, extract=CFG)
    result = extract_step.run(cfg, videos, tmp_path / "f.h5", "i3d", None)
    assert result["pretrained"] is False and result["weights"] == "random-init(seed=7)"
    assert {"videos", "extracted", "skipped", "failed", "clips", "clips_per_s"} <= set(result)
    assert result["videos"] == 3 and result["clips"] == 7
    json.dumps(result)  # JSON-able
    with pytest.raises(DataError, match="no video files"):
        extract_step.run(cfg, tmp_path, tmp_path / "g.h5", "i3d", None)


def test_reduced_precision_on_cpu_stays_close_to_fp32(videos: Path) -> None:
    # extract.amp: bfloat16 where oneDNN runs it natively (AMX / AVX512-BF16), else fp32.
    fast_cfg = CFG.model_copy(update={"amp": True})
    fast = ex.ClipFeatureExtractor(ex.build_backbone("i3d", None, 3), fast_cfg, torch.device("cpu"))
    exact = ex.ClipFeatureExtractor(ex.build_backbone("i3d", None, 3), CFG)
    assert exact.precision == "float32"
    assert fast.precision == ("bfloat16" if ex.cpu_bf16_supported() else "float32")
    a = fast.video(videos / "v40.mp4").features
    b = exact.video(videos / "v40.mp4").features
    assert a.dtype == b.dtype == np.float32
    assert np.linalg.norm(a - b) / np.linalg.norm(b) < 0.03
