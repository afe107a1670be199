#!/usr/bin/env bash
# A wheel folder holding every package the images install, made on the host from what its pip
# already reaches (its cache, find-links, local indexes, PyPI): with it, `WHEELS=DIR
# WHEELS_ONLY=1 infra/docker/build.sh` builds without any index (pip --no-index inside the
# build), which on CI saves downloading the lock a second time.
#
#   infra/docker/wheelhouse.sh DIR [cpu|mlflow|all]      (default: all)
#
# PYTHON (default: python3) is the pip to use: the project's venv on CI (`make setup` installs
# with uv, so pip's cache may not hold the lock: pip then downloads it, once). Sdists are built
# into wheels here (`pip wheel`), so the build needs no compiler; the project's own wheel is
# removed (the image builds it from src/).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DIR [cpu|mlflow|all]" >&2; exit 2; }
dir=$1
kind=${2:-all}
root=$(cd "$(dirname "$0")/../.." && pwd)
cpu=(torch==2.13.0 "$root" "setuptools>=68" wheel)
mlflow=(mlflow==3.17.2 boto3==1.43.117 Flask-WTF==1.3.0 psycopg2-binary==2.9.13)
case "$kind" in
  cpu) reqs=("${cpu[@]}") ;;
  mlflow) reqs=("${mlflow[@]}") ;;
  all) reqs=("${cpu[@]}" "${mlflow[@]}") ;;
  *) echo "wheelhouse.sh: unknown set '$kind' (cpu, mlflow or all)" >&2; exit 2 ;;
esac
mkdir -p "$dir"
start=$(date +%s)
# (a host whose pip config names local indexes warns once per package they lack: dropped)
"${PYTHON:-python3}" -m pip wheel --quiet --wheel-dir "$dir" -c "$root/constraints.txt" "${reqs[@]}" \
  2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
rm -f "$dir"/dynpath-*.whl
echo "wheelhouse.sh: $(find "$dir" -name '*.whl' | wc -l) wheels, $(du -sm "$dir" | cut -f1) MB" \
     "in $dir, $(( $(date +%s) - start ))s" >&2
