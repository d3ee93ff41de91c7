#!/usr/bin/env bash
# Local Kubernetes control plane for Scanflow's tests, built from the Go module proxy.
#
#   tests/k8s/cluster.sh build   build (once, cached by version) etcd, kube-*, kubelet, kube-proxy,
#                                kubectl, kwok, argo, coredns, versitygw and the node's images (also
#                                the team environment's tracker and PostgreSQL images, with the
#                                Docker Engine, when it runs); install the node's Debian packages
#   tests/k8s/cluster.sh up      build if needed, then start the control plane and the real node
#                                (reuses a running cluster)
#   tests/k8s/cluster.sh down    stop every component by PID, clean up the node (pods, mounts,
#                                iptables chains, bridge, cgroups, sysctls), remove the run dir
#   tests/k8s/cluster.sh env     print `export KUBECONFIG=...` lines
#   tests/k8s/cluster.sh status  say what is running
#
# Binaries: ${SCANFLOW_K8S_CACHE:-~/.cache/scanflow/k8s}/<k8s version>/bin
# Run state (certs, kubeconfig, etcd data, PIDs, logs): ${SCANFLOW_K8S_DIR:-~/.cache/scanflow/k8s/run}
# See tests/k8s/README.md.
set -euo pipefail

K8S_VERSION=v1.36.5       # k8s.io/kubernetes; staging modules are published as v0.<minor>.<patch>
ETCD_VERSION=v3.6.16      # go.etcd.io/etcd/server/v3
KWOK_VERSION=v0.8.0       # sigs.k8s.io/kwok
ARGO_VERSION=v4.0.7       # github.com/argoproj/argo-workflows/v4
COREDNS_VERSION=v1.15.0   # github.com/coredns/coredns
PAUSE_VERSION=1           # our pause image (a static Go binary that waits for SIGTERM)
VERSITYGW_VERSION=v1.8.0  # github.com/versity/versitygw (Apache-2.0): the team environment's S3 server
POSTGRES_MAJOR=15         # Debian's postgresql-15 in the environment's PostgreSQL image
# Debian packages the real node uses (installed by `build` when missing)
NODE_PACKAGES=(containerd runc containernetworking-plugins iptables conntrack docker-registry socat busybox-static)

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${SCANFLOW_K8S_CACHE:-$HOME/.cache/scanflow/k8s}
VDIR=$CACHE_ROOT/$K8S_VERSION
BIN=$VDIR/bin
SRC=$VDIR/src
IMAGES=$VDIR/images
RUN=$(realpath -m "${SCANFLOW_K8S_DIR:-$CACHE_ROOT/run}")

# Ports on 127.0.0.1, away from common defaults (2379/6443/10257/10259/...).
ETCD_PORT=${SCANFLOW_K8S_ETCD_PORT:-23790}
ETCD_PEER_PORT=$((ETCD_PORT + 1))
API_PORT=${SCANFLOW_K8S_API_PORT:-26443}
KCM_PORT=$((API_PORT + 1))
SCHED_PORT=$((API_PORT + 2))
KWOK_PORT=$((API_PORT + 3))
REGISTRY_PORT=$((API_PORT + 4))
KUBELET_PORT=$((API_PORT + 5))
KUBELET_HEALTHZ_PORT=$((API_PORT + 6))
PROXY_HEALTHZ_PORT=$((API_PORT + 7))
PROXY_METRICS_PORT=$((API_PORT + 8))
SERVICE_CIDR=10.96.0.0/16
POD_CIDR=10.244.0.0/16
KWOK_POD_CIDR=10.244.128.0/17   # fake pod IPs, away from the real node's 10.244.0.0/24
KWOK_NODE=kwok-node-0
# The real node: one per machine (kube-proxy's iptables chains and the bridge are host-wide).
NODE_NAME=scanflow-node-0
BRIDGE=scanflow0
NODE_SUBNET=10.244.0.0/24
BRIDGE_IP=10.244.0.1      # the node's InternalIP and the apiserver's advertised address (via socat)
DNS_IP=10.96.0.10
REGISTRY=127.0.0.1:$REGISTRY_PORT
REGISTRY_STORAGE=$CACHE_ROOT/registry   # survives down/up

