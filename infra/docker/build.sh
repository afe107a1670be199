#!/usr/bin/env bash
# Build one image of infra/docker with whichever engine is here (infra/docker/engine.sh).
#
#   infra/docker/build.sh [cpu|cuda|mlflow]      (`make image` = cpu, tagged dynpath:cpu)
#
# Environment (all optional; the Dockerfile's public defaults otherwise):
#   TAG          the image tag (default dynpath:<kind>)
#   BASE_IMAGE   --build-arg PYTHON_IMAGE, a Debian/Python 3.11 base; default: the local base
#                localhost/dynpath-base:bookworm-py311 when the engine has it, else the public one
#   DYNPATH_LOCAL_BASE=1  make that local base first when it is missing (infra/docker/local-base.sh)
#   WHEELS       a wheel folder whose wheels the build may use (default: pip's find-links here)
#   PIP_CA       the CA bundle pip needs inside the build (default: pip's `cert` here)
#   BUILD_ARGS   more build args, NAME=VALUE separated by spaces
#   WHEELS_ONLY=1  install from WHEELS only, no index (a wheel folder holding the whole lock:
#                infra/docker/wheelhouse.sh)
#   TORCH_INDEX  --build-arg TORCH_INDEX (default: PyTorch's CPU index; https://pypi.org/simple
#                when WHEELS holds the torch wheel, for torch's own dependencies)
# Wheels and CA bundle are staged in infra/docker/local/ for the build only (git-ignored;
# mounted, never copied into a layer; emptied afterwards). Prints the tag, the build time and the image size.
set -euo pipefail
kind=${1:-cpu}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dockerfile="$here/Dockerfile.$kind"
[ -f "$dockerfile" ] || { echo "build.sh: no $dockerfile (cpu, cuda or mlflow)" >&2; exit 2; }
engine=$("$here/engine.sh")
# shellcheck source=infra/docker/podman.sh
source "$here/podman.sh"
tag=${TAG:-dynpath:$kind}
local_base=localhost/dynpath-base:bookworm-py311

has_image() {
  case "$engine" in
    docker) docker image inspect "$1" >/dev/null 2>&1 ;;
    *) "$engine" image exists "$1" ;;
  esac
}

staged_files() {  # what the build will see of the local folder (not its README/.gitignore)
  local f
  for f in "$stage"/* "$stage"/.[!.]*; do
    [ -e "$f" ] || continue
    case "${f##*/}" in README.md|.gitignore) ;; *) printf '%s ' "${f##*/}" ;; esac
  done
}

pip_setting() {  # the host's pip setting $1 (env PIP_<KEY> first, then pip config)
  "$here/../../scripts/pip-setting.sh" "$1"
}

args=()
base=${BASE_IMAGE:-}
if [ -z "$base" ] && [ "${DYNPATH_LOCAL_BASE:-0}" = 1 ] && ! has_image "$local_base"; then
  "$here/local-base.sh" "$local_base"
fi
if [ -z "$base" ] && has_image "$local_base"; then base=$local_base; fi
if [ "$kind" = cuda ]; then
  # the CUDA image's base is CUDA_IMAGE, and only an explicit BASE_IMAGE replaces it
  # (infra/docker/cuda-on-cpu.sh): never the local Debian base by default
  base=${BASE_IMAGE:-}
  [ -n "$base" ] && args+=(--build-arg "CUDA_IMAGE=$base")
else
  [ -n "$base" ] && args+=(--build-arg "PYTHON_IMAGE=$base")
fi
for arg in ${BUILD_ARGS:-}; do args+=(--build-arg "$arg"); done

# stage the local wheels and CA bundle (hard links when the file system allows)
stage="$here/local"
unstage() { find "$stage" -mindepth 1 -maxdepth 1 ! -name README.md ! -name .gitignore -exec rm -rf {} +; }
unstage
trap unstage EXIT
wheels=${WHEELS:-$(pip_setting find-links)}
wheels=${wheels#file://}
if [ -n "$wheels" ] && [ -d "$wheels" ]; then
  for whl in "$wheels"/*.whl; do
    [ -e "$whl" ] && { ln -f "$whl" "$stage/" 2>/dev/null || cp -f "$whl" "$stage/"; }
  done
fi
ca=${PIP_CA:-$(pip_setting cert)}
[ -n "$ca" ] && [ -f "$ca" ] && cp -f "$ca" "$stage/ca.crt"
torch_index=${TORCH_INDEX:-}
if [ -z "$torch_index" ] && compgen -G "$stage/torch-2.13.0+cpu-*.whl" >/dev/null; then
  torch_index=https://pypi.org/simple
fi
[ -n "$torch_index" ] && args+=(--build-arg "TORCH_INDEX=$torch_index")
[ "${WHEELS_ONLY:-0}" = 1 ] && args+=(--build-arg WHEELS_ONLY=1)

echo "build.sh: $engine builds $tag from ${dockerfile#"$root"/}" \
     "(base: ${base:-the Dockerfile default}; staged: $(staged_files))" >&2
start=$(date +%s)
case "$engine" in
  buildah) buildah bud --layers -f "$dockerfile" -t "$tag" "${args[@]}" "$root" ;;
  podman) podman build --network host -f "$dockerfile" -t "$tag" "${args[@]}" "$root" ;;
  *) docker build -f "$dockerfile" -t "$tag" "${args[@]}" "$root" ;;
esac
seconds=$(( $(date +%s) - start ))
size=$("$engine" image inspect --format '{{.Size}}' "$tag" 2>/dev/null || echo 0)
echo "build.sh: built $tag in ${seconds}s, $(( size / 1000000 )) MB" >&2
