"""dynpath.s3 against a real S3-compatible server on loopback (moto), plus a faulty proxy."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from s3_proxy import FaultyS3Proxy
from s3_server import bucket, s3_endpoint, s3_env  # noqa: F401  (fixtures)

from dynpath import s3

# --------------------------------------------------------------------------- settings (fast)


def test_settings_from_env_defaults_and_overrides() -> None:
    s = s3.S3Settings.from_env({})
    assert s.endpoint_url is None and s.region == "us-east-1"
    assert (s.max_attempts, s.retry_mode) == (s3.DEFAULT_MAX_ATTEMPTS, "standard")
    s = s3.S3Settings.from_env(
        {
            "MLFLOW_S3_ENDPOINT_URL": "http://seaweedfs:8333",
            "AWS_REGION": "eu-west-3",
            "AWS_MAX_ATTEMPTS": "9",
            "AWS_RETRY_MODE": "adaptive",
            "DYNPATH_S3_READ_TIMEOUT": "5",
        }
    )
    assert s.endpoint_url == "http://seaweedfs:8333" and s.region == "eu-west-3"
    assert (s.max_attempts, s.retry_mode, s.read_timeout) == (9, "adaptive", 5.0)
    both = {"AWS_ENDPOINT_URL": "http://a:1", "MLFLOW_S3_ENDPOINT_URL": "http://b:2"}
    assert s3.S3Settings.from_env(both).endpoint_url == "http://a:1"


@pytest.mark.parametrize(
    "env", [{"AWS_MAX_ATTEMPTS": "0"}, {"AWS_MAX_ATTEMPTS": "x"}, {"AWS_RETRY_MODE": "yolo"}]
)
def test_settings_reject_bad_values(env: dict[str, str]) -> None:
    with pytest.raises(s3.S3Error, match=next(iter(env))):
        s3.S3Settings.from_env(env)


def test_client_config_carries_retries_and_timeouts() -> None:
    settings = s3.S3Settings.from_env(
        {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_MAX_ATTEMPTS": "7"}
    )
    c = s3.client(settings, connect_timeout=3.0)
    cfg = c.meta.config
    assert cfg.retries == {"total_max_attempts": 7, "mode": "standard"}  # AWS_MAX_ATTEMPTS: total
    assert (cfg.connect_timeout, cfg.read_timeout) == (3.0, s3.DEFAULT_READ_TIMEOUT)
    assert c.meta.endpoint_url == "http://127.0.0.1:9"
    assert cfg.s3 == {"addressing_style": "path"}


def test_parse_uri() -> None:
    assert s3.parse_uri("s3://b/dvc/files/md5/ab") == ("b", "dvc/files/md5/ab")
    for bad in ("b/key", "s3://b", "s3:///key"):
        with pytest.raises(s3.S3Error):
            s3.parse_uri(bad)


def test_etag_of_matches_s3_rules(tmp_path: Path) -> None:
    import hashlib

    f = tmp_path / "f"
    f.write_bytes(b"a" * 10 + b"b" * 10)
    assert s3.etag_of(f, None) == hashlib.md5(f.read_bytes()).hexdigest()
    parts = [hashlib.md5(b"a" * 10).digest(), hashlib.md5(b"b" * 10).digest()]
    assert s3.etag_of(f, 10) == hashlib.md5(b"".join(parts)).hexdigest() + "-2"


# --------------------------------------------------------------------------- real server


@pytest.mark.slow
def test_upload_download_roundtrip_small_and_multipart(bucket: str, tmp_path: Path) -> None:  # noqa: F811
    small = tmp_path / "small.bin"
    small.write_bytes(os.urandom(1000))
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(s3.MULTIPART_CHUNKSIZE * 2 + 123))
    for src in (small, big):
        info = s3.upload_file(src, f"s3://{bucket}/dir/{src.name}")
        assert info["size"] == src.stat().st_size
        assert ("-" in info["etag"]) == (src is big)  # the big one went multipart
        out = s3.download_file(f"s3://{bucket}/dir/{src.name}", tmp_path / "dl" / src.name)
        assert out.read_bytes() == src.read_bytes()
    assert not list((tmp_path / "dl").glob(".*.part")), "temp files left behind"


@pytest.mark.slow
def test_download_of_missing_object_leaves_nothing(bucket: str, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(s3.S3Error, match="cannot read"):
        s3.download_file(f"s3://{bucket}/nope", tmp_path / "x")
    assert list(tmp_path.iterdir()) == []


class _ReplacingClient:
    """A real client whose object is overwritten between HEAD and GET (a concurrent writer)."""

    def __init__(self, inner: Any, body: bytes) -> None:
        self._inner, self._body = inner, body

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def download_file(self, bkt: str, key: str, path: str, **kw: Any) -> None:
        self._inner.put_object(Bucket=bkt, Key=key, Body=self._body)
        self._inner.download_file(bkt, key, path, **kw)


@pytest.mark.slow
def test_object_changed_mid_download_is_not_taken(bucket: str, tmp_path: Path) -> None:  # noqa: F811
    src = tmp_path / "src"
    src.write_bytes(b"x" * 4096)
    s3.upload_file(src, f"s3://{bucket}/obj")
    target = tmp_path / "out" / "obj"
    for body in (b"y" * 100, b"z" * 4096):  # shorter, then same size but different content
        with pytest.raises(s3.S3Error, match="obj"):
            s3.download_file(f"s3://{bucket}/obj", target, s3=_ReplacingClient(s3.client(), body))
        assert not target.exists()
        assert list(target.parent.iterdir()) == []


# --------------------------------------------------------------------------- retries


FAULT_OF = {"503": "fail_any", "drop": "drop_any"}


@pytest.fixture
def faulty(s3_endpoint: str) -> Iterator[Any]:  # noqa: F811
    """``faulty(n, "503")`` fails the first ``n`` requests with 503 SlowDown, ``faulty(n,
    "drop")`` drops their connections (counted in ``injected[FAULT_OF[mode]]``)."""
    proxies: list[FaultyS3Proxy] = []

    def make(failures: int, mode: str) -> FaultyS3Proxy:
        proxies.append(FaultyS3Proxy(s3_endpoint, **{FAULT_OF[mode]: failures}))
        return proxies[-1]

    yield make
    for p in proxies:
        p.close()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["503", "drop"])
def test_transient_failures_are_retried(
    mode: str,
    faulty: Any,
    bucket: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = tmp_path / "src"
    src.write_bytes(os.urandom(2048))
    proxy = faulty(failures=2, mode=mode)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "4")
    s3.upload_file(src, f"s3://{bucket}/retried")
    kind = FAULT_OF[mode]
    assert proxy.injected[kind] == 2 and proxy.seen >= 4  # 2 failures + PUT + HEAD went through
    proxy.faults[kind] += 2  # and fail the next two requests of the download too
    out = s3.download_file(f"s3://{bucket}/retried", tmp_path / "out")
    assert out.read_bytes() == src.read_bytes()
    assert proxy.injected[kind] == 4


@pytest.mark.slow
def test_without_retries_the_same_fault_fails(
    faulty: Any,
    bucket: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"data")
    proxy = faulty(failures=1, mode="503")
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(s3.S3Error, match=r"SlowDown|503"):
        s3.upload_file(src, f"s3://{bucket}/once")
    assert proxy.injected["fail_any"] == 1


@pytest.mark.slow
def test_module_command_as_used_by_the_bucket_job(
    s3_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    """``python -m dynpath.s3`` (the create-bucket Job of infra/k8s) against the server."""
    import subprocess
    import sys
    import uuid

    name = f"cli-{uuid.uuid4().hex[:8]}"
    src = tmp_path / "f.txt"
    src.write_text("hello")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dynpath.s3", *args], capture_output=True, text=True, timeout=120
        )

    for _ in range(2):  # idempotent
        assert cli("ensure-bucket", name).returncode == 0
    assert cli("upload", str(src), f"s3://{name}/a/f.txt").returncode == 0
    assert cli("download", f"s3://{name}/a/f.txt", str(tmp_path / "g.txt")).returncode == 0
    assert (tmp_path / "g.txt").read_text() == "hello"
    bad = cli("download", f"s3://{name}/missing", str(tmp_path / "h.txt"))
    assert bad.returncode == 2 and "missing" in bad.stderr
