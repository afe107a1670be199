"""S3 faults that tests/test_s3_client.py does not inject (it covers 503s and connections dropped
before any answer, on single-part objects, and an object replaced mid-download).

Here a proxy in front of the real S3 server (moto, ``s3_server.py``; the proxy is
``s3_proxy.py``, shared with tests/test_s3_client.py) misbehaves the way a flaky network or
gateway does:

- downloads whose connection is cut half-way through the body (the response promised N bytes,
  N/2 arrive): retried and completed, or, when it never stops, a clear S3Error and no file;
- multipart uploads whose part uploads fail for a while (HTTP 503) or for good: retried and
  verified, or a clear S3Error, no object at the key and no multipart upload left open;
- an endpoint that refuses connections for a while (nothing listening yet), then comes up: the
  transfer waits it out; one that never comes up: a clear S3Error naming the object.

"No half-written object taken as complete": after every failure the target file does not exist,
no temp file is left beside it, and the store holds no object under the key.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from s3_proxy import FaultyS3Proxy
from s3_server import bucket, s3_endpoint, s3_env  # noqa: F401  (fixtures)
from waiting import held_port

from dynpath import s3

pytestmark = pytest.mark.slow

BIG = s3.MULTIPART_CHUNKSIZE + 1024 * 1024  # two parts


@pytest.fixture
def proxies(s3_endpoint: str) -> Iterator[Any]:  # noqa: F811
    made: list[FaultyS3Proxy] = []

    def make(sock: socket.socket | None = None, **faults: int) -> FaultyS3Proxy:
        made.append(FaultyS3Proxy(s3_endpoint, sock, **faults))
        return made[-1]

    yield make
    for p in made:
        p.close()


def _no_leftovers(target: Path) -> None:
    assert not target.exists()
    assert [p.name for p in target.parent.iterdir()] == [], "a temp file was left"


def _no_object(bucket: str, key: str) -> None:  # noqa: F811
    client = s3.client()
    assert client.list_objects_v2(Bucket=bucket, Prefix=key).get("KeyCount", 0) == 0
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def _payload(tmp_path: Path, size: int) -> Path:
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(size))
    return src


def test_downloads_cut_mid_body_are_retried_to_the_exact_bytes(
    proxies: Any,
    bucket: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = _payload(tmp_path, BIG)
    s3.upload_file(src, f"s3://{bucket}/cut")
    proxy = proxies(truncate_get=2)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "5")
    out = s3.download_file(f"s3://{bucket}/cut", tmp_path / "dl" / "cut.bin")
    assert proxy.injected["truncate_get"] == 2
    assert out.read_bytes() == src.read_bytes()
    assert [p.name for p in out.parent.iterdir()] == ["cut.bin"]


def test_downloads_cut_every_time_fail_clearly_and_leave_nothing(
    proxies: Any,
    bucket: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = _payload(tmp_path, 300_000)
    s3.upload_file(src, f"s3://{bucket}/always-cut")
    proxy = proxies(truncate_get=1000)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    target = tmp_path / "dl" / "always-cut.bin"
    target.parent.mkdir()
    with pytest.raises(s3.S3Error, match=rf"download of s3://{bucket}/always-cut to .* failed"):
        s3.download_file(f"s3://{bucket}/always-cut", target)
    assert proxy.injected["truncate_get"] >= 2
    _no_leftovers(target)


def test_multipart_upload_with_failing_parts_is_retried_and_verified(
    proxies: Any,
    bucket: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = _payload(tmp_path, BIG)
    proxy = proxies(fail_part=2)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "5")
    result = s3.upload_file(src, f"s3://{bucket}/parts")
    assert proxy.injected["fail_part"] == 2
    assert result["size"] == BIG and result["etag"].endswith("-2")  # a real two-part upload
    monkeypatch.setenv("AWS_ENDPOINT_URL", os.environ["MLFLOW_S3_ENDPOINT_URL"])  # direct
    back = s3.download_file(f"s3://{bucket}/parts", tmp_path / "back.bin")
    assert back.read_bytes() == src.read_bytes()


def test_multipart_upload_that_keeps_failing_leaves_no_object(
    proxies: Any,
    bucket: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = _payload(tmp_path, BIG)
    proxy = proxies(fail_part=1000)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    with pytest.raises(s3.S3Error, match=rf"upload of {src} to s3://{bucket}/never failed"):
        s3.upload_file(src, f"s3://{bucket}/never")
    monkeypatch.setenv("AWS_ENDPOINT_URL", os.environ["MLFLOW_S3_ENDPOINT_URL"])
    _no_object(bucket, "never")


def test_an_endpoint_that_refuses_connections_for_a_while(
    proxies: Any,
    bucket: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The endpoint comes up once the client has been refused (an event the client reports, not
    a timer): the upload must have waited it out by retrying, whatever the machine's speed."""
    src = _payload(tmp_path, 50_000)
    sock = held_port()  # bound, not listening: connection refused, and the port stays ours
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{sock.getsockname()[1]}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "8")
    monkeypatch.setenv("DYNPATH_S3_CONNECT_TIMEOUT", "2")
    client = s3.client()
    refused: list[str] = []

    def on_attempt(attempts: int, caught_exception: Exception | None = None, **_: Any) -> None:
        if isinstance(caught_exception, EndpointConnectionError) and not refused:
            refused.append(f"attempt {attempts}: {caught_exception}")
            proxies(sock=sock)  # the endpoint comes up: the next attempt gets through

    # first in line: botocore's retry handler answers the same event and ends the emission
    client.meta.events.register_first("needs-retry.s3", on_attempt)
    try:
        s3.upload_file(src, f"s3://{bucket}/late", s3=client)
    finally:
        if not refused:  # else the proxy listens on it (and closes it at teardown)
            sock.close()
    print(f"\nupload refused first ({refused}), then retried through")
    assert len(refused) == 1, "the upload never met the refusing endpoint"
    out = s3.download_file(f"s3://{bucket}/late", tmp_path / "late.bin")
    assert out.read_bytes() == src.read_bytes()


def test_an_endpoint_that_never_answers_fails_naming_the_object(
    bucket: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = _payload(tmp_path, 1000)
    target = tmp_path / "dl" / "gone.bin"
    target.parent.mkdir()
    with held_port() as sock:  # held until the end: nothing else can start listening there
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{sock.getsockname()[1]}")
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        with pytest.raises(s3.S3Error, match=rf"upload of {src} to s3://{bucket}/gone failed"):
            s3.upload_file(src, f"s3://{bucket}/gone")
        with pytest.raises(s3.S3Error, match=rf"s3://{bucket}/gone: cannot read the object"):
            s3.download_file(f"s3://{bucket}/gone", target)
    _no_leftovers(target)
