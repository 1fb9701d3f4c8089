#!/usr/bin/env bash
# Prints the base image to build holly's image from (the Dockerfile's PYTHON_IMAGE build arg):
#
#   1. the pinned base named as the first argument, if the engine has it or can pull it;
#   2. else a stand-in where no image registry is reachable: Debian 12 (bookworm, minbase) with
#      python3.11, its venv module and ca-certificates, made by debootstrap from the Debian mirror
#      ($HOLLY_DEBIAN_MIRROR, default http://deb.debian.org/debian) and loaded with `docker
#      import` as $HOLLY_STANDIN_IMAGE (default holly-standin/debian-python:bookworm). An image of
#      that tag that already exists is reused, so only the first run pays (~1 min).
#
#   docker build --build-arg PYTHON_IMAGE="$(tools/base-image.sh "$pinned")" ...
#
# The stand-in has Debian's CPython 3.11.2 instead of the pinned image's 3.11.14: same minor
# version as the lock files' target, same wheels. Progress goes to stderr, the reference to stdout.
set -euo pipefail
pinned=${1:?usage: tools/base-image.sh <pinned base image reference>}
standin=${HOLLY_STANDIN_IMAGE:-holly-standin/debian-python:bookworm}
mirror=${HOLLY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
log() { echo "base-image: $*" >&2; }

if docker image inspect "$pinned" >/dev/null 2>&1; then
    echo "$pinned"; exit 0
fi
if timeout "${HOLLY_PULL_TIMEOUT:-60}" docker pull -q "$pinned" >/dev/null 2>&1; then
    echo "$pinned"; exit 0
fi
log "cannot pull $pinned; using the stand-in $standin"
if docker image inspect "$standin" >/dev/null 2>&1; then
    echo "$standin"; exit 0
fi
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] \
    || { log "no debootstrap (tools/system-deps.sh installs it)"; exit 1; }
[ "$(id -u)" -eq 0 ] || { log "debootstrap needs root"; exit 1; }
work=$(mktemp -d /tmp/holly-standin.XXXXXX)
trap 'rm -rf "$work"' EXIT
log "debootstrap bookworm from $mirror (log: $work/debootstrap.log)"
PATH=$PATH:/usr/sbin debootstrap --variant=minbase \
    --include=python3.11,python3.11-venv,python3-venv,ca-certificates \
    bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
tar -C "$work/rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["python3"]' \
    --message "holly stand-in base: debootstrap --variant=minbase bookworm + python3.11" \
    - "$standin" >/dev/null
log "imported $standin"
echo "$standin"
