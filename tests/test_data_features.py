"""HDF5 feature store: round trip, atomic writes, validation, importers, resampling."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from dynpath.data.features import (
    FeatureStore,
    import_hdf5,
    import_npy_dir,
    resample,
    write_features,
)
from dynpath.errors import DataError

ATTRS = {
    "backbone": "i3d",
    "fps": 24.0,
    "window": 16,
    "stride": 16,
    "pretrained": False,
    "weights": None,
}


def feats(seed: int = 0, n: int = 3, dim: int = 8) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f"VID{i}": rng.standard_normal((5 + 3 * i, dim)).astype(np.float32) for i in range(n)}


def test_round_trip_and_attrs(tmp_path: Path) -> None:
    data = feats()
    summary = write_features(tmp_path / "f.h5", data, ATTRS)
    assert summary["videos"] == 3 and summary["dim"] == 8
    with FeatureStore(tmp_path / "f.h5") as store:
        assert sorted(store.keys()) == sorted(data) and "VID1" in store and "nope" not in store
        assert store.dim == 8 and len(store) == 3
        for k, v in data.items():
            out = store.read(k)
            assert out.dtype == np.float32
            np.testing.assert_array_equal(out, v)
        attrs = store.attrs
    assert attrs["pretrained"] is False and attrs["weights"] is None
    assert attrs["backbone"] == "i3d" and attrs["dim"] == 8 and attrs["window"] == 16


def test_store_pickles_without_handle_and_reopens(tmp_path: Path) -> None:
    write_features(tmp_path / "f.h5", feats(), ATTRS)
    store = FeatureStore(tmp_path / "f.h5")
    store.read("VID0")
    clone = pickle.loads(pickle.dumps(store))
    np.testing.assert_array_equal(clone.read("VID2"), store.read("VID2"))
    store.close()
    clone.close()


def test_atomic_write_keeps_old_store_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    write_features(path, feats(0), ATTRS)
    bad = feats(1)
    bad["VID1"][2, 3] = np.nan
    with pytest.raises(DataError, match="'VID1' has NaN/Inf"):
        write_features(path, bad, ATTRS)
    assert [p.name for p in tmp_path.iterdir()] == ["f.h5"]  # no temp file left behind
    with FeatureStore(path) as store:
        np.testing.assert_array_equal(store.read("VID1"), feats(0)["VID1"])


def test_write_validation(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing: weights"):
        write_features(
            tmp_path / "a.h5", feats(), {k: v for k, v in ATTRS.items() if k != "weights"}
        )
    mixed = feats()
    mixed["VID2"] = np.zeros((4, 9), np.float32)
    with pytest.raises(DataError, match="'VID2' has dimension 9, expected 8"):
        write_features(tmp_path / "b.h5", mixed, ATTRS)
    with pytest.raises(DataError, match="invalid video id"):
        write_features(tmp_path / "c.h5", {"a/b": np.zeros((2, 2))}, ATTRS)
    with pytest.raises(DataError, match="dimension 8, expected 4"):
        write_features(tmp_path / "d.h5", feats(), {**ATTRS, "dim": 4})
    assert not list(tmp_path.iterdir())


def _raw_store(path: Path, data: dict[str, np.ndarray], dim: int) -> None:
    """A store written behind the writer's back, to test the reader's own checks."""
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            f.create_dataset(k, data=v)
        f.attrs.update({**{k: ("" if v is None else v) for k, v in ATTRS.items()}, "dim": dim})


def test_read_validation_missing_wrong_dim_nan(tmp_path: Path) -> None:
    path = tmp_path / "raw.h5"
    _raw_store(
        path,
        {
            "ok": np.ones((3, 4), np.float32),
            "wide": np.ones((3, 5), np.float32),
            "nan": np.array([[0, 1, np.inf, 0]], np.float32),
        },
        dim=4,
    )
    store = FeatureStore(path)
    assert store.read("ok").shape == (3, 4)
    with pytest.raises(DataError, match=r"no features for video 'absent'.*") as e:
        store.read("absent")
    assert str(path) in str(e.value)
    with pytest.raises(DataError, match="'wide' has dimension 5, the store says 4"):
        store.read("wide")
    with pytest.raises(DataError, match="'nan' has NaN/Inf"):
        store.read("nan")
    assert store.missing(["ok", "x", "absent"]) == ["absent", "x"]
    with pytest.raises(DataError, match="not found"):
        FeatureStore(tmp_path / "none.h5")


def test_import_npy_dir(tmp_path: Path) -> None:
    src = tmp_path / "npy"
    src.mkdir()
    data = feats(2, n=4, dim=6)
    for k, v in data.items():
        np.save(src / f"{k}.npy", v.astype(np.float64))
    out = import_npy_dir(src, tmp_path / "s.h5", {**ATTRS, "backbone": "i3d-vslnet"})
    assert out["videos"] == 4
    with FeatureStore(tmp_path / "s.h5") as store:
        assert store.attrs["source"] == str(src) and store.dim == 6
        np.testing.assert_allclose(store.read("VID3"), data["VID3"])
        assert store.read("VID3").dtype == np.float32
    np.save(src / "bad.npy", np.zeros((2, 3, 6)))
    with pytest.raises(DataError, match=r"bad\.npy: expected \[T, D\]"):
        import_npy_dir(src, tmp_path / "s2.h5", ATTRS)
    assert not (tmp_path / "s2.h5").exists()
    with pytest.raises(DataError, match=r"no \.npy"):
        import_npy_dir(tmp_path / "empty_dir_absent", tmp_path / "s3.h5", ATTRS)


def test_import_hdf5(tmp_path: Path) -> None:
    src = tmp_path / "tall_c3d_features.hdf5"
    data = feats(3, n=2, dim=16)
    with h5py.File(src, "w") as f:
        for k, v in data.items():
            f.create_dataset(f"{k}.avi", data=v)
    out = import_hdf5(
        src,
        tmp_path / "t.h5",
        {**ATTRS, "backbone": "c3d", "pretrained": True, "weights": "c3d-sports1m"},
    )
    assert out["videos"] == 2
    with FeatureStore(tmp_path / "t.h5") as store:
        assert sorted(store.keys()) == ["VID0.avi", "VID1.avi"]
        assert store.attrs["pretrained"] is True and store.attrs["weights"] == "c3d-sports1m"
        np.testing.assert_array_equal(store.read("VID1.avi"), data["VID1"])
    with h5py.File(src, "a") as f:
        f.create_group("nested").create_dataset("x", data=np.zeros((2, 16)))
    with pytest.raises(DataError, match="'nested': expected a dataset"):
        import_hdf5(src, tmp_path / "t2.h5", ATTRS)


def test_resample_bins_average() -> None:
    x = np.arange(10, dtype=np.float32)[:, None].repeat(2, axis=1)
    out = resample(x, 5)
    assert out.shape == (5, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0], [0.5, 2.5, 4.5, 6.5, 8.5])
    np.testing.assert_array_equal(resample(x, 10), x)
    np.testing.assert_array_equal(resample(x, 12), x)
    rng = np.random.default_rng(0)
    for t, m in [(7, 3), (100, 64), (129, 128), (1000, 7)]:
        y = rng.standard_normal((t, 3)).astype(np.float32)
        r = resample(y, m)
        assert r.shape == (m, 3)
        # every source position in exactly one bin: the bin-size-weighted mean is the total mean
        edges = np.round(np.arange(m + 1) * t / m).astype(int)
        np.testing.assert_allclose(
            (r * np.diff(edges)[:, None]).sum(0), y.sum(0), rtol=1e-4, atol=1e-4
        )


def test_statistics_match_numpy_over_the_given_videos_only(tmp_path: Path) -> None:
    data = feats(n=4)
    data["VID3"] += 100.0  # a video outside the requested split must not move the statistics
    write_features(tmp_path / "f.h5", data, ATTRS)
    with FeatureStore(tmp_path / "f.h5") as store:
        mean, std = store.statistics(["VID0", "VID2", "VID1", "VID0"])  # duplicates count once
    rows = np.concatenate([data[k] for k in ("VID0", "VID1", "VID2")]).astype(np.float64)
    assert mean.dtype == np.float32 and std.shape == (8,)
    np.testing.assert_allclose(mean, rows.mean(0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(std, rows.std(0), rtol=1e-5, atol=1e-6)
    with FeatureStore(tmp_path / "f.h5") as store, pytest.raises(DataError, match="no features"):
        store.statistics(["missing"])
