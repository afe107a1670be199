"""``dynpath features import``: the field's feature layouts into the store, checked first.

Each layout (a folder of ``<vid>.npy``, an HDF5 file with one dataset per video, the ActivityNet
C3D file with one group per video, dynpath's own store) is imported once cleanly, and once with
one annotated video missing and once with one video of another dimension: the error names the
video, the exit code is 2, and nothing is written.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from dynpath.cli import main
from dynpath.config import Config
from dynpath.data.features import FeatureStore, write_features
from dynpath.errors import DataError
from dynpath.steps import features

VIDS = ["v1", "v2", "v3", "v4"]


def annotations(root: Path) -> Path:
    """A JSONL annotation set naming the four videos (train: v1-v3, test: v4)."""
    root.mkdir(parents=True, exist_ok=True)
    for split, vids in (("train", VIDS[:3]), ("test", VIDS[3:])):
        recs = [
            {"qid": f"q{v}", "vid": v, "query": "a man walks", "duration": 8.0,
             "relevant_windows": [[1.0, 3.0]]}
            for v in vids
        ]  # fmt: skip
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    return root


def arrays(dim: int = 6, odd: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {v: rng.normal(size=(5 + i, dim)).astype(np.float32) for i, v in enumerate(VIDS)}
    out["extra"] = rng.normal(size=(3, dim)).astype(np.float32)  # not annotated: imported too
    out.update(odd or {})
    return out


def npy_folder(path: Path, feats: dict[str, np.ndarray]) -> Path:
    path.mkdir(parents=True)
    for vid, a in feats.items():
        np.save(path / f"{vid}.npy", a)
    return path


def hdf5_file(path: Path, feats: dict[str, np.ndarray], groups: bool = False) -> Path:
    with h5py.File(path, "w") as f:
        for vid, a in feats.items():
            if groups:  # the ActivityNet C3D release: f[vid]["c3d_features"]
                f.create_group(vid).create_dataset("c3d_features", data=a)
            else:
                f.create_dataset(vid, data=a)
    return path


def run(src: Path, out: Path, root: Path, **kw: object) -> dict:
    return features.run_import(Config(), src, out, "jsonl", root, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("layout", ["npy", "hdf5", "hdf5-groups"])
def test_each_layout_imports_checked_and_complete(tmp_path: Path, layout: str) -> None:
    root = annotations(tmp_path / "ann")
    feats = arrays()
    feats["v2"] = feats["v2"][None]  # [1, T, D]: a batch axis some releases keep
    if layout == "npy":
        src = npy_folder(tmp_path / "feats", feats)
    else:
        src = hdf5_file(tmp_path / "feats.hdf5", feats, groups=layout == "hdf5-groups")
    out = tmp_path / "store" / "f.h5"
    summary = run(src, out, root)
    assert summary["videos"] == 5 and summary["dim"] == 6 and summary["not_annotated"] == 1
    assert summary["layout"] == layout.split("-")[0] and summary["annotated_videos"] == 4
    with FeatureStore(out) as store:
        assert sorted(store.keys()) == sorted([*VIDS, "extra"])
        np.testing.assert_array_equal(store.read("v2"), feats["v2"][0])
        np.testing.assert_array_equal(store.read("v4"), feats["v4"])
        attrs = store.attrs
    assert (attrs["backbone"], attrs["dim"], attrs["pretrained"]) == ("i3d", 6, True)
    assert attrs["source"] == str(src) and attrs["weights"] == str(src)


def _bad_sources(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    missing = arrays()
    del missing["v3"]
    other_dim = arrays(odd={"v2": np.ones((5, 7), np.float32)})
    nan = arrays(odd={"v4": np.full((4, 6), np.nan, np.float32)})
    both = arrays(odd={"v2": np.ones((5, 7), np.float32)})
    del both["v3"]
    return {
        "npy both": (
            npy_folder(tmp_path / "g", both),
            r"g: 1 annotated video\(s\) have no features: 'v3'; .* 3 videos are 6-d but 7-d: 'v2'",
        ),
        "npy missing": (npy_folder(tmp_path / "a", missing), r"1 annotated video\(s\) .*'v3'"),
        "npy dim": (npy_folder(tmp_path / "b", other_dim), r"4 videos are 6-d but 7-d: 'v2'"),
        "npy nan": (npy_folder(tmp_path / "c", nan), r"video 'v4' has NaN/Inf"),
        "h5 missing": (hdf5_file(tmp_path / "d.h5", missing), r"have no features: 'v3'"),
        "h5 dim": (hdf5_file(tmp_path / "e.h5", other_dim, groups=True), r"7-d: 'v2'"),
        "absent": (tmp_path / "nowhere", r"nowhere: feature folder or HDF5 file not found"),
        "empty": (npy_folder(tmp_path / "f", {}), r"f: no \.npy feature files"),
    }


def test_bad_sources_name_the_video_and_write_nothing(tmp_path: Path) -> None:
    root = annotations(tmp_path / "ann")
    for name, (src, message) in _bad_sources(tmp_path).items():
        out = tmp_path / f"out-{name.replace(' ', '-')}" / "f.h5"
        with pytest.raises(DataError, match=message):
            run(src, out, root)
        assert not out.parent.exists(), name  # not even the folder


def test_a_failed_import_leaves_the_previous_store(tmp_path: Path) -> None:
    root = annotations(tmp_path / "ann")
    out = tmp_path / "f.h5"
    run(npy_folder(tmp_path / "good", arrays()), out, root)
    before = out.read_bytes()
    nan = arrays(odd={"v4": np.full((4, 6), np.inf, np.float32)})
    with pytest.raises(DataError, match="video 'v4' has NaN/Inf"):
        run(npy_folder(tmp_path / "bad", nan), out, root)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann", "bad", "f.h5", "good"]


def test_a_dynpath_store_keeps_its_provenance_unless_overridden(tmp_path: Path) -> None:
    root = annotations(tmp_path / "ann")
    attrs = {"backbone": "c3d", "fps": 25.0, "window": 16, "stride": 8}
    src = tmp_path / "own.h5"
    write_features(src, arrays(), {**attrs, "pretrained": False, "weights": None})
    run(src, tmp_path / "a.h5", root)
    got = FeatureStore(tmp_path / "a.h5").attrs
    assert (got["backbone"], got["stride"], got["pretrained"], got["weights"]) == (
        "c3d",
        8,
        False,
        None,
    )
    run(src, tmp_path / "b.h5", root, backbone="c3d-pca", pretrained=True)
    got = FeatureStore(tmp_path / "b.h5").attrs
    assert (got["backbone"], got["pretrained"]) == ("c3d-pca", True)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = annotations(tmp_path / "ann")
    src = npy_folder(tmp_path / "feats", arrays())
    out = tmp_path / "f.h5"
    argv = ["features", "import", str(src), "--output", str(out), "--dataset", "jsonl"]
    assert main([*argv, "--root", str(root), "--backbone", "i3d"]) == 0
    assert json.loads(capsys.readouterr().out)["videos"] == 5
    done = subprocess.run(
        [sys.executable, "-m", "dynpath.cli", "features", "import", str(tmp_path / "nowhere"),
         "--output", str(tmp_path / "new.h5"), "--dataset", "jsonl", "--root", str(root)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0] == (
        f"dynpath features: error: {tmp_path / 'nowhere'}: feature folder or HDF5 file not found"
    )
    assert not (tmp_path / "new.h5").exists()
