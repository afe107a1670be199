"""S3 through boto3, for any S3-compatible store (AWS, SeaweedFS, MinIO, Ceph, moto).

Nothing here names a cloud: the endpoint, region and credentials come from the standard
environment variables, so the same code talks to the cluster's SeaweedFS gateway, to AWS or to
a test server on loopback:

- endpoint: ``AWS_ENDPOINT_URL`` (boto3's own name), else ``MLFLOW_S3_ENDPOINT_URL`` (MLflow's);
- region: ``AWS_DEFAULT_REGION`` / ``AWS_REGION`` (``us-east-1`` when unset: S3-compatible
  stores ignore it but SigV4 needs one);
- credentials: boto3's chain (``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``, profiles, IRSA).

Transient failures (5xx, throttling, dropped connections, timeouts) are retried with
exponential backoff by botocore's ``standard`` (or ``adaptive``) retry mode; the attempt count
comes from ``AWS_MAX_ATTEMPTS`` and the mode from ``AWS_RETRY_MODE``, the variables botocore
documents, and connect/read timeouts from ``DYNPATH_S3_CONNECT_TIMEOUT`` /
``DYNPATH_S3_READ_TIMEOUT``.

Transfers are verified: an upload is checked against the stored object's size and ETag, and a
download lands in a temporary file beside the target that is renamed only once its size and
ETag match the object's, so a half-written file is never taken as complete.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dynpath.errors import DynpathError
from dynpath.io import atomic_path

log = logging.getLogger(__name__)

DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_RETRY_MODE = "standard"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
#: Multipart threshold and part size of uploads; also used to recompute multipart ETags.
MULTIPART_CHUNKSIZE = 8 * 1024 * 1024


class S3Error(DynpathError):
    """An S3 transfer that failed or could not be verified; the message names the object."""


@dataclass(frozen=True)
class S3Settings:
    """Connection settings resolved from the environment (no secrets: credentials stay in
    boto3's chain and are never copied here)."""

    endpoint_url: str | None
    region: str
    max_attempts: int
    retry_mode: str
    connect_timeout: float
    read_timeout: float

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> S3Settings:
        env = dict(os.environ if env is None else env)
        endpoint = env.get("AWS_ENDPOINT_URL") or env.get("MLFLOW_S3_ENDPOINT_URL") or None
        region = env.get("AWS_DEFAULT_REGION") or env.get("AWS_REGION") or "us-east-1"
        mode = env.get("AWS_RETRY_MODE", DEFAULT_RETRY_MODE)
        if mode not in ("standard", "adaptive", "legacy"):
            raise S3Error(f"AWS_RETRY_MODE={mode!r}: expected standard, adaptive or legacy")
        return cls(
            endpoint_url=endpoint,
            region=region,
            max_attempts=_positive(env, "AWS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS, int),
            retry_mode=mode,
            connect_timeout=_positive(
                env, "DYNPATH_S3_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT, float
            ),
            read_timeout=_positive(env, "DYNPATH_S3_READ_TIMEOUT", DEFAULT_READ_TIMEOUT, float),
        )


def _positive(env: dict[str, str], name: str, default: Any, kind: type) -> Any:
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise S3Error(f"{name}={raw!r}: not a number") from None
    if value <= 0:
        raise S3Error(f"{name}={raw!r}: must be positive")
    return value


def client(settings: S3Settings | None = None, **overrides: Any) -> Any:
    """A boto3 S3 client for ``settings`` (default: from the environment).

    ``overrides`` replace single settings (e.g. ``max_attempts=1``). A custom endpoint gets
    path-style addressing: S3-compatible servers rarely have wildcard DNS for bucket hosts.
    """
    import boto3
    from botocore.config import Config as BotoConfig

    s = settings or S3Settings.from_env()
    if overrides:
        s = S3Settings(**{**s.__dict__, **overrides})
    config = BotoConfig(
        region_name=s.region,
        retries={"total_max_attempts": s.max_attempts, "mode": s.retry_mode},
        connect_timeout=s.connect_timeout,
        read_timeout=s.read_timeout,
        s3={"addressing_style": "path"} if s.endpoint_url else {},
    )
    return boto3.session.Session().client("s3", endpoint_url=s.endpoint_url, config=config)


def parse_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key)."""
    if not uri.startswith("s3://"):
        raise S3Error(f"{uri!r}: not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key:
        raise S3Error(f"{uri!r}: expected s3://BUCKET/KEY")
    return bucket, key


def _transfer_config() -> Any:
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_threshold=MULTIPART_CHUNKSIZE, multipart_chunksize=MULTIPART_CHUNKSIZE
    )


def etag_of(path: Path, part_size: int | None) -> str:
    """The ETag S3 gives ``path`` when stored in one piece (``part_size`` None: its MD5) or in
    parts of ``part_size`` bytes (MD5 of the part MD5s, ``-N``). Only meaningful for objects
    without SSE-KMS/SSE-C, which is the case of S3-compatible stores used here."""
    if part_size is None:
        md5 = hashlib.md5(usedforsecurity=False)
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                md5.update(block)
        return md5.hexdigest()
    digests = []
    with open(path, "rb") as fh:
        for part in iter(lambda: fh.read(part_size), b""):
            digests.append(hashlib.md5(part, usedforsecurity=False).digest())
    combined = hashlib.md5(b"".join(digests), usedforsecurity=False).hexdigest()
    return f"{combined}-{len(digests)}"


def _verify(s3: Any, bucket: str, key: str, path: Path, head: dict[str, Any]) -> None:
    """Raise unless ``path`` has the size and ETag of the object ``head`` describes."""
    uri = f"s3://{bucket}/{key}"
    size = path.stat().st_size
    if size != head["ContentLength"]:
        raise S3Error(f"{uri}: {size} bytes locally, {head['ContentLength']} in the store")
    etag = str(head.get("ETag", "")).strip('"')
    if not etag or head.get("ServerSideEncryption") == "aws:kms":
        return  # no verifiable ETag: the size check is all there is
    if "-" in etag:
        try:  # the part size of a multipart object is the length of its first part
            first = s3.head_object(Bucket=bucket, Key=key, PartNumber=1)["ContentLength"]
        except Exception:
            log.warning("%s: cannot read its part size; verified by size only", uri)
            return
        expected = etag_of(path, int(first))
    else:
        expected = etag_of(path, None)
    if expected != etag:
        raise S3Error(f"{uri}: content differs from the stored object (ETag {etag})")


def upload_file(local: str | Path, uri: str, s3: Any | None = None) -> dict[str, Any]:
    """Upload ``local`` to ``uri`` (multipart above 8 MiB) and verify the stored object."""
    local = Path(local)
    if not local.is_file():
        raise S3Error(f"{local}: no such file to upload")
    bucket, key = parse_uri(uri)
    s3 = s3 or client()
    try:
        s3.upload_file(str(local), bucket, key, Config=_transfer_config())
        head = s3.head_object(Bucket=bucket, Key=key)
    except Exception as err:
        raise S3Error(f"upload of {local} to {uri} failed: {err}") from err
    _verify(s3, bucket, key, local, head)
    return {"uri": uri, "size": head["ContentLength"], "etag": str(head["ETag"]).strip('"')}


def download_file(uri: str, local: str | Path, s3: Any | None = None) -> Path:
    """Download ``uri`` to ``local`` atomically: into a temp file beside it, renamed only when
    its size and ETag match the object (a truncated or replaced transfer raises instead)."""
    local = Path(local)
    bucket, key = parse_uri(uri)
    s3 = s3 or client()
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except Exception as err:
        raise S3Error(f"{uri}: cannot read the object: {err}") from err
    with atomic_path(local, suffix=".part") as tmp:
        try:
            s3.download_file(bucket, key, str(tmp), Config=_transfer_config())
        except Exception as err:
            raise S3Error(f"download of {uri} to {local} failed: {err}") from err
        _verify(s3, bucket, key, tmp, head)
    return local


def ensure_bucket(name: str, s3: Any | None = None) -> None:
    """Create bucket ``name`` unless it exists (infra bootstrap, tests)."""
    from botocore.exceptions import BotoCoreError, ClientError

    s3 = s3 or client()
    try:
        try:
            s3.head_bucket(Bucket=name)
            return
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise
        region = s3.meta.region_name
        if region and region != "us-east-1":
            s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
        else:
            s3.create_bucket(Bucket=name)
    except (BotoCoreError, ClientError) as err:
        raise S3Error(f"bucket {name!r} at {s3.meta.endpoint_url}: {err}") from err


def main(argv: list[str] | None = None) -> int:
    """``python -m dynpath.s3 ensure-bucket NAME | upload FILE URI | download URI FILE``, with
    the same environment, retries and verification as the library (used by infra/k8s)."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m dynpath.s3")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ensure-bucket").add_argument("name")
    up = sub.add_parser("upload")
    up.add_argument("file")
    up.add_argument("uri")
    down = sub.add_parser("download")
    down.add_argument("uri")
    down.add_argument("file")
    args = parser.parse_args(argv)
    try:
        if args.command == "ensure-bucket":
            ensure_bucket(args.name)
            result: Any = {"bucket": args.name}
        elif args.command == "upload":
            result = upload_file(args.file, args.uri)
        else:
            result = {"file": str(download_file(args.uri, args.file))}
    except DynpathError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
