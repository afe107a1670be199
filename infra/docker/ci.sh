#!/usr/bin/env bash
# The container part of CI (.ci/run): build the CPU and MLflow images on this machine (and the
# CUDA Dockerfile on a CPU base) and run their tests (tests/test_container_run.py,
# tests/test_mlflow_image.py) as slow tests.
#
#   infra/docker/ci.sh          (after `make setup`: PYTHON, default .venv/bin/python)
#
# What the machine lacks is an environment matter, not a fault of the project: no root apt for
# podman/runc/mmdebstrap, no Debian mirror for the base, an engine that cannot start a container
# (runtime, cgroups, kernel limits), no index for the wheels. Each prints one line
# "ci.sh: container tests SKIPPED: <why>" and exits 0. From the image build on, a failure is the
# project's (a broken Dockerfile, a file missing from the image, a wrong entry point): exit 1.
#
# Fast path for a 2-core machine: the base from mmdebstrap, every wheel from the host's pip
# (its cache holds the lock after `make setup`) into a wheel folder, the builds with
# --no-index from it, and only the quick image tests (the tiny DAG and the pipeline in
# containers stay with `make image-test`). Each phase prints its wall time.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root" || exit 1
python=${PYTHON:-$root/.venv/bin/python}
base=localhost/dynpath-base:bookworm-py311
wheels=${CI_WHEELS:-$(mktemp -d)}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

skip() { echo "ci.sh: container tests SKIPPED: $*" >&2; tail -n 5 "$log" | sed 's/^/ci.sh:   /' >&2; exit 0; }
fail() { echo "ci.sh: FAILED: $*" >&2; exit 1; }
phase_start=0
phase() { phase_start=$(date +%s); echo "ci.sh: $1 ..." >&2; }
done_() { echo "ci.sh: $1 took $(( $(date +%s) - phase_start ))s" >&2; }

phase "tools (podman, runc, mmdebstrap)"
need=()
for tool in podman runc mmdebstrap; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    skip "no ${need[*]} and no root apt-get"
  fi
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      podman runc mmdebstrap uidmap >/dev/null; } >"$log" 2>&1 || skip "apt-get could not install ${need[*]}"
fi
done_ tools
# shellcheck source=infra/docker/podman.sh
source "$here/podman.sh"
engine=$("$here/engine.sh" 2>"$log") || skip "no container engine"
[ "$engine" = buildah ] && skip "buildah cannot run containers"

phase "base image (mmdebstrap)"
if ! "$engine" image inspect "$base" >/dev/null 2>&1; then
  "$here/local-base.sh" "$base" >"$log" 2>&1 || skip "the Debian base could not be made (mirror?)"
fi
done_ base
phase "engine probe (a container runs)"
"$engine" run --rm "$base" python3 -c 'print("ok")' >"$log" 2>&1 ||
  skip "$engine cannot run a container here (runtime, cgroups or kernel limits)"
done_ probe

phase "wheel folder (host pip)"
PYTHON=$python "$here/wheelhouse.sh" "$wheels" all >"$log" 2>&1 || skip "pip could not fetch the wheels"
tail -n 1 "$log" >&2
done_ wheels

export WHEELS=$wheels WHEELS_ONLY=1 BASE_IMAGE=$base
for kind in cpu mlflow; do
  phase "image $kind"
  "$here/build.sh" "$kind" || fail "the $kind image does not build"
  done_ "image $kind"
done
# Dockerfile.cuda up to the CUDA runtime: every instruction on the Debian base with the CPU torch
# wheel (the CUDA base and wheel cannot be pulled here); it caught a `pip` the venv lacked
phase "image cuda on a CPU base"
PYTHON=$python "$here/cuda-on-cpu.sh" || fail "Dockerfile.cuda does not build on a CPU base"
"$engine" run --rm localhost/dynpath:cuda-on-cpu dynpath model-info >"$log" 2>&1 ||
  fail "the CUDA image (CPU base) does not run dynpath model-info"
done_ "image cuda on a CPU base"
[ -n "${CI_WHEELS:-}" ] || rm -rf "$wheels"

phase "image tests"
PYTEST_ADDOPTS='' DYNPATH_CONTAINER_TESTS=1 "$python" -m pytest -q -rs -p no:randomly -m slow \
  tests/test_container_run.py tests/test_mlflow_image.py \
  -k "not tiny and not pipeline" || fail "the image tests"
done_ "image tests"
