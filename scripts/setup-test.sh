#!/usr/bin/env bash
# Everything the test suite needs on this machine, before any test runs (idempotent).
#
#   scripts/setup-test.sh      (what `make setup-test` runs; `make test` runs it first)
#
# 1. Debian packages the tests use (one `apt-get update` only when something is missing):
#    Chromium (Galata), openssl/curl (the test cluster's certificates and probes), iptables,
#    conntrack, containerd and the CNI plugins (the test cluster's node), Node.js (the JS build).
# 2. A Docker Engine that answers (scripts/docker-up.sh: docker.io, mmdebstrap, docker-registry).
# 3. Go >= 1.26 (/usr/local/go/bin, else a toolchain from the Go module proxy into the cache).
# 4. The test cluster's binaries: tests/k8s/cluster.sh build (cached by version; ~16 min cold).
# 5. The Galata test dependencies (labextension/ui-tests; the browser is Debian's /usr/bin/chromium).
# Needs root (or sudo) only when a package must be installed or dockerd started.
set -euo pipefail
cd "$(dirname "$0")/.."

GO_MIN=1.26
GO_TOOLCHAIN=${SCANFLOW_GO_TOOLCHAIN:-go1.26.8}
CACHE=${SCANFLOW_CACHE:-$HOME/.cache/scanflow}

log() { printf '[setup-test %3ss] %s\n' "$SECONDS" "$*" >&2; }
die() { printf '[setup-test] ERROR: %s\n' "$*" >&2; exit 1; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        die "'$*' needs root; run this as root or install sudo"
    fi
}

# ---- 1. Debian packages: "command package" pairs; a package is installed when its command is missing
PACKAGES=(
    "chromium chromium"
    "openssl openssl"
    "curl curl"
    "unzip unzip"
    "iptables iptables"
    "conntrack conntrack"
    "containerd containerd"
    "/usr/lib/cni/bridge containernetworking-plugins"
    "node nodejs"
    "flock util-linux"
)
missing=()
for pair in "${PACKAGES[@]}"; do
    cmd=${pair%% *} pkg=${pair#* }
    if [[ $cmd == /* ]]; then [[ -e $cmd ]] && continue; else command -v "$cmd" >/dev/null 2>&1 && continue; fi
    missing+=("$pkg")
done
if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
else
    log "Debian packages present"
fi

# ---- 2. Docker Engine
scripts/docker-up.sh

# ---- 3. Go on PATH (the test cluster is built from the Go module proxy)
go_ok() {  # go_ok BINARY -> true when it is Go >= $GO_MIN
    local v
    v=$("$1" env GOVERSION 2>/dev/null) || return 1
    v=${v#go}
    [[ $(printf '%s\n%s\n' "$GO_MIN" "${v%%[a-z]*}" | sort -V | head -n 1) == "$GO_MIN" ]]
}
GO=""
for candidate in "$(command -v go || true)" /usr/local/go/bin/go "$CACHE/go/$GO_TOOLCHAIN/go/bin/go"; do
    if [[ -n $candidate && -x $candidate ]] && go_ok "$candidate"; then GO=$candidate; break; fi
done
if [[ -z $GO ]]; then
    # The Go toolchain is itself published as a module (golang.org/toolchain) on the Go proxy.
    zip=$CACHE/go/$GO_TOOLCHAIN.zip
    url="${GOPROXY_URL:-https://proxy.golang.org}/golang.org/toolchain/@v/v0.0.1-$GO_TOOLCHAIN.linux-$(dpkg --print-architecture).zip"
    log "no Go >= $GO_MIN on PATH or in /usr/local/go: fetching $GO_TOOLCHAIN from $url"
    mkdir -p "$CACHE/go/$GO_TOOLCHAIN"
    curl -fsSL --retry 3 -o "$zip" "$url" || die "could not download $url (install Go >= $GO_MIN into /usr/local/go instead)"
    unzip -q -o "$zip" -d "$CACHE/go/$GO_TOOLCHAIN/tmp"
    rm -rf "$CACHE/go/$GO_TOOLCHAIN/go"
    mv "$CACHE/go/$GO_TOOLCHAIN/tmp/golang.org/toolchain@v0.0.1-$GO_TOOLCHAIN.linux-"*/ "$CACHE/go/$GO_TOOLCHAIN/go"
    rm -rf "$CACHE/go/$GO_TOOLCHAIN/tmp" "$zip"
    chmod +x "$CACHE/go/$GO_TOOLCHAIN/go/bin/"* "$CACHE/go/$GO_TOOLCHAIN/go/pkg/tool/"*/* 2>/dev/null || true
    GO=$CACHE/go/$GO_TOOLCHAIN/go/bin/go
    go_ok "$GO" || die "$GO does not run"
fi
export PATH="$(dirname "$GO"):$PATH"
log "Go: $("$GO" version)"

# ---- 4. The test cluster's binaries (cluster.sh build waits for a build already running)
tests/k8s/cluster.sh build

# ---- 5. Galata's node modules (the JS build itself is `make js`)
if [[ -x .venv/bin/jlpm ]]; then
    (cd labextension/ui-tests && PATH="$PWD/../../.venv/bin:$PATH" jlpm install >/dev/null)
    log "Galata dependencies installed (browser: ${SCANFLOW_CHROMIUM:-/usr/bin/chromium})"
fi
log "ready"