log() { printf '[k8s %3ss] %s\n' "$SECONDS" "$*" >&2; }
die() { printf '[k8s] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# build
# ---------------------------------------------------------------------------------------------

go_env() {
    export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-buildvcs=false -mod=mod"
}

# stamp_ok PART VERSION BINARY... -> true when every binary exists and was built from VERSION
stamp_ok() {
    local part=$1 version=$2; shift 2
    [[ -f $BIN/.$part.version && $(cat "$BIN/.$part.version") == "$version" ]] || return 1
    local b
    for b in "$@"; do [[ -x $BIN/$b ]] || return 1; done
}

# timed PART CMD... -> run CMD, log its wall time and record it in $BIN/build-times.txt
timed() {
    local part=$1; shift
    local t0=$SECONDS
    [[ $part == *-image ]] || command -v go >/dev/null || die "go is not on PATH (Go >= 1.26 is needed to build $part)"
    log "building $part (log: $SRC/$part.log)"
    if ! ("$@") >"$SRC/$part.log" 2>&1; then
        tail -n 40 "$SRC/$part.log" >&2
        die "building $part failed; full log: $SRC/$part.log"
    fi
    local dt=$((SECONDS - t0))
    log "built $part in ${dt}s"
    printf '%s %s %ss %s\n' "$(date -u +%FT%TZ)" "$part" "$dt" "$(nproc)cpu" >>"$BIN/build-times.txt"
}

build_kubernetes() {
    # (one line: tests/k8s/fixture.py reads the stamp_ok lines to tell whether the cluster is built)
    stamp_ok kubernetes "$K8S_VERSION" kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy \
        && return 0
    local dir=$SRC/kubernetes staging minor
    staging=v0.${K8S_VERSION#v1.}
    minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    mkdir -p "$dir"
    timed kubernetes _build_kubernetes "$dir" "$staging" "$minor"
    echo "$K8S_VERSION" >"$BIN/.kubernetes.version"
}

_build_kubernetes() {
    local dir=$1 staging=$2 minor=$3 gomod date pkg ldflags=(-s -w)
    cd "$dir"
    gomod=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/^\s*"GoMod": "\(.*\)",\?$/\1/p')
    [[ -f $gomod ]] || { echo "cannot download k8s.io/kubernetes@$K8S_VERSION"; return 1; }
    {
        printf 'module scanflow.local/k8s-build\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' \
            "$K8S_VERSION"
        # one replace line per staging module that k8s.io/kubernetes requires as v0.0.0
        sed -n '/^replace (/,/^)/s#^\s*\(k8s.io/[^ ]*\) => ./staging/.*#\1#p' "$gomod" | while read -r m; do
            grep -qE "^\s+$m v0\.0\.0" "$gomod" && printf '\t%s => %s %s\n' "$m" "$m" "$staging"
        done
        printf ')\n'
    } >go.mod
    date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=(-X "$pkg.gitVersion=$K8S_VERSION" -X "$pkg.gitMajor=1" -X "$pkg.gitMinor=$minor"
            -X "$pkg.gitTreeState=clean" -X "$pkg.buildDate=$date")
    done
    go build -trimpath -ldflags="${ldflags[*]}" -o "$BIN/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
        k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
}

# _build_module DIR MODULE VERSION OUT PKG [LDFLAGS...] -> throwaway module requiring MODULE
_build_module() {
    local dir=$1 module=$2 version=$3 out=$4 pkg=$5; shift 5
    cd "$dir"
    printf 'module scanflow.local/build\n\ngo 1.26\n\nrequire %s %s\n' "$module" "$version" >go.mod
    go build -trimpath -ldflags="-s -w $*" -o "$BIN/$out" "$pkg"
}

build_etcd() {
    stamp_ok etcd "$ETCD_VERSION" etcd && return 0
    mkdir -p "$SRC/etcd"
    timed etcd _build_module "$SRC/etcd" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" etcd \
        go.etcd.io/etcd/server/v3
    echo "$ETCD_VERSION" >"$BIN/.etcd.version"
}

build_kwok() {
    stamp_ok kwok "$KWOK_VERSION" kwok && [[ -d $VDIR/kwok-stages ]] && return 0
    mkdir -p "$SRC/kwok"
    timed kwok _build_module "$SRC/kwok" sigs.k8s.io/kwok "$KWOK_VERSION" kwok \
        sigs.k8s.io/kwok/cmd/kwok -X "sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
    # kwok's own "fast" stages for the node and for pod start/delete, from the module cache;
    # pod completion/failure comes from tests/k8s/stages/.
    local moddir
    moddir=$(cd "$SRC/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
    rm -rf "$VDIR/kwok-stages"
    mkdir -p "$VDIR/kwok-stages"
    cp "$moddir/kustomize/stage/node/fast/node-initialize.yaml" \
        "$moddir/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
        "$moddir/kustomize/stage/pod/fast/pod-ready.yaml" \
        "$moddir/kustomize/stage/pod/fast/pod-delete.yaml" "$VDIR/kwok-stages/"
    chmod -R u+w "$VDIR/kwok-stages"
    echo "$KWOK_VERSION" >"$BIN/.kwok.version"
}

build_argo() {
    stamp_ok argo "$ARGO_VERSION" workflow-controller && [[ -d $VDIR/argo-crds-minimal ]] && return 0
    local mod=github.com/argoproj/argo-workflows/v4
    mkdir -p "$SRC/argo"
    timed argo _build_module "$SRC/argo" "$mod" "$ARGO_VERSION" workflow-controller \
        "$mod/cmd/workflow-controller" -X "$mod.version=$ARGO_VERSION"
    # CRDs from the module cache, copied so `up` does not depend on GOMODCACHE staying put.
    # The minimal ones, as in Argo's standard install: the full ones (11 MB) take ~1 min to apply.
    local moddir
    moddir=$(cd "$SRC/argo" && go list -m -f '{{.Dir}}' "$mod")
    rm -rf "$VDIR/argo-crds-minimal"
    mkdir -p "$VDIR/argo-crds-minimal"
    cp "$moddir"/manifests/base/crds/minimal/argoproj.io_*.yaml "$VDIR/argo-crds-minimal/"
    chmod -R u+w "$VDIR/argo-crds-minimal"
    echo "$ARGO_VERSION" >"$BIN/.argo.version"
}

build_coredns() {
    stamp_ok coredns "$COREDNS_VERSION" coredns && return 0
    mkdir -p "$SRC/coredns"
    # the module's root package is CoreDNS's main, with the default plugin set (plugin.cfg)
    timed coredns _build_module "$SRC/coredns" github.com/coredns/coredns "$COREDNS_VERSION" coredns \
        github.com/coredns/coredns -X "github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
    echo "$COREDNS_VERSION" >"$BIN/.coredns.version"
}

# argoexec does not build from the module zip: workflow/executor/osspecific/signal_linux.go is a
# symlink to signal_darwin.go in the repository and module zips drop symlinks (`undefined:
# Setpgid`). So: a writable copy of the module with the file copied, used through `replace`.
build_argoexec() {
    stamp_ok argoexec "$ARGO_VERSION" argoexec && return 0
    mkdir -p "$SRC/argoexec"
    timed argoexec _build_argoexec "$SRC/argoexec"
    echo "$ARGO_VERSION" >"$BIN/.argoexec.version"
}

_build_argoexec() {
    local dir=$1 mod=github.com/argoproj/argo-workflows/v4 moddir
    cd "$dir"
    moddir=$(go mod download -json "$mod@$ARGO_VERSION" | sed -n 's/^\s*"Dir": "\(.*\)",\?$/\1/p')
    [[ -d $moddir ]] || { echo "cannot download $mod@$ARGO_VERSION"; return 1; }
    rm -rf "$dir/argo-workflows"
    cp -r "$moddir" "$dir/argo-workflows"
    chmod -R u+w "$dir/argo-workflows"
    cp "$dir/argo-workflows/workflow/executor/osspecific/signal_darwin.go" \
        "$dir/argo-workflows/workflow/executor/osspecific/signal_linux.go"
    printf 'module scanflow.local/build\n\ngo 1.26\n\nrequire %s %s\n\nreplace %s => ./argo-workflows\n' \
        "$mod" "$ARGO_VERSION" "$mod" >go.mod
    go build -trimpath -ldflags="-s -w -X $mod.version=$ARGO_VERSION" -o "$BIN/argoexec" "$mod/cmd/argoexec"
}

build_pause() {
    stamp_ok pause "$PAUSE_VERSION" pause && return 0
    mkdir -p "$SRC/pause"
    timed pause _build_pause "$SRC/pause"
    echo "$PAUSE_VERSION" >"$BIN/.pause.version"
}

_build_pause() {
    cd "$1"
    printf 'module scanflow.local/pause\n\ngo 1.26\n' >go.mod
    cat >main.go <<'GO'
// pause: the pod sandbox's process. Holds the pod's namespaces until SIGTERM/SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
GO
    go build -trimpath -ldflags="-s -w" -o "$BIN/pause" .
}

# oci_image NAME TAG ROOTFS USER KEY ARG... -> $IMAGES/NAME.tar, an OCI image layout (one gzip
# layer, reproducible) named scanflow.local/NAME:TAG; KEY is Entrypoint or Cmd.
oci_image() {
    local name=$1 tag=$2 rootfs=$3 user=$4 key=$5; shift 5
    local tmp args diff_id layer layer_size config config_size manifest manifest_size
    tmp=$(mktemp -d "$SRC/oci.XXXXXX")
    mkdir -p "$tmp/blobs/sha256"
    tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf "$tmp/layer.tar" .
    diff_id=$(sha256sum <"$tmp/layer.tar" | cut -d' ' -f1)
    gzip -n "$tmp/layer.tar"
    layer=$(sha256sum <"$tmp/layer.tar.gz" | cut -d' ' -f1)
    layer_size=$(stat -c %s "$tmp/layer.tar.gz")
    mv "$tmp/layer.tar.gz" "$tmp/blobs/sha256/$layer"
    args=$(printf '"%s",' "$@")
    printf '{"architecture":"%s","os":"linux","config":{"User":"%s","%s":[%s],"Env":["PATH=/bin"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' \
        "$(oci_arch)" "$user" "$key" "${args%,}" "$diff_id" >"$tmp/blob"
    config=$(sha256sum <"$tmp/blob" | cut -d' ' -f1)
    config_size=$(stat -c %s "$tmp/blob")
    mv "$tmp/blob" "$tmp/blobs/sha256/$config"
    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
        "$config" "$config_size" "$layer" "$layer_size" >"$tmp/blob"
    manifest=$(sha256sum <"$tmp/blob" | cut -d' ' -f1)
    manifest_size=$(stat -c %s "$tmp/blob")
    mv "$tmp/blob" "$tmp/blobs/sha256/$manifest"
    printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"io.containerd.image.name":"scanflow.local/%s:%s","org.opencontainers.image.ref.name":"%s"}}]}' \
        "$manifest" "$manifest_size" "$name" "$tag" "$tag" >"$tmp/index.json"
    echo '{"imageLayoutVersion":"1.0.0"}' >"$tmp/oci-layout"
    mkdir -p "$IMAGES"
    tar -C "$tmp" -cf "$IMAGES/$name.tar.tmp" oci-layout index.json blobs
    mv "$IMAGES/$name.tar.tmp" "$IMAGES/$name.tar"
    rm -rf "$tmp"
}

