#!/usr/bin/env bash
# The Kubeflow pipeline run locally with every component in its container: kfp.local's
# DockerRunner against the Docker API (docker's daemon, or `podman system service` started here
# on a private socket and stopped at the end). pipeline.image in PARAMS must name an image the
# engine has (`make image`; podman names it localhost/dynpath:cpu).
#
#   infra/docker/pipeline-in-containers.sh PARAMS WORKDIR
#
# Prints the run's JSON (the same as `dynpath pipeline run-local`, which uses the subprocess
# runner). PYTHON (default: python3) must import dynpath and kfp (the project's venv).
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 PARAMS WORKDIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
engine=$("$here/engine.sh")
# shellcheck source=infra/docker/podman.sh
source "$here/podman.sh"
if [ "$engine" = podman ] && [ -z "${DOCKER_HOST:-}" ]; then
  sockdir=$(mktemp -d)
  podman system service --time 0 "unix://$sockdir/podman.sock" &
  service=$!
  trap 'kill "$service" 2>/dev/null; wait "$service" 2>/dev/null; rm -rf "$sockdir"' EXIT
  for _ in $(seq 50); do [ -S "$sockdir/podman.sock" ] && break; sleep 0.2; done
  export DOCKER_HOST="unix://$sockdir/podman.sock"
elif [ "$engine" = buildah ]; then
  echo "$0: buildah has no Docker API: run with docker or podman" >&2; exit 3
fi
"${PYTHON:-python3}" - "$1" "$2" <<'PY'
import json, sys
from pathlib import Path

from dynpath.config import load_config
from dynpath.errors import EXIT_INTERNAL, error_message
from dynpath.kfp.compile import run_local

try:
    out = run_local(load_config(Path(sys.argv[1])), Path(sys.argv[2]), runner="docker")
except (Exception, KeyboardInterrupt) as err:
    code, message = error_message(err)
    if code == EXIT_INTERNAL:
        raise
    print(f"pipeline-in-containers.sh: error: {message}", file=sys.stderr)
    sys.exit(code)
print(json.dumps(out, indent=2))
PY
