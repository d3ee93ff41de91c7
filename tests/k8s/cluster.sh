#!/usr/bin/env bash
# Local Kubernetes control plane for Scanflow's tests, built from the Go module proxy.
#
#   tests/k8s/cluster.sh build   build (once, cached by version) etcd, kube-*, kubectl, kwok, argo
#   tests/k8s/cluster.sh up      build if needed, then start the cluster (reuses a running one)
#   tests/k8s/cluster.sh down    stop every component by PID and remove the run dir
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

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE_ROOT=${SCANFLOW_K8S_CACHE:-$HOME/.cache/scanflow/k8s}
VDIR=$CACHE_ROOT/$K8S_VERSION
BIN=$VDIR/bin
SRC=$VDIR/src
RUN=$(realpath -m "${SCANFLOW_K8S_DIR:-$CACHE_ROOT/run}")

# Ports on 127.0.0.1, away from common defaults (2379/6443/10257/10259/...).
ETCD_PORT=${SCANFLOW_K8S_ETCD_PORT:-23790}
ETCD_PEER_PORT=$((ETCD_PORT + 1))
API_PORT=${SCANFLOW_K8S_API_PORT:-26443}
KCM_PORT=$((API_PORT + 1))
SCHED_PORT=$((API_PORT + 2))
KWOK_PORT=$((API_PORT + 3))
SERVICE_CIDR=10.96.0.0/16
POD_CIDR=10.244.0.0/16
NODE_NAME=kwok-node-0

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
    command -v go >/dev/null || die "go is not on PATH (Go >= 1.26 is needed to build $part)"
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
    stamp_ok kubernetes "$K8S_VERSION" kube-apiserver kube-controller-manager kube-scheduler kubectl \
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
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
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
    exec 8>&-
    log "binaries ready in $BIN (${SECONDS}s total, $((SECONDS - t0))s this run)"
}

# ---------------------------------------------------------------------------------------------
# up / down / env / status
# ---------------------------------------------------------------------------------------------

COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok workflow-controller)
PKI=$RUN/pki
KUBECONFIG_ADMIN=$RUN/kubeconfig

kubectl_() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# pid_of NAME -> PID of a live process started by us for NAME (checked against its command line)
pid_of() {
    local name=$1 pid
    pid=$(cat "$RUN/pids/$name.pid" 2>/dev/null) || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    local cmdline
    cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline")
    # our binary, with arguments naming our run dir (PIDs get reused)
    [[ $cmdline == "$BIN/$name "* && $cmdline == *" $RUN/"* ]] || return 1
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
    setsid "$BIN/$name" "$@" >>"$RUN/logs/$name.log" 2>&1 </dev/null 8>&- 9>&- &
    echo $! >"$RUN/pids/$name.pid"
    log "started $name (pid $!)"
}

# wait_for NAME SECONDS CMD... -> poll CMD until it succeeds; fail with NAME's log otherwise
wait_for() {
    local name=$1 timeout=$2; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        pid_of "$name" >/dev/null || fail_with_log "$name" "$name exited during start-up"
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
        "IP:127.0.0.1,IP:${SERVICE_CIDR%.0/*}.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    sign admin "/O=system:masters/CN=scanflow-admin"
    sign kube-controller-manager "/CN=system:kube-controller-manager"
    sign kube-scheduler "/CN=system:kube-scheduler"
    sign front-proxy-client "/CN=front-proxy-client"
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
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$API_PORT" \
        --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
        --client-ca-file "$PKI/ca.crt" \
        --requestheader-client-ca-file "$PKI/ca.crt" --requestheader-allowed-names front-proxy-client \
        --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
        --requestheader-extra-headers-prefix X-Remote-Extra- \
        --proxy-client-cert-file "$PKI/front-proxy-client.crt" \
        --proxy-client-key-file "$PKI/front-proxy-client.key" \
        --kubelet-client-certificate "$PKI/admin.crt" --kubelet-client-key "$PKI/admin.key" \
        --authorization-mode Node,RBAC --allow-privileged=true \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$PKI/sa.pub" --service-account-signing-key-file "$PKI/sa.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false
    wait_for kube-apiserver 120 api_ready
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
        --node-ip 127.0.0.1 --node-lease-duration-seconds 40 --cidr "$POD_CIDR" \
        --server-address "127.0.0.1:$KWOK_PORT"
}

start_argo() {
    LEADER_ELECTION_DISABLE=true DEFAULT_REQUEUE_TIME=1s start workflow-controller --kubeconfig "$KUBECONFIG_ADMIN" \
        --namespace argo --configmap workflow-controller-configmap \
        --executor-image "quay.io/argoproj/argoexec:$ARGO_VERSION" --loglevel info
}

node_ready() {
    kubectl_ get node "$NODE_NAME" \
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

# one `up`/`down` at a time per run dir (e.g. two pytest sessions starting together)
lock_run() {
    exec 9>"$RUN/.lock"
    flock -w 600 9 || die "another cluster.sh holds $RUN/.lock for more than 10 minutes"
}

cmd_up() {
    local t0=$SECONDS
    cmd_build
    mkdir -p "$RUN/pids" "$RUN/logs"
    lock_run
    gen_pki
    kubeconfig "$KUBECONFIG_ADMIN" admin
    kubeconfig "$RUN/kube-controller-manager.kubeconfig" kube-controller-manager
    kubeconfig "$RUN/kube-scheduler.kubeconfig" kube-scheduler
    start_etcd
    start_apiserver
    start_controllers
    bootstrap
    start_kwok
    start_argo
    wait_for kwok 60 node_ready
    wait_for workflow-controller 60 argo_ready
    wait_for kube-controller-manager 60 kubectl_ get serviceaccount default -n default
    wait_for kube-scheduler 30 curl -sfk --max-time 2 "https://127.0.0.1:$SCHED_PORT/readyz"
    log "cluster up in $((SECONDS - t0))s: kube-apiserver https://127.0.0.1:$API_PORT"
    cmd_env
}

cmd_env() {
    echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
    echo "export PATH=$BIN:\$PATH"
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
    local i name pid pids=()
    [[ -d $RUN ]] && lock_run
    # reverse start order: clients before the apiserver, the apiserver before etcd
    for ((i = ${#COMPONENTS[@]} - 1; i >= 0; i--)); do
        name=${COMPONENTS[i]}
        pid=$(pid_of "$name") || continue
        # Argo v4's workflow-controller swallows SIGTERM/SIGINT (util/logging/init.go registers
        # them and never exits) and keeps no local state: kill it outright.
        if [[ $name == workflow-controller ]]; then
            kill -KILL "$pid" 2>/dev/null || true
        else
            kill -TERM "$pid" 2>/dev/null || true
        fi
        pids+=("$pid")
        log "stopping $name (pid $pid)"
    done
    local deadline=$((SECONDS + 15))
    for pid in "${pids[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid ignored SIGTERM for 15s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    done
    # remove only what `up` creates: SCANFLOW_K8S_DIR may name a directory holding other files
    if [[ -d $RUN ]]; then
        rm -rf "$RUN/pki" "$RUN/etcd" "$RUN/logs" "$RUN/pids" "$RUN/.bootstrapped" "$RUN/.lock" \
            "$KUBECONFIG_ADMIN" "$RUN"/kube-controller-manager.kubeconfig "$RUN"/kube-scheduler.kubeconfig
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
