#!/usr/bin/env bash
# The host's pip setting KEY (e.g. find-links, cert): the environment's PIP_<KEY> first, then
# pip's configuration (global.KEY); empty when neither has it. `make setup` hands pip's wheel
# folder to uv (which reads no pip.conf) and infra/docker/build.sh hands it and the CA file to
# the image build. PIP (default: python3 -m pip) is the pip whose configuration is read.
#
#   scripts/pip-setting.sh KEY
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 KEY" >&2; exit 2; }
env="PIP_$(echo "$1" | tr 'a-z-' 'A-Z_')"
if [ -n "${!env:-}" ]; then echo "${!env}"; exit 0; fi
read -ra pip <<< "${PIP:-python3 -m pip}"
"${pip[@]}" config get "global.$1" 2>/dev/null | head -n1 || true