oci_arch() {
    case $(uname -m) in x86_64) echo amd64 ;; aarch64) echo arm64 ;; *) uname -m ;; esac
}

# image_ok NAME TAG -> true when $IMAGES/NAME.tar was made for TAG
image_ok() { [[ -f $IMAGES/$1.tar && $(cat "$IMAGES/.$1.tag" 2>/dev/null) == "$2" ]]; }

# rootfs_with DIR FILE:DEST... -> a fresh rootfs dir with /tmp and the given files
rootfs_with() {
    local dir=$1 spec; shift
    rm -rf "$dir"
    mkdir -p "$dir/tmp" "$dir/bin" "$dir/etc"
    chmod 1777 "$dir/tmp"
    printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$dir/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$dir/etc/group"
    for spec in "$@"; do install -D -m 0755 "${spec%%:*}" "$dir/${spec#*:}"; done
}

build_images() {
    local root=$SRC/rootfs tag
    image_ok pause "$PAUSE_VERSION" || {
        rootfs_with "$root" "$BIN/pause:pause"
        oci_image pause "$PAUSE_VERSION" "$root" 65535 Entrypoint /pause
        echo "$PAUSE_VERSION" >"$IMAGES/.pause.tag"
    }
    image_ok coredns "$COREDNS_VERSION" || {
        rootfs_with "$root" "$BIN/coredns:coredns"
        oci_image coredns "$COREDNS_VERSION" "$root" 65532 Entrypoint /coredns
        echo "$COREDNS_VERSION" >"$IMAGES/.coredns.tag"
    }
    image_ok argoexec "$ARGO_VERSION" || {
        rootfs_with "$root" "$BIN/argoexec:bin/argoexec"
        oci_image argoexec "$ARGO_VERSION" "$root" 8737 Entrypoint /bin/argoexec
        echo "$ARGO_VERSION" >"$IMAGES/.argoexec.tag"
    }
    # a small userland for tests on the real node (sh, sleep, wget, nslookup, httpd, ...): Debian's
    # static busybox, one symlink per applet
    tag=$(busybox_tag)
    image_ok busybox "$tag" || {
        rootfs_with "$root" /bin/busybox:bin/busybox
        local applet
        for applet in $(/bin/busybox --list); do
            [[ -e $root/bin/$applet ]] || ln -s busybox "$root/bin/$applet"
        done
        oci_image busybox "$tag" "$root" 65534 Cmd sh
        echo "$tag" >"$IMAGES/.busybox.tag"
    }
    rm -rf "$root"
}

