#!/usr/bin/env bash
# The Debian bookworm + Python 3.11 base image, made without any registry: for machines that
# cannot pull python:3.11-slim (air-gapped, or a registry-less CI). mmdebstrap builds a minimal
# root filesystem from the Debian mirror (about 15 s) and the engine imports it as an image.
#
#   infra/docker/local-base.sh [TAG]        (default: localhost/dynpath-base:bookworm-py311)
#
# Then: BASE_IMAGE=localhost/dynpath-base:bookworm-py311 make image (or DYNPATH_LOCAL_BASE=1,
# which runs this script when the tag is missing). Python is Debian's 3.11 (3.11.2), the same
# minor version as the lock; the image holds python3, venv and the CA certificates, nothing else.
set -euo pipefail
tag=${1:-localhost/dynpath-base:bookworm-py311}
here=$(cd "$(dirname "$0")" && pwd)
engine=$("$here/engine.sh")
command -v mmdebstrap >/dev/null 2>&1 || {
  echo "local-base.sh: mmdebstrap is not installed (apt-get install mmdebstrap)" >&2; exit 3; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# --variant=minbase: essential packages and apt only (no init, no docs beyond copyright); apt
# keeps no downloaded .deb and no package lists, as in Docker's Debian images (docker-clean).
# The hooks' "$1" (the root directory) is expanded by mmdebstrap's shell, not this one.
# shellcheck disable=SC2016
mmdebstrap --quiet --variant=minbase \
  --include=python3,python3-venv,ca-certificates \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
  --customize-hook='printf "%s\n" "APT::Keep-Downloaded-Packages \"false\";" \
    "DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb || true\"; };" \
    > "$1/etc/apt/apt.conf.d/docker-clean"' \
  --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin' \
  bookworm "$tmp/rootfs.tar"
"$engine" import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$tmp/rootfs.tar" "$tag" >/dev/null
echo "$tag"
