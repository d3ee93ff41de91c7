#!/usr/bin/env bash
# Make a Docker Engine answer on this machine (idempotent).
#
#   scripts/docker-up.sh          install what is missing, start dockerd if no engine answers
#
# Installs Debian's docker.io (dockerd), mmdebstrap (for `scanflow build-base`) and
# docker-registry (the local registry the push tests start) when missing, then starts dockerd
# in the background unless an engine already answers on $DOCKER_HOST or the default socket.
# Used by .ci/run and `make docker`. Needs root (or sudo) only when something must be done.
set -euo pipefail

LOG=${SCANFLOW_DOCKERD_LOG:-/var/log/scanflow-dockerd.log}
WAIT=${SCANFLOW_DOCKERD_WAIT:-60}

engine_answers() {
    command -v docker >/dev/null 2>&1 && docker version --format '{{.Server.Version}}' >/dev/null 2>&1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "docker-up: '$*' needs root; run this script as root or install sudo" >&2; exit 1
    fi
}

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v mmdebstrap >/dev/null 2>&1 || missing+=(mmdebstrap)
command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
if [ ${#missing[@]} -gt 0 ]; then
    echo "docker-up: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if engine_answers; then
    echo "docker-up: engine answers ($(docker version --format '{{.Server.Version}}'))"
    exit 0
fi

if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST#unix://}" = "$DOCKER_HOST" ]; then
    echo "docker-up: DOCKER_HOST=$DOCKER_HOST does not answer, and it is not a local socket I can start" >&2
    exit 1
fi

# A dockerd that died uncleanly leaves its pid file behind; dockerd refuses to start over it.
if [ -f /var/run/docker.pid ] && ! kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; then
    as_root rm -f /var/run/docker.pid
fi
if ! { [ -f /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }; then
    echo "docker-up: starting dockerd (log: $LOG)"
    as_root touch "$LOG"
    as_root setsid nohup dockerd >>"$LOG" 2>&1 </dev/null &
fi

for _ in $(seq 1 "$WAIT"); do
    if engine_answers; then
        echo "docker-up: engine answers ($(docker version --format '{{.Server.Version}}'))"
        exit 0
    fi
    sleep 1
done
echo "docker-up: dockerd did not answer within ${WAIT}s; last lines of $LOG:" >&2
tail -n 20 "$LOG" >&2 || true
exit 1
