#!/usr/bin/env bash
# Prints the container engine command to use: $ENGINE when set, else the first of docker,
# podman, buildah that answers here. A `docker` client without a running daemon does not count
# (`docker info` fails), so a machine with only the client falls through to podman.
# Exit 3 with one line on stderr when none is present.
set -euo pipefail
if [ -n "${ENGINE:-}" ]; then
  command -v "$ENGINE" >/dev/null 2>&1 || { echo "engine.sh: ENGINE=$ENGINE is not installed" >&2; exit 3; }
  echo "$ENGINE"
  exit 0
fi
if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  echo docker
elif command -v podman >/dev/null 2>&1; then
  echo podman
elif command -v buildah >/dev/null 2>&1; then
  echo buildah
else
  echo "engine.sh: no container engine (docker with a running daemon, podman or buildah)" \
       "was found: install one, e.g. \`apt-get install podman runc\`" >&2
  exit 3
fi
