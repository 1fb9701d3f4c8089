#!/usr/bin/env bash
# Makes sure a Docker engine answers, for the container test tier (tests/test_image.py) and for
# `make image` on a fresh Debian machine. Exit 0: `docker info` works. Otherwise exit 1 with the
# reason on stderr (the container tier then fails with it; it is never skipped silently).
#
#   1. a daemon already answers: nothing to do;
#   2. no dockerd: tools/system-deps.sh installs Debian's docker.io (root and apt-get needed);
#   3. dockerd is started in the background, with --bridge=none --iptables=false: no container
#      ever gets an address outside loopback (builds use --network host, runs --network none).
#      Its log and pid go to $HOLLY_DOCKERD_DIR (default /tmp/holly-dockerd).
set -u
cd "$(dirname "$0")/.."
die() { echo "docker-engine: $*" >&2; exit 1; }

if docker info >/dev/null 2>&1; then
    exit 0
fi
if ! command -v dockerd >/dev/null 2>&1 && [ ! -x /usr/sbin/dockerd ]; then
    bash tools/system-deps.sh >&2
fi
dockerd=$(command -v dockerd || echo /usr/sbin/dockerd)
[ -x "$dockerd" ] || die "no dockerd, and tools/system-deps.sh could not install docker.io" \
    "(see /tmp/holly-system-deps.log; needs root and apt-get)"
command -v docker >/dev/null 2>&1 || die "dockerd is installed but the docker client is not"
[ "$(id -u)" -eq 0 ] || die "no Docker daemon answers and starting one needs root" \
    "(start it yourself, or add your user to the docker group)"

dir=${HOLLY_DOCKERD_DIR:-/tmp/holly-dockerd}
mkdir -p "$dir"
echo "docker-engine: starting $dockerd --bridge=none --iptables=false (log: $dir/dockerd.log)" >&2
setsid "$dockerd" --bridge=none --iptables=false >"$dir/dockerd.log" 2>&1 < /dev/null &
echo $! >"$dir/dockerd.pid"
for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && exit 0
    kill -0 "$(cat "$dir/dockerd.pid")" 2>/dev/null \
        || die "dockerd exited at start; last lines of $dir/dockerd.log:
$(tail -n 15 "$dir/dockerd.log")"
    sleep 1
done
die "dockerd did not answer within 60 s; last lines of $dir/dockerd.log:
$(tail -n 15 "$dir/dockerd.log")"
