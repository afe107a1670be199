"""Video decoding: real files written with PyAV in several codecs/containers, geometry, rates,
and the failure modes (corrupt, empty, truncated) that extraction must report by name."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from dynpath.errors import DataError
from dynpath.extract.video import VideoReader, list_videos, read_frames, resize_dims


def write_video(
    path: Path, n: int, fps: int = 8, width: int = 48, height: int = 32, codec: str = "libx264"
) -> Path:
    """n (<= 42) frames; frame i is grey level 6*i on the right half, red on the left half."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for i in range(n):
            img = np.full((height, width, 3), 6 * i, np.uint8)
            img[:, : width // 2] = (220, 20, 20)
            for pkt in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


CODECS = [("mp4", "libx264"), ("avi", "mpeg4"), ("webm", "libvpx-vp9")]


@pytest.mark.parametrize(("ext", "codec"), CODECS)
def test_decodes_real_videos_in_several_codecs(tmp_path: Path, ext: str, codec: str) -> None:
    path = write_video(tmp_path / f"v.{ext}", n=21, codec=codec)
    frames = read_frames(path, size=32)
    assert frames.shape == (21, 32, 32, 3)
    assert frames.dtype == np.uint8
    # Frame order and content survive: the grey level grows by ~6 per frame (lossy codecs).
    grey = frames[:, 16, 28].astype(float).mean(axis=1)
    assert np.abs(grey - 6 * np.arange(21)).max() < 12, grey
    with VideoReader(path, 32) as r:
        assert r.fps == pytest.approx(8.0)


@pytest.mark.parametrize(("ext", "codec"), CODECS)
@pytest.mark.parametrize("size", [32, 48, 20])  # same size, upscaled, downscaled
def test_frames_equal_a_fresh_conversion_of_each_frame(
    tmp_path: Path, ext: str, codec: str, size: int
) -> None:
    """The reader converts every frame with one reused swscale context: the pixels must be
    exactly those of ``VideoFrame.reformat`` (a new context per frame, what it did before)."""
    path = write_video(tmp_path / f"v.{ext}", n=12, codec=codec)
    with av.open(str(path)) as c:
        expected = []
        for frame in c.decode(video=0):
            w, h = resize_dims(frame.width, frame.height, size)
            img = frame.reformat(
                width=w, height=h, format="rgb24", interpolation="BILINEAR"
            ).to_ndarray()
            top, left = (h - size) // 2, (w - size) // 2
            expected.append(img[top : top + size, left : left + size])
    assert np.array_equal(read_frames(path, size=size), np.stack(expected))


def test_short_side_resize_then_centre_crop(tmp_path: Path) -> None:
    # 48x32 (w x h): short side 32 -> 32, width 48 -> crop columns 8..40; the red half
    # (columns 0..24 of the source) then covers crop columns 0..16.
    path = write_video(tmp_path / "wide.mp4", n=3)
    frames = read_frames(path, size=32)
    red = frames[0, :, :, 0].astype(int) - frames[0, :, :, 1].astype(int)
    assert red[:, 2:13].min() > 120  # red region
    assert np.abs(red[:, 19:30]).max() < 40  # grey region
    # Upscaled to 64: the same layout at twice the size.
    big = read_frames(path, size=64)
    assert big.shape == (3, 64, 64, 3)
    assert resize_dims(48, 32, 64) == (96, 64)
    assert resize_dims(32, 48, 16) == (16, 24)


def test_resampling_keeps_duration(tmp_path: Path) -> None:
    path = write_video(tmp_path / "v.mp4", n=40, fps=8)  # 5 s
    assert read_frames(path, 32, frame_rate=4).shape[0] == 20
    up = read_frames(path, 32, frame_rate=16)
    assert up.shape[0] == 80
    # Upsampling holds each source frame for two output frames, in order.
    grey = up[:, 16, 28, 1].astype(int)
    np.testing.assert_array_equal(grey[0::2], grey[1::2])
    assert np.all(np.diff(grey[0::2]) > 2)
    down = read_frames(path, 32, frame_rate=4)
    # Every other source frame: level steps of ~12.
    assert np.median(np.diff(down[:, 16, 28, 1].astype(int))) == pytest.approx(12, abs=3)


def test_corrupt_file_is_a_data_error_naming_it(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(DataError, match=r"bad\.mp4"):
        read_frames(bad, 32)


def test_zero_frame_video_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.avi"
    c = av.open(str(path), "w")
    s = c.add_stream("mpeg4", rate=8)
    s.width, s.height, s.pix_fmt = 32, 32, "yuv420p"
    c.start_encoding()
    c.close()
    assert path.stat().st_size > 0
    with pytest.raises(DataError, match=r"empty\.avi: no video frames"):
        read_frames(path, 32)


@pytest.mark.parametrize(("ext", "codec"), [*CODECS, ("mkv", "libx264")])
def test_truncated_file_is_a_data_error(tmp_path: Path, ext: str, codec: str) -> None:
    # MP4/AVI lose their index and fail to open; Matroska/WebM decode without an FFmpeg error
    # and are caught by comparing the decoded span with the declared duration.
    full = write_video(tmp_path / f"full.{ext}", n=40, codec=codec)
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert read_frames(full, 32).shape[0] == 40
    with pytest.raises(DataError, match=rf"cut\.{ext}"):
        read_frames(cut, 32)


def test_list_videos_by_suffix_and_unique_ids(tmp_path: Path) -> None:
    (tmp_path / "a.mp4").write_bytes(b"x")
    (tmp_path / "b.AVI").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in list_videos(tmp_path)] == ["a.mp4", "b.AVI"]
    (tmp_path / "a.webm").write_bytes(b"x")
    with pytest.raises(DataError, match="share the id 'a'"):
        list_videos(tmp_path)
    with pytest.raises(DataError, match="not found"):
        list_videos(tmp_path / "missing")
