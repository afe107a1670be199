#!/usr/bin/env bash
# Builds infra/docker/Dockerfile.cuda on a CPU base, as far as a machine without GPU, CUDA
# registry or GitHub can: every instruction of the file (the uv stage, the venv, both pip
# installs from the lock, the project, the runtime stage and its user) with the local Debian
# base in place of nvidia/cuda, its own Python 3.11 in place of uv's download, and the CPU torch
# wheel in place of the CUDA one. What stays unverified: the CUDA base, the CUDA torch wheel
# and its nvidia-* libraries, and the GPU at run time (docs/cluster.md).
#
#   infra/docker/cuda-on-cpu.sh          (tag: dynpath:cuda-on-cpu; WHEELS, WHEELS_ONLY as build.sh)
#
# The uv stage needs an image holding /uv: made here from uv's wheel on PyPI (the same binary
# as ghcr.io/astral-sh/uv, same version) when the engine lacks it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
engine=$("$here/engine.sh")
# shellcheck source=infra/docker/podman.sh
source "$here/podman.sh"
base=${BASE_IMAGE:-localhost/dynpath-base:bookworm-py311}
uv_version=0.8.0
uv_image=localhost/dynpath-uv:$uv_version
if ! "$engine" image inspect "$uv_image" >/dev/null 2>&1; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "${PYTHON:-python3}" -m pip download --quiet --no-deps --only-binary :all: \
    --platform manylinux_2_17_x86_64 -d "$tmp" "uv==$uv_version"
  "${PYTHON:-python3}" - "$tmp" <<'PY'
import sys, zipfile
from pathlib import Path
tmp = Path(sys.argv[1])
(wheel,) = tmp.glob("uv-*.whl")
with zipfile.ZipFile(wheel) as zf:
    (name,) = [n for n in zf.namelist() if n.endswith(".data/scripts/uv")]
    (tmp / "uv").write_bytes(zf.read(name))
(tmp / "uv").chmod(0o755)
PY
  tar -C "$tmp" -cf "$tmp/uv.tar" uv
  "$engine" import "$tmp/uv.tar" "$uv_image" >/dev/null
fi
TAG=${TAG:-dynpath:cuda-on-cpu} BASE_IMAGE=$base \
  BUILD_ARGS="UV_IMAGE=$uv_image UV_PYTHON_PREFERENCE=only-system PYTHON_VERSION=3.11" \
  "$here/build.sh" cuda
