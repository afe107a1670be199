#!/usr/bin/env bash
# Sourced by the scripts of infra/docker: on a host without the unified cgroup v2 hierarchy
# (cgroups v1 or hybrid, e.g. this project's CI machines), point podman at
# infra/docker/containers.conf (runc, ulimits below the host's, host network), unless the
# caller set CONTAINERS_CONF. With cgroups v2 podman's own defaults stay.
if [ -z "${CONTAINERS_CONF:-}" ] && [ "$(stat -fc %T /sys/fs/cgroup 2>/dev/null)" != cgroup2fs ]; then
  CONTAINERS_CONF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/containers.conf"
  export CONTAINERS_CONF
fi