busybox_tag() {
    local v
    v=$(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null) || die "busybox-static is not installed"
    v=${v#*:}
    echo "${v%%-*}"
}

# Debian packages of the node, installed when missing (`apt-get update` only when needed)
install_packages() {
    local missing=() p
    for p in "${NODE_PACKAGES[@]}"; do
        dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
    done
    ((${#missing[@]} == 0)) && return 0
    command -v apt-get >/dev/null || die "missing Debian packages (${missing[*]}) and no apt-get"
    ((EUID == 0)) || die "missing Debian packages: ${missing[*]}; install them as root: apt-get install ${missing[*]}"
    log "installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >"$SRC/apt.log" 2>&1; then
        apt-get update >>"$SRC/apt.log" 2>&1 || true
        apt-get install -y --no-install-recommends "${missing[@]}" >>"$SRC/apt.log" 2>&1 \
            || { tail -n 20 "$SRC/apt.log" >&2; die "apt-get install ${missing[*]} failed (log: $SRC/apt.log)"; }
    fi
}

# --- the team environment's images (issue #10): S3 server, MLflow tracker, PostgreSQL ---

build_versitygw() {
    stamp_ok versitygw "$VERSITYGW_VERSION" versitygw && return 0
    mkdir -p "$SRC/versitygw"
    timed versitygw _build_module "$SRC/versitygw" github.com/versity/versitygw "$VERSITYGW_VERSION" versitygw \
        github.com/versity/versitygw/cmd/versitygw -X "main.Version=$VERSITYGW_VERSION"
    echo "$VERSITYGW_VERSION" >"$BIN/.versitygw.version"
}

REPO=$(cd "$HERE/../.." && pwd)
ENV_IMAGES=(tracker postgres)   # built with the Docker Engine (optional: skipped when it is not running)

# python with scanflow_jupyter importable (the base image recipe lives there)
repo_python() {
    local py=${SCANFLOW_PYTHON:-$REPO/.venv/bin/python}
    [[ -x $py ]] || py=python3
    echo "$py"
}

mlflow_version() {
    "$(repo_python)" -c 'import importlib.metadata as m; print(m.version("mlflow"))' 2>/dev/null
}

# docker_image NAME TAG DOCKERFILE BUILD-ARG... -> $IMAGES/NAME.tar (`docker save` of
# scanflow.local/NAME:TAG, also tagged scanflow/NAME:TAG), rebuilt when TAG or the recipe
# (Dockerfile, its files, the base image) changes. The context holds the host's extra CA
# certificates (a TLS-inspecting proxy between the build and PyPI / the Debian mirror).
docker_image() {
    local name=$1 tag=$2 dockerfile=$3; shift 3
    local ctx=$SRC/image-$name recipe args=() a
    recipe=$({ cat "$HERE/images/$dockerfile" "$HERE"/images/*.sh; printf '%s\n' "$@"; } | sha256sum | cut -c1-12)
    if image_ok "$name" "$tag" && [[ $(cat "$IMAGES/.$name.recipe" 2>/dev/null) == "$recipe" ]]; then
        return 0
    fi
    if [[ ${UP_KEEPS_IMAGES:-} == 1 && -f $IMAGES/$name.tar ]]; then  # `up` builds only what is missing
        log "WARNING: the $name image is out of date ($tag, recipe $recipe): run tests/k8s/cluster.sh build"
        return 0
    fi
    rm -rf "$ctx"
    mkdir -p "$ctx/ca" "$IMAGES"
    cp "$HERE/images/$dockerfile" "$ctx/Dockerfile"
    cp "$HERE"/images/*.sh "$ctx/"
    cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
    for a in "$@"; do args+=(--build-arg "$a"); done
    timed "$name-image" docker build --pull=false "${args[@]}" -t "scanflow.local/$name:$tag" \
        -t "scanflow/$name:$tag" "$ctx"
    docker save -o "$IMAGES/$name.tar.tmp" "scanflow.local/$name:$tag"
    mv "$IMAGES/$name.tar.tmp" "$IMAGES/$name.tar"
    echo "$tag" >"$IMAGES/.$name.tag"
    echo "$recipe" >"$IMAGES/.$name.recipe"
    rm -rf "$ctx"
}

build_env_images() {
    local root=$SRC/rootfs
    # the S3 server: versitygw's static binary + busybox's sh/mkdir (the bucket is a directory
    # made before the server starts); runs as any non-root uid (65532 by default)
    image_ok s3 "$VERSITYGW_VERSION" || {
        rootfs_with "$root" "$BIN/versitygw:bin/versitygw" /bin/busybox:bin/busybox
        ln -s busybox "$root/bin/sh"
        ln -s busybox "$root/bin/mkdir"
        oci_image s3 "$VERSITYGW_VERSION" "$root" 65532 Entrypoint /bin/versitygw
        echo "$VERSITYGW_VERSION" >"$IMAGES/.s3.tag"
        rm -rf "$root"
    }
    if ! docker info >/dev/null 2>&1; then
        log "WARNING: no Docker Engine: the tracker and PostgreSQL images are not built (start it, then run build again)"
        return 0
    fi
    local base mlflow
    mlflow=$(mlflow_version) || die "cannot read the installed mlflow version with $(repo_python) (run make setup first)"
    base=$("$(repo_python)" -c 'from scanflow_jupyter.build.base import ensure_base_image
from scanflow_jupyter.build.builder import docker_client
print(ensure_base_image(docker_client())[0])' 2>"$SRC/base-image.log") \
        || { tail -n 20 "$SRC/base-image.log" >&2; die "the offline base image could not be made (log: $SRC/base-image.log)"; }
    docker_image tracker "$mlflow" tracker.Dockerfile "BASE=$base" "MLFLOW_VERSION=$mlflow"
    docker_image postgres "$POSTGRES_MAJOR" postgres.Dockerfile "BASE=$base"
}

cmd_build() {
    mkdir -p "$BIN" "$SRC"
    exec 8>"$VDIR/.build.lock"
    flock 8 || die "cannot lock $VDIR/.build.lock"
    go_env
    renice -n 10 -p $$ >/dev/null 2>&1 || true  # the builds (children) inherit the lower priority
    local t0=$SECONDS
    # slowest first
    build_kubernetes
    build_etcd
    build_kwok
    build_argo
    build_argoexec
    build_coredns
    build_pause
    build_versitygw
    install_packages
    build_images
    build_env_images
    exec 8>&-
    log "binaries ready in $BIN (${SECONDS}s total, $((SECONDS - t0))s this run)"
}

# ---------------------------------------------------------------------------------------------
# up / down / env / status
# ---------------------------------------------------------------------------------------------

COMPONENTS=(etcd kube-apiserver apiserver-proxy kube-controller-manager kube-scheduler kwok workflow-controller
    registry containerd kubelet kube-proxy)
PKI=$RUN/pki
KUBECONFIG_ADMIN=$RUN/kubeconfig
NODE=$RUN/node
CONTAINERD_SOCK=$NODE/containerd.sock

kubectl_() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# exe_of NAME -> the program started for component NAME (Debian's for the node's helpers)
exe_of() {
    case $1 in
        containerd) echo /usr/bin/containerd ;;
        registry) echo /usr/bin/docker-registry ;;
        apiserver-proxy) echo /usr/bin/socat ;;
        *) echo "$BIN/$1" ;;
    esac
}

# pid_of NAME -> PID of a live process started by us for NAME (checked against its command line)
pid_of() {
    local name=$1 pid
    pid=$(cat "$RUN/pids/$name.pid" 2>/dev/null) || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    local cmdline
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
    # our program, with arguments naming our run dir or started with our marker (PIDs get reused)
    [[ $cmdline == "$(exe_of "$name") "* ]] || return 1
    [[ $cmdline == *" $RUN/"* ]] || tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null \
        | grep -qxF "SCANFLOW_K8S_RUN=$RUN" || return 1
    echo "$pid"
}

fail_with_log() {
    local name=$1; shift
    printf '[k8s] ERROR: %s\n[k8s] last lines of %s:\n' "$*" "$RUN/logs/$name.log" >&2
    tail -n 30 "$RUN/logs/$name.log" >&2 2>/dev/null || true
    exit 1
}

# start NAME ARGS... -> start $BIN/NAME in its own session, logging to $RUN/logs/NAME.log
start() {
    local name=$1; shift
    if pid_of "$name" >/dev/null; then
        log "$name already running (pid $(pid_of "$name"))"
        return 0
    fi
    printf '=== %s starting %s\n' "$(date -u +%FT%TZ)" "$name" >>"$RUN/logs/$name.log"
    # fds 8/9 hold cluster.sh's locks: the daemons must not keep them
    SCANFLOW_K8S_RUN=$RUN setsid "$(exe_of "$name")" "$@" >>"$RUN/logs/$name.log" 2>&1 </dev/null 8>&- 9>&- &
    echo $! >"$RUN/pids/$name.pid"
    log "started $name (pid $!)"
}

# starting NAME -> the process just started for NAME is still alive, whether or not it has exec'd its program
# yet (right after the fork its command line is still setsid's or bash's: pid_of alone raced on a loaded machine)
starting() {
    local pid state
    pid=$(cat "$RUN/pids/$1.pid" 2>/dev/null) || return 1
    state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# wait_for NAME SECONDS CMD... -> poll CMD until it succeeds; fail with NAME's log otherwise
wait_for() {
    local name=$1 timeout=$2; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        pid_of "$name" >/dev/null || starting "$name" || fail_with_log "$name" "$name exited during start-up"
        ((SECONDS < deadline)) || fail_with_log "$name" "$name not ready after ${timeout}s"
        sleep 0.5
    done
}

api_ready() {
    curl -sf --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
        "https://127.0.0.1:$API_PORT/readyz" | grep -qx ok
}

# sign NAME SUBJECT [SAN] -> $PKI/NAME.{key,crt} signed by the cluster CA
sign() {
    local name=$1 subj=$2 san=${3:-}
    [[ -f $PKI/$name.crt ]] && return 0
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "$subj" \
        -keyout "$PKI/$name.key" -out "$PKI/$name.csr" 2>/dev/null
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=serverAuth,clientAuth"
        [[ -n $san ]] && echo "subjectAltName=$san"
    } >"$PKI/$name.ext"
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
        -days 3650 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
    rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

gen_pki() {
    command -v openssl >/dev/null || die "openssl is not on PATH (needed to make the cluster's certificates)"
    mkdir -p "$PKI"
    chmod 700 "$PKI"
    if [[ ! -f $PKI/ca.crt ]]; then
        openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
            -subj "/CN=scanflow-k8s-ca" -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
            -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
    fi
    sign apiserver "/CN=kube-apiserver" \
        "IP:127.0.0.1,IP:$BRIDGE_IP,IP:${SERVICE_CIDR%.0/*}.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    sign admin "/O=system:masters/CN=scanflow-admin"
    sign kube-controller-manager "/CN=system:kube-controller-manager"
    sign kube-scheduler "/CN=system:kube-scheduler"
    sign front-proxy-client "/CN=front-proxy-client"
    # the real node: kubelet (client for the Node authorizer + serving cert), kube-proxy
    sign kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" "IP:$BRIDGE_IP,DNS:$NODE_NAME"
    sign kube-proxy "/CN=system:kube-proxy"
    [[ -f $PKI/sa.key ]] || openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
    [[ -f $PKI/sa.pub ]] || openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
}

# kubeconfig FILE CERT-NAME -> kubeconfig for the user of $PKI/CERT-NAME.{crt,key}
kubeconfig() {
    local file=$1 user=$2 k=("$BIN/kubectl" config --kubeconfig "$1")
    [[ -f $file ]] && return 0
    "${k[@]}" set-cluster scanflow --server="https://127.0.0.1:$API_PORT" \
        --certificate-authority="$PKI/ca.crt" --embed-certs=true >/dev/null
    "${k[@]}" set-credentials "$user" --client-certificate="$PKI/$user.crt" \
        --client-key="$PKI/$user.key" --embed-certs=true >/dev/null
    "${k[@]}" set-context scanflow --cluster=scanflow --user="$user" >/dev/null
    "${k[@]}" use-context scanflow >/dev/null
    chmod 600 "$file"
}

start_etcd() {
    start etcd --name scanflow --data-dir "$RUN/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "scanflow=http://127.0.0.1:$ETCD_PEER_PORT" \
        --unsafe-no-fsync --log-level warn
    wait_for etcd 60 curl -sf --max-time 2 "http://127.0.0.1:$ETCD_PORT/health"
}

start_apiserver() {
    start kube-apiserver --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address 127.0.0.1 --advertise-address "$BRIDGE_IP" --secure-port "$API_PORT" \
        --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
        --client-ca-file "$PKI/ca.crt" \
        --requestheader-client-ca-file "$PKI/ca.crt" --requestheader-allowed-names front-proxy-client \
        --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
        --requestheader-extra-headers-prefix X-Remote-Extra- \
        --proxy-client-cert-file "$PKI/front-proxy-client.crt" \
        --proxy-client-key-file "$PKI/front-proxy-client.key" \
        --kubelet-client-certificate "$PKI/admin.crt" --kubelet-client-key "$PKI/admin.key" \
        --kubelet-preferred-address-types InternalIP \
        --authorization-mode Node,RBAC --allow-privileged=true \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false
    wait_for kube-apiserver 120 api_ready
    # Pods reach the apiserver at the `kubernetes` Service -> $BRIDGE_IP:$API_PORT (the advertised
    # address; a Service may not point at loopback); socat forwards it to the loopback listener.
    start apiserver-proxy "TCP-LISTEN:$API_PORT,bind=$BRIDGE_IP,reuseaddr,fork" "TCP:127.0.0.1:$API_PORT"
}

start_controllers() {
    start kube-controller-manager --kubeconfig "$RUN/kube-controller-manager.kubeconfig" \
        --authentication-kubeconfig "$RUN/kube-controller-manager.kubeconfig" \
        --authorization-kubeconfig "$RUN/kube-controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$KCM_PORT" --leader-elect=false \
        --use-service-account-credentials=true \
        --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
        --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
        --cluster-cidr "$POD_CIDR" --service-cluster-ip-range "$SERVICE_CIDR" \
        --allocate-node-cidrs=false --profiling=false
    start kube-scheduler --kubeconfig "$RUN/kube-scheduler.kubeconfig" \
        --authentication-kubeconfig "$RUN/kube-scheduler.kubeconfig" \
        --authorization-kubeconfig "$RUN/kube-scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$SCHED_PORT" --leader-elect=false --profiling=false
}

# Objects the cluster needs once per etcd data dir: Argo CRDs + config, the fake node.
bootstrap() {
    [[ -f $RUN/.bootstrapped ]] && return 0
    log "installing Argo CRDs, Argo config and the kwok node"
    kubectl_ apply --server-side --force-conflicts -f "$VDIR/argo-crds-minimal/" >"$RUN/logs/bootstrap.log" 2>&1 \
        || fail_with_log bootstrap "installing the Argo CRDs failed"
    kubectl_ apply --server-side -f "$HERE/manifests/" >>"$RUN/logs/bootstrap.log" 2>&1 \
        || fail_with_log bootstrap "applying $HERE/manifests failed"
    kubectl_ wait --for condition=established --timeout=60s -f "$VDIR/argo-crds-minimal/" \
        >>"$RUN/logs/bootstrap.log" 2>&1 || fail_with_log bootstrap "Argo CRDs not established"
    touch "$RUN/.bootstrapped"
}

start_kwok() {
    local cfg=() f
    for f in "$VDIR"/kwok-stages/*.yaml "$HERE"/stages/*.yaml; do cfg+=(--config "$f"); done
    start kwok --kubeconfig "$KUBECONFIG_ADMIN" "${cfg[@]}" \
        --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
        --node-ip 127.0.0.1 --node-lease-duration-seconds 40 --cidr "$KWOK_POD_CIDR" \
        --server-address "127.0.0.1:$KWOK_PORT"
}

start_argo() {
    LEADER_ELECTION_DISABLE=true DEFAULT_REQUEUE_TIME=1s start workflow-controller --kubeconfig "$KUBECONFIG_ADMIN" \
        --namespace argo --configmap workflow-controller-configmap \
        --executor-image "$REGISTRY/argoexec:$ARGO_VERSION" --loglevel info
}

node_ready() {
    kubectl_ get node "$1" \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True
}

# Argo's /healthz is on a fixed :6060 that another cluster's controller may hold, so readiness
# is read from this controller's own log (since its last start): it has read its config map
# from our API server, i.e. its informers run against this cluster.
argo_ready() {
    local log=$RUN/logs/workflow-controller.log start
    start=$(grep -n '^=== .* starting workflow-controller' "$log" | tail -n 1 | cut -d: -f1)
    tail -n "+${start:-1}" "$log" | grep 'Received Workflow Controller config map update' >/dev/null
}

# ---------------------------------------------------------------------------------------------
# the real node: containerd (own instance), CNI bridge, local registry, kubelet, kube-proxy, CoreDNS
# ---------------------------------------------------------------------------------------------

ctr_() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# The bridge exists before the apiserver starts: socat listens on its address. CNI's bridge plugin
# adopts it (same name, same gateway address).
node_network() {
    ip link show "$BRIDGE" >/dev/null 2>&1 || ip link add "$BRIDGE" type bridge
    ip addr replace "$BRIDGE_IP/${NODE_SUBNET#*/}" dev "$BRIDGE"
    ip link set "$BRIDGE" up
}

# write_file FILE < CONTENT -> replace FILE only when CONTENT differs (kube-proxy exits when its
# config file changes, and `up` runs again on a running cluster)
write_file() {
    local tmp
    tmp=$(mktemp "$1.XXXXXX")
    cat >"$tmp"
    if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

write_node_config() {
    mkdir -p "$NODE/cni" "$NODE/certs.d/$REGISTRY" "$NODE/pod-logs" "$NODE/kubelet" "$NODE/containerd"
    write_file "$NODE/containerd.toml" <<TOML
# containerd for the scanflow test node only (not the Docker Engine's): own root, state, socket
version = 2
root = "$NODE/containerd/root"
state = "$NODE/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "scanflow.local/pause:$PAUSE_VERSION"
  # no CAP_SYS_RESOURCE here: without it runc fails every container on /proc/self/oom_score_adj
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$NODE/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE/cni"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$NODE/certs.d"
TOML
    write_file "$NODE/certs.d/$REGISTRY/hosts.toml" <<TOML
server = "http://$REGISTRY"
[host."http://$REGISTRY"]
  capabilities = ["pull", "resolve", "push"]
TOML
    # firewall: Docker sets the FORWARD policy to DROP; the plugin accepts the pods' traffic.
    # No ipMasq: pods have no way off this machine.
    write_file "$NODE/cni/10-scanflow.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "scanflow",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$NODE/cni-ipam",
              "ranges": [[{"subnet": "$NODE_SUBNET", "gateway": "$BRIDGE_IP"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "firewall", "backend": "iptables"}
  ]
}
JSON
    write_file "$NODE/registry.yml" <<YAML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage:
  filesystem: {rootdirectory: $REGISTRY_STORAGE}
  delete: {enabled: true}
http:
  addr: $REGISTRY
YAML
    # pods with dnsPolicy Default (CoreDNS) get this: nothing that leaves the pod
    echo "nameserver 127.0.0.1" | write_file "$NODE/resolv.conf"
    write_file "$NODE/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $BRIDGE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
imagePullCredentialsVerificationPolicy: NeverVerify
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: $NODE/resolv.conf
podLogsDir: $NODE/pod-logs
serializeImagePulls: false
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
rotateCertificates: false
YAML
    # conntrack 0 = leave the host's settings alone; no localhost NodePorts (route_localnet stays 0)
    write_file "$NODE/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $RUN/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
nodePortAddresses: [primary]
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
YAML
}

SYSCTLS=(vm.overcommit_memory kernel.panic kernel.panic_on_oops)

# the kubelet changes these host sysctls: record them once (before its first start) for `down`
save_sysctls() {
    [[ -f $NODE/sysctls.saved ]] && return 0
    local k
    for k in "${SYSCTLS[@]}"; do echo "$k=$(sysctl -n "$k")"; done >"$NODE/sysctls.saved"
}

registry_has() {  # registry_has REPO TAG
    curl -sf -o /dev/null --max-time 5 -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://$REGISTRY/v2/$1/manifests/$2"
}

# import the node's images into containerd (seconds), name them after the local registry, and
# push them there once (the registry's storage survives down/up)
load_images() {
    local name tag
    for name in pause coredns argoexec busybox s3 "${ENV_IMAGES[@]}"; do
        [[ -f $IMAGES/$name.tar ]] || continue  # the Docker-built ones are optional
        tag=$(cat "$IMAGES/.$name.tag")
        if ! ctr_ images ls -q | grep -qxF "scanflow.local/$name:$tag"; then
            ctr_ images import "$IMAGES/$name.tar" >>"$RUN/logs/images.log" 2>&1 \
                || fail_with_log images "importing $IMAGES/$name.tar into containerd failed"
        fi
        ctr_ images tag --force "scanflow.local/$name:$tag" "$REGISTRY/$name:$tag" >/dev/null
        if ! registry_has "$name" "$tag"; then
            ctr_ images push --plain-http "$REGISTRY/$name:$tag" >>"$RUN/logs/images.log" 2>&1 \
                || fail_with_log images "pushing $REGISTRY/$name:$tag failed"
        fi
    done
}

start_node() {
    write_node_config
    mkdir -p "$REGISTRY_STORAGE"
    start registry serve "$NODE/registry.yml"
    wait_for registry 30 curl -sf --max-time 2 "http://$REGISTRY/v2/"
    start containerd --config "$NODE/containerd.toml"
    wait_for containerd 60 ctr_ version
    load_images
    save_sysctls
    start kubelet --config "$NODE/kubelet.yaml" --kubeconfig "$RUN/kubelet.kubeconfig" \
        --hostname-override "$NODE_NAME" --node-ip "$BRIDGE_IP" --root-dir "$NODE/kubelet" \
        --node-labels "scanflow.io/node-pool=real"
    start kube-proxy --config "$NODE/kube-proxy.yaml"
}

# CoreDNS (Deployment + Service kube-dns at $DNS_IP) and the kwok-pool admission policy
bootstrap_node() {
    [[ -f $RUN/.node-bootstrapped ]] && return 0
    log "installing CoreDNS and the kwok-pool policy"
    sed -e "s#@COREDNS_IMAGE@#scanflow.local/coredns:$COREDNS_VERSION#" -e "s#@DNS_IP@#$DNS_IP#" \
        "$HERE/manifests/node/coredns.yaml" | kubectl_ apply --server-side -f - >>"$RUN/logs/bootstrap.log" 2>&1 \
        || fail_with_log bootstrap "applying $HERE/manifests/node/coredns.yaml failed"
    touch "$RUN/.node-bootstrapped"
}

# --- node tear-down (order matters: research notes in tests/k8s/README.md) ---

# stop NAME -> SIGTERM, then SIGKILL after 15 s
stop() {
    local name=$1 pid
    pid=$(pid_of "$name") || return 0
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
    kill -KILL "$pid" 2>/dev/null || true
}

# remove_chains IPTABLES -> delete every KUBE-*/CNI-* chain and the rules that jump to them
remove_chains() {
    local ipt=$1 table rule chain
    command -v "$ipt" >/dev/null || return 0
    for table in filter nat mangle raw; do
        "$ipt-save" -t "$table" 2>/dev/null | grep -E -- '^-A [A-Z]+ .*-j (KUBE|CNI)-' \
            | grep -vE '^-A (KUBE|CNI)-' | while read -r rule; do
            eval "$ipt -t $table -D ${rule#-A }" 2>/dev/null || true
        done || true
        for chain in $("$ipt-save" -t "$table" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p'); do
            "$ipt" -t "$table" -F "$chain" 2>/dev/null || true
        done
        for chain in $("$ipt-save" -t "$table" 2>/dev/null | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p'); do
            "$ipt" -t "$table" -X "$chain" 2>/dev/null || true
        done
    done
}

node_down() {
    [[ -d $NODE ]] || return 0
    # 1. the node's pods, deleted while the kubelet still runs (it stops them and frees their network)
    if pid_of kubelet >/dev/null && api_ready; then
        log "deleting the pods of $NODE_NAME"
        kubectl_ delete pods --all-namespaces --field-selector "spec.nodeName=$NODE_NAME" \
            --grace-period=1 --wait=true --timeout=60s >/dev/null 2>&1 || true
    fi
    # 2. kube-proxy and its rules, 3. the kubelet
    stop kube-proxy
    [[ -x $BIN/kube-proxy ]] && "$BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
    stop kubelet
    # 4. what is left in containerd, then containerd and the shims it started
    if pid_of containerd >/dev/null; then
        local id
        for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks kill -s KILL "$id" >/dev/null 2>&1 || true; done
        sleep 0.5
        for id in $(ctr_ tasks ls -q 2>/dev/null); do ctr_ tasks rm -f "$id" >/dev/null 2>&1 || true; done
        for id in $(ctr_ containers ls -q 2>/dev/null); do ctr_ containers rm "$id" >/dev/null 2>&1 || true; done
    fi
    stop containerd
    local pid
    for pid in $(pgrep -f -- "-address $CONTAINERD_SOCK" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    stop registry
    # 5. mounts under the node's dirs (deepest first), network namespaces of its pods, the bridge
    local m
    for m in $(awk -v run="$NODE/" 'index($2, run) == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    for m in /run/netns/cni-*; do
        [[ -e $m && -z $(ip netns pids "${m##*/}" 2>/dev/null) ]] || continue
        grep -q " $m " /proc/mounts && grep -rqs "${m##*/}" "$NODE/cni-ipam" /var/lib/cni/results 2>/dev/null \
            && { umount -l "$m" 2>/dev/null; rm -f "$m"; }
    done
    ip link del "$BRIDGE" 2>/dev/null || true
    remove_chains iptables
    remove_chains ip6tables
    # 6. cgroups, log links, CNI cache
    local d
    for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
        [[ -d $d ]] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    find /var/log/containers -maxdepth 1 -type l -lname "$NODE/*" -delete 2>/dev/null || true
    rm -f /var/lib/cni/results/scanflow-* 2>/dev/null || true
    # 7. the sysctls the kubelet changed
    if [[ -f $NODE/sysctls.saved ]]; then
        local kv
        while read -r kv; do sysctl -qw "$kv" >/dev/null 2>&1 || true; done <"$NODE/sysctls.saved"
    fi
    rm -rf "$NODE"
}

# one `up`/`down` at a time per run dir (e.g. two pytest sessions starting together)
lock_run() {
    exec 9>"$RUN/.lock"
    flock -w 600 9 || die "another cluster.sh holds $RUN/.lock for more than 10 minutes"
}

cmd_up() {
    local t0=$SECONDS
    UP_KEEPS_IMAGES=1 cmd_build
    mkdir -p "$RUN/pids" "$RUN/logs"
    lock_run
    gen_pki
    kubeconfig "$KUBECONFIG_ADMIN" admin
    kubeconfig "$RUN/kube-controller-manager.kubeconfig" kube-controller-manager
    kubeconfig "$RUN/kube-scheduler.kubeconfig" kube-scheduler
    kubeconfig "$RUN/kubelet.kubeconfig" kubelet
    kubeconfig "$RUN/kube-proxy.kubeconfig" kube-proxy
    node_network
    start_etcd
    start_apiserver
    start_controllers
    bootstrap
    start_kwok
    start_argo
    start_node
    wait_for kwok 60 node_ready "$KWOK_NODE"
    wait_for kubelet 120 node_ready "$NODE_NAME"
    bootstrap_node
    wait_for kubelet 120 kubectl_ wait -n kube-system --for condition=Available --timeout=2s deployment/coredns
    wait_for workflow-controller 60 argo_ready
    wait_for kube-controller-manager 60 kubectl_ get serviceaccount default -n default
    wait_for kube-scheduler 30 curl -sfk --max-time 2 "https://127.0.0.1:$SCHED_PORT/readyz"
    log "cluster up in $((SECONDS - t0))s: kube-apiserver https://127.0.0.1:$API_PORT"
    cmd_env
}

cmd_env() {
    echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
    echo "export PATH=$BIN:\$PATH"
    echo "export SCANFLOW_K8S_REGISTRY=$REGISTRY"
    echo "export SCANFLOW_K8S_NODE=$NODE_NAME"
    echo "export SCANFLOW_K8S_BUSYBOX=$REGISTRY/busybox:$(busybox_tag)"
    echo "export SCANFLOW_K8S_ARGOEXEC=$REGISTRY/argoexec:$ARGO_VERSION"
    # the team environment's images (what `scanflow deploy` reads from these variables)
    local name
    for name in s3 "${ENV_IMAGES[@]}"; do
        [[ -f $IMAGES/.$name.tag ]] || continue
        echo "export SCANFLOW_K8S_${name^^}_IMAGE=$REGISTRY/$name:$(cat "$IMAGES/.$name.tag")"
    done
}

cmd_status() {
    local name pid up=0
    for name in "${COMPONENTS[@]}"; do
        if pid=$(pid_of "$name"); then
            printf '%-24s running (pid %s)\n' "$name" "$pid"
            up=$((up + 1))
        else
            printf '%-24s stopped\n' "$name"
        fi
    done
    if ((up > 0)) && api_ready; then
        echo "kube-apiserver /readyz ok: https://127.0.0.1:$API_PORT (KUBECONFIG=$KUBECONFIG_ADMIN)"
    fi
    ((up == ${#COMPONENTS[@]}))
}

cmd_down() {
    [[ -d $RUN ]] && lock_run
    # 1. what creates or places pods. Argo v4's workflow-controller swallows SIGTERM/SIGINT
    #    (util/logging/init.go registers them and never exits) and keeps no local state: SIGKILL.
    local pid
    if pid=$(pid_of workflow-controller); then
        log "stopping workflow-controller (pid $pid)"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    stop kwok
    stop kube-scheduler
    stop kube-controller-manager
    # 2. the real node, while the apiserver still answers (its pods are deleted through it)
    node_down
    # 3. the apiserver, then etcd
    stop apiserver-proxy
    stop kube-apiserver
    stop etcd
    # remove only what `up` creates: SCANFLOW_K8S_DIR may name a directory holding other files
    if [[ -d $RUN ]]; then
        rm -rf "$RUN/pki" "$RUN/etcd" "$RUN/logs" "$RUN/pids" "$RUN/.bootstrapped" "$RUN/.node-bootstrapped" \
            "$RUN/.lock" "$KUBECONFIG_ADMIN" "$RUN"/kube-controller-manager.kubeconfig \
            "$RUN"/kube-scheduler.kubeconfig "$RUN"/kubelet.kubeconfig "$RUN"/kube-proxy.kubeconfig
        rmdir "$RUN" 2>/dev/null || true
        log "removed the cluster state in $RUN"
    fi
}

main() {
    local cmd=${1:-}
    case $cmd in
        build) cmd_build ;;
        up) cmd_up ;;
        down) cmd_down ;;
        env) cmd_env ;;
        status) cmd_status ;;
        *) die "usage: $0 build|up|down|env|status (got '${cmd}')" ;;
    esac
}

main "$@"
