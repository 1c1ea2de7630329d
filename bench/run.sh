#!/usr/bin/env bash
# The same chain — client → edge → mTLS gate → origin — built with farmgate, nginx and HAProxy,
# measured side by side in one run. See docs/performance.md for the method.
#
#   bench/run.sh                      3 rounds of 8 loads, 10 s each (~13 minutes)
#   DURATION=5 ROUNDS=1 bench/run.sh  a quick look
#
# Knobs (environment): DURATION (seconds per load run, default 10), ROUNDS (default 3),
# LOADS (default "keepalive handshake h2 body1m ws keepalive-h2up h2-h2up body1m-h2up ws-h2up"),
# PROXIES (default "farmgate nginx haproxy"), OUT (where raw results go, default a fresh
# /tmp/farmgate-bench.XXXXXX), FARMGATE (a prebuilt binary instead of `cargo build --release`),
# WSBENCH (likewise for bench/wsbench, the WebSocket echo origin and load client).
#
# Loads: keepalive, handshake, h2, body1m (see docs/performance.md), ws (WebSocket echo), and
# keepalive-h2up, h2-h2up, body1m-h2up, ws-h2up: the same through a second edge that speaks
# HTTP/2 to the gate (farmgate `protocol = "h2"`, HAProxy `proto h2`; nginx cannot, so it has
# no such run).
#
#   CALLGRIND=1 bench/run.sh          instead of the loads: instructions per keep-alive request of
#                                     farmgate's edge and gate, counted by valgrind's callgrind
#                                     (repeatable within about 1% even on a busy machine)
#   SYSCALLS=1 bench/run.sh           instead of the loads: write syscalls on the edge-gate hop
#                                     per request, HTTP/1.1 against HTTP/2 to the gates, counted
#                                     by perf from the syscall tracepoints (needs root)
set -euo pipefail

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$BENCH")
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
LOADS=${LOADS:-keepalive handshake h2 body1m ws keepalive-h2up h2-h2up body1m-h2up ws-h2up}
PROXIES=${PROXIES:-farmgate nginx haproxy}
OUT=${OUT:-$(mktemp -d /tmp/farmgate-bench.XXXXXX)}
PKI=$OUT/pki
CALLGRIND=${CALLGRIND:-}
SYSCALLS=${SYSCALLS:-}
WRAP=()
[[ -z $SYSCALLS ]] || LOADS="keepalive h2"
if [[ -n $CALLGRIND ]]; then
    PROXIES=farmgate LOADS=keepalive
    WRAP=(valgrind --tool=callgrind "--callgrind-out-file=$OUT/callgrind.@ROLE@")
fi
# nginx and HAProxy live in /usr/sbin, which a normal user's PATH may not hold.
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
mkdir -p "$OUT/tmp" "$OUT/www" "$OUT/raw"
# Run as root, nginx's workers drop to user nobody, and the origin's must read www/1m: OUT may
# be passed through by anyone (mktemp made it 0700) but not listed; pki/ keeps its 0700 and the
# keys their 0600.
chmod 0711 "$OUT"
chmod 0755 "$OUT/www"

say() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
wants_ws() { [[ " $LOADS " == *" ws"[\ -]* ]]; }       # ws or ws-h2up: wsbench and its echo origin
wants_h2up() { [[ -n $SYSCALLS || " $LOADS " == *-h2up* ]]; } # the edges that speak h2 to the gates

# ---------------------------------------------------------------- processes we start, by PID
PIDS=()
stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# forget PID: a process that ended and was waited for; its PID may be another's by exit time.
forget() {
    local pid kept=()
    for pid in "${PIDS[@]}"; do [[ $pid == "$1" ]] || kept+=("$pid"); done
    PIDS=("${kept[@]}")
}

# start NAME COMMAND...: run COMMAND in the background, remember its PID as NAME_PID.
start() {
    local name=$1
    shift
    "$@" >"$OUT/$name.out" 2>&1 &
    PIDS+=("$!")
    printf -v "${name//-/_}_PID" '%s' "$!"
}

# wait_port PORT: until something listens on 127.0.0.1:PORT (at most 10 s, 60 s under valgrind).
wait_port() {
    local i tries=100
    [[ -z $CALLGRIND ]] || tries=600
    for i in $(seq "$tries"); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on port $1; see $OUT/*.out and $OUT/*.error.log"
}

# ---------------------------------------------------------------- tools
install_missing() {
    local missing=() program package
    for program in nginx:nginx haproxy:haproxy wrk:wrk h2load:nghttp2-client curl:curl python3:python3 cc:gcc; do
        command -v "${program%%:*}" >/dev/null 2>&1 || missing+=("${program#*:}")
    done
    [[ -f /usr/include/openssl/ssl.h ]] || missing+=(libssl-dev)
    [[ -z $SYSCALLS ]] || command -v perf >/dev/null 2>&1 || missing+=(linux-perf)
    ((${#missing[@]})) || return 0
    say "installing from Debian: ${missing[*]}"
    local sudo=()
    ((EUID == 0)) || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    # Debian starts the packaged services; the bench runs its own instances.
    for package in nginx haproxy; do
        [[ " ${missing[*]} " == *" $package "* ]] && { "${sudo[@]}" service "$package" stop >/dev/null 2>&1 || true; }
    done
}

build_farmgate() {
    if [[ -n ${FARMGATE:-} ]]; then
        [[ -x $FARMGATE ]] || die "FARMGATE=$FARMGATE is not an executable"
        return
    fi
    say "building farmgate (release)"
    (cd "$ROOT" && cargo build --release --quiet -p farmgate)
    FARMGATE=${CARGO_TARGET_DIR:-$ROOT/target}/release/farmgate
}

# bench/wsbench: the WebSocket echo origin and load client, a cargo project of its own.
build_wsbench() {
    wants_ws || return 0
    if [[ -n ${WSBENCH:-} ]]; then
        [[ -x $WSBENCH ]] || die "WSBENCH=$WSBENCH is not an executable"
        return
    fi
    say "building bench/wsbench (release)"
    cargo build --release --quiet --manifest-path "$BENCH/wsbench/Cargo.toml"
    WSBENCH=${CARGO_TARGET_DIR:-$BENCH/wsbench/target}/release/wsbench
}

# ---------------------------------------------------------------- one PKI for all three chains
mint_pki() {
    say "minting the test PKI (ECDSA P-256) in $PKI"
    "$FARMGATE" ca init --dir "$PKI" --name "farmgate bench CA" >/dev/null
    local who
    for who in "--server 127.0.0.1 --out $PKI/site" \
        "--server backend.bench.internal --out $PKI/backend" \
        "--client edge.bench.internal --out $PKI/edge-client" \
        "--client intruder.bench.internal --out $PKI/intruder"; do
        # shellcheck disable=SC2086 # word splitting wanted
        "$FARMGATE" ca issue --dir "$PKI" $who >/dev/null
    done
    # HAProxy wants certificate and key in one file.
    for who in site backend edge-client; do
        (umask 077 && cat "$PKI/$who.pem" "$PKI/$who.key" >"$PKI/$who.haproxy.pem")
    done
}

# ---------------------------------------------------------------- configurations
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

# render TEMPLATE OUTPUT EDGE_PORT GATE_PORT: fill in @NAME@ placeholders (LOG_RESUMPTION and
# UPSTREAM_PROTOCOL from the environment).
render() {
    sed -e "s#@DIR@#$OUT#g" -e "s#@PKI@#$PKI#g" -e "s#@ORIGIN_PORT@#$ORIGIN_PORT#g" \
        -e "s#@WS_PORT@#$WS_PORT#g" -e "s#@EDGE_PORT@#$3#g" -e "s#@GATE_PORT@#$4#g" \
        -e "s#@LOG_RESUMPTION@#${LOG_RESUMPTION:-0}#g" -e "s#@UPSTREAM_PROTOCOL@#${UPSTREAM_PROTOCOL:-}#g" \
        "$BENCH/$1" >"$OUT/$2"
}

start_chains() {
    local ports
    read -r -a ports <<<"$(free_ports 10)"
    ORIGIN_PORT=${ports[0]} WS_PORT=${ports[9]}
    declare -gA EDGE_PORT GATE_PORT EDGE_H2UP_PORT
    EDGE_PORT=([farmgate]=${ports[1]} [nginx]=${ports[3]} [haproxy]=${ports[5]})
    GATE_PORT=([farmgate]=${ports[2]} [nginx]=${ports[4]} [haproxy]=${ports[6]})
    # nginx cannot proxy to an HTTP/2 upstream: it has no such edge.
    EDGE_H2UP_PORT=([farmgate]=${ports[7]} [haproxy]=${ports[8]})
    head -c 1048576 /dev/urandom >"$OUT/www/1m"
    chmod 0644 "$OUT/www/1m"

    say "origin: nginx, one worker, 'return 200' on 127.0.0.1:$ORIGIN_PORT (and /1m, 1 MiB)"
    render nginx-origin.conf origin.conf 0 0
    start origin nginx -c "$OUT/origin.conf" -g 'daemon off;'
    wait_port "$ORIGIN_PORT"
    # Before any proxy: the origin itself serves /1m (its worker can read the file).
    local code
    code=$(curl -sS --max-time 5 -o "$OUT/1m.check" -w '%{http_code}' "http://127.0.0.1:$ORIGIN_PORT/1m") || true
    cmp -s "$OUT/1m.check" "$OUT/www/1m" ||
        die "the origin answered /1m with $code: its worker cannot read $OUT/www/1m (see $OUT/origin.error.log;" \
            "run as root, nginx's workers are user nobody, so every directory above OUT must let others pass)"
    if wants_ws; then
        say "WebSocket origin: wsbench echo on 127.0.0.1:$WS_PORT"
        start wsecho "$WSBENCH" echo --listen "127.0.0.1:$WS_PORT"
        wait_port "$WS_PORT"
    fi

    local p
    for p in $PROXIES; do
        local e=${EDGE_PORT[$p]} g=${GATE_PORT[$p]}
        say "$p: edge 127.0.0.1:$e → gate 127.0.0.1:$g → origin"
        case $p in
        farmgate)
            render farmgate-gate.toml farmgate-gate.toml "$e" "$g"
            render farmgate-edge.toml farmgate-edge.toml "$e" "$g"
            start farmgate-gate "${WRAP[@]/@ROLE@/gate}" "$FARMGATE" run -c "$OUT/farmgate-gate.toml"
            start farmgate-edge "${WRAP[@]/@ROLE@/edge}" "$FARMGATE" run -c "$OUT/farmgate-edge.toml"
            if wants_h2up; then
                UPSTREAM_PROTOCOL='protocol = "h2"' render farmgate-edge.toml farmgate-edge-h2up.toml \
                    "${EDGE_H2UP_PORT[$p]}" "$g"
                start farmgate-edge-h2up "$FARMGATE" run -c "$OUT/farmgate-edge-h2up.toml"
            fi
            ;;
        nginx)
            render nginx-gate.conf nginx-gate.conf "$e" "$g"
            LOG_RESUMPTION=1 render nginx-edge.conf nginx-edge.conf "$e" "$g"
            start nginx-gate nginx -c "$OUT/nginx-gate.conf" -g 'daemon off;'
            start nginx-edge nginx -c "$OUT/nginx-edge.conf" -g 'daemon off;'
            ;;
        haproxy)
            render haproxy-gate.cfg haproxy-gate.cfg "$e" "$g"
            render haproxy-edge.cfg haproxy-edge.cfg "$e" "$g"
            start haproxy-gate haproxy -db -f "$OUT/haproxy-gate.cfg"
            start haproxy-edge haproxy -db -f "$OUT/haproxy-edge.cfg"
            if wants_h2up; then
                UPSTREAM_PROTOCOL='alpn h2 proto h2' render haproxy-edge.cfg haproxy-edge-h2up.cfg \
                    "${EDGE_H2UP_PORT[$p]}" "$g"
                start haproxy-edge-h2up haproxy -db -f "$OUT/haproxy-edge-h2up.cfg"
            fi
            ;;
        *) die "unknown proxy $p (farmgate, nginx or haproxy)" ;;
        esac
        wait_port "$g"
        wait_port "$e"
        if wants_h2up && [[ -n ${EDGE_H2UP_PORT[$p]:-} ]]; then
            say "$p: edge 127.0.0.1:${EDGE_H2UP_PORT[$p]} → HTTP/2 → the same gate"
            wait_port "${EDGE_H2UP_PORT[$p]}"
        fi
    done
}

# ---------------------------------------------------------------- checks before measuring
check_chains() {
    local p e g body code
    for p in $PROXIES; do
        e=${EDGE_PORT[$p]} g=${GATE_PORT[$p]}
        check_edge "$p" "$e"
        # The gate itself: the edge's certificate gets through, no certificate or another name
        # from the same CA does not.
        body=$(curl -sS --max-time 5 --cacert "$PKI/ca.pem" --resolve "backend.bench.internal:$g:127.0.0.1" \
            --cert "$PKI/edge-client.pem" --key "$PKI/edge-client.key" "https://backend.bench.internal:$g/") ||
            die "$p: the gate refused the edge's certificate"
        [[ $body == ok ]] || die "$p: the gate answered '$body' to the edge's certificate"
        for who in none intruder; do
            local cert=()
            [[ $who == intruder ]] && cert=(--cert "$PKI/intruder.pem" --key "$PKI/intruder.key")
            code=$(curl -s --max-time 5 --cacert "$PKI/ca.pem" --resolve "backend.bench.internal:$g:127.0.0.1" \
                "${cert[@]}" -o /dev/null -w '%{http_code}' "https://backend.bench.internal:$g/") || true
            [[ $code != 200 ]] || die "$p: the gate let a client with certificate '$who' through"
        done
        say "$p: chain ok; gate refuses no certificate and another name from the same CA"
        if wants_ws; then
            "$WSBENCH" load --url "wss://127.0.0.1:$e/ws" --ca "$PKI/ca.pem" --connections 4 --duration 0.5 \
                >"$OUT/raw/ws-check.$p.txt" 2>&1 ||
                die "$p: a WebSocket echo through the chain failed: $(tail -n 1 "$OUT/raw/ws-check.$p.txt")"
            say "$p: WebSocket echo through the chain ok"
        fi
        if wants_h2up && [[ -n ${EDGE_H2UP_PORT[$p]:-} ]]; then
            check_edge "$p (HTTP/2 to the gate)" "${EDGE_H2UP_PORT[$p]}"
            if [[ " $LOADS " == *" ws-h2up "* ]]; then
                "$WSBENCH" load --url "wss://127.0.0.1:${EDGE_H2UP_PORT[$p]}/ws" --ca "$PKI/ca.pem" --connections 4 \
                    --duration 0.5 >"$OUT/raw/ws-check.$p.h2up.txt" 2>&1 ||
                    die "$p: a WebSocket echo through the chain with HTTP/2 to the gate failed:" \
                        "$(tail -n 1 "$OUT/raw/ws-check.$p.h2up.txt")"
            fi
            say "$p: chain with HTTP/2 to the gate ok"
        fi
    done
}

# check_edge WHAT PORT: HTTP/1.1 and HTTP/2 requests through the edge on PORT, and the 1 MiB
# body byte for byte.
check_edge() {
    local body code
    body=$(curl -sS --max-time 5 --cacert "$PKI/ca.pem" "https://127.0.0.1:$2/") ||
        die "$1: curl through the chain failed"
    [[ $body == ok ]] || die "$1: the chain answered '$body' instead of 'ok'"
    curl -sS --max-time 5 --http2 --cacert "$PKI/ca.pem" -o /dev/null "https://127.0.0.1:$2/" ||
        die "$1: HTTP/2 through the chain failed"
    code=$(curl -sS --max-time 5 --cacert "$PKI/ca.pem" -o "$OUT/1m.check" -w '%{http_code}' \
        "https://127.0.0.1:$2/1m") || die "$1: 1 MiB through the chain failed"
    cmp -s "$OUT/1m.check" "$OUT/www/1m" || die "$1: the 1 MiB body arrived altered ($code)"
}

# The handshake load must make the client do a full handshake for every request. wrk (and
# h2load) keep each connection slot's TLS session across reconnects, so their "new" connections
# resume; no option turns that off. no-resume.c, preloaded into wrk, drops the session before
# each handshake. Proven here on the nginx edge, which logs $ssl_session_reused ('r' resumed,
# '.' full) per request, and by the kernel's count of TCP connections opened.
build_no_resume() {
    cc -O2 -shared -fPIC -o "$OUT/no-resume.so" "$BENCH/no-resume.c" -ldl ||
        die "cannot build no-resume.so (needs cc and libssl-dev)"
}

check_resumption() {
    [[ " $PROXIES " == *" nginx "* ]] || return 0
    local e=${EDGE_PORT[nginx]} log=$OUT/nginx-edge.resumption.log full resumed opens requests
    local shim
    for shim in "" "$OUT/no-resume.so"; do
        : >"$log"
        opens=$(tcp_active_opens)
        LD_PRELOAD=$shim timeout 10 wrk -t1 -c4 -d2s -H 'Connection: close' "https://127.0.0.1:$e/" \
            >"$OUT/raw/resumption-check.txt" 2>&1 || die "wrk failed; see $OUT/raw/resumption-check.txt"
        opens=$(($(tcp_active_opens) - opens))
        requests=$(awk '/requests in/ { print $1 }' "$OUT/raw/resumption-check.txt")
        full=$(grep -c '^\.$' "$log" || true)
        resumed=$(grep -c '^r$' "$log" || true)
        say "resumption check, wrk with 'Connection: close'${shim:+ and no-resume.so}: $requests requests," \
            "$opens TCP connections (edge and gate), $full full handshakes, $resumed resumed"
    done
    ((resumed == 0 && full >= requests)) || die "the handshake load resumed sessions; it would not measure full handshakes"
    # Quiet again: the measured runs log nothing.
    LOG_RESUMPTION=0 render nginx-edge.conf nginx-edge.conf "$e" "${GATE_PORT[nginx]}"
    kill -HUP "$nginx_edge_PID"
    sleep 2
}

tcp_active_opens() { awk '/^Tcp:/ { if (++n == 2) print $6 }' /proc/net/snmp; }

# ---------------------------------------------------------------- measuring
# pids_of PROXY ROLE: the process and its children (nginx workers).
pids_of() {
    local var="${1}_${2}_PID"
    local pid=${!var}
    echo "$pid" $(pgrep -P "$pid" || true)
}

# snapshot FILE PIDS...: utime, stime (clock ticks) and VmHWM (KiB) of each process.
snapshot() {
    local file=$1 pid
    shift
    for pid in "$@"; do
        local stat hwm
        stat=$(sed 's/.*) //' "/proc/$pid/stat") # after "pid (comm) "
        hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status")
        awk -v pid="$pid" -v hwm="$hwm" '{ print pid, $12, $13, hwm }' <<<"$stat"
    done >"$file"
}

# reset_peak PIDS...: start each process's peak RSS afresh (so each load gets its own peak).
reset_peak() {
    local pid
    for pid in "$@"; do echo 5 >"/proc/$pid/clear_refs"; done
}

# load NAME PORT OUTPUT: one time-bounded load run against the edge on PORT. The -h2up loads
# are the same loads, sent to the edge that speaks HTTP/2 to the gate.
load() {
    local url=https://127.0.0.1:$2 out=$3 limit=$((DURATION + 30))
    case ${1%-h2up} in
    keepalive) timeout -k 5 "$limit" wrk -t2 -c64 -d"${DURATION}s" --latency "$url/" >"$out" 2>&1 ;;
    body1m) timeout -k 5 "$limit" wrk -t2 -c16 -d"${DURATION}s" --latency "$url/1m" >"$out" 2>&1 ;;
    handshake) LD_PRELOAD=$OUT/no-resume.so timeout -k 5 "$limit" wrk -t2 -c64 -d"${DURATION}s" --latency \
        -H 'Connection: close' "$url/" >"$out" 2>&1 ;;
    h2) timeout -k 5 "$limit" h2load -t2 -c16 -m16 -D "$DURATION" --log-file="$out.log" "$url/" >"$out" 2>&1 ;;
    ws) timeout -k 5 "$limit" "$WSBENCH" --threads 2 load --url "wss://127.0.0.1:$2/ws" --ca "$PKI/ca.pem" \
        --connections 64 --size 32 --duration "$DURATION" >"$out" 2>&1 ;;
    *) die "unknown load $1" ;;
    esac
}

measure() {
    local round p l edge gate name role port
    for round in $(seq "$ROUNDS"); do
        for l in $LOADS; do
            for p in $PROXIES; do
                name=$OUT/raw/$round.$l.$p
                role=edge port=${EDGE_PORT[$p]}
                if [[ $l == *-h2up ]]; then
                    [[ -n ${EDGE_H2UP_PORT[$p]:-} ]] || continue # nginx: no HTTP/2 upstreams
                    role=edge_h2up port=${EDGE_H2UP_PORT[$p]}
                fi
                read -r -a edge <<<"$(pids_of "$p" "$role")"
                read -r -a gate <<<"$(pids_of "$p" gate)"
                reset_peak "${edge[@]}" "${gate[@]}"
                snapshot "$name.edge.before" "${edge[@]}"
                snapshot "$name.gate.before" "${gate[@]}"
                load "$l" "$port" "$name.load" || say "warning: $l on $p exited with $? (see $name.load)"
                snapshot "$name.edge.after" "${edge[@]}"
                snapshot "$name.gate.after" "${gate[@]}"
                say "round $round/$ROUNDS $l $p: $(python3 "$BENCH/table.py" --summary "$name")"
                sleep 1
            done
        done
    done
}

describe_machine() {
    {
        echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
        echo "cpu: $(nproc) × $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
        echo "kernel: $(uname -r)"
        echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
        echo "farmgate: $("$FARMGATE" --version) ($(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?'))"
        echo "nginx: $(nginx -v 2>&1 | sed 's/.*\///')"
        echo "haproxy: $(haproxy -v | awk 'NR == 1 { print $3 }')"
        echo "wrk: $(wrk -v 2>&1 | awk 'NR == 1 { print $2 }'); h2load: $(h2load --version | awk '{ print $NF }')"
        ! wants_ws || echo "wsbench: tokio-tungstenite $(awk '/^name = "tokio-tungstenite"/ { getline; print $3 }' \
            "$BENCH/wsbench/Cargo.lock" | tr -d '"')"
        echo "rounds: $ROUNDS × ${DURATION}s per load"
    } >"$OUT/machine.txt"
}

# Instructions per keep-alive request: warm up, zero the counters, send a fixed number of
# requests, dump, divide.
count_instructions() {
    local n=20000 url=https://127.0.0.1:${EDGE_PORT[farmgate]}/ role total
    command -v valgrind >/dev/null || die "CALLGRIND=1 needs valgrind (apt-get install valgrind)"
    h2load --h1 -t1 -c16 -n 2000 "$url" >/dev/null
    callgrind_control -z "$farmgate_edge_PID" >/dev/null 2>&1
    callgrind_control -z "$farmgate_gate_PID" >/dev/null 2>&1
    h2load --h1 -t1 -c16 -n "$n" "$url" | grep -q "$n succeeded" || die "requests failed under valgrind"
    callgrind_control -d "$farmgate_edge_PID" >/dev/null 2>&1
    callgrind_control -d "$farmgate_gate_PID" >/dev/null 2>&1
    for role in edge gate; do
        total=$(callgrind_annotate "$OUT/callgrind.$role.1" | awk '/PROGRAM TOTALS/ { gsub(",", "", $1); print $1 }')
        echo "farmgate $role: $((total / n)) instructions per keep-alive request ($OUT/callgrind.$role.1)"
    done
}

# Write syscalls on the edge-gate hop: for each edge (HTTP/1.1 or HTTP/2 to the gate) and each
# of the keepalive and h2 loads, perf records the write-family syscall tracepoints of the edge's
# and the gate's processes during the load run; writes.py keeps those on the sockets between
# edge and gate (their file descriptors listed halfway through the run) and divides the
# requests completed by them. Tracepoints cost little per call, unlike strace, whose stops would
# slow the proxies down and so change how many requests each write carries.
count_writes() {
    local events=syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg
    local p proto l role port name edge gate syscw load_pid
    for p in $PROXIES; do
        for proto in http1 h2; do
            role=edge port=${EDGE_PORT[$p]}
            if [[ $proto == h2 ]]; then
                [[ -n ${EDGE_H2UP_PORT[$p]:-} ]] || continue # nginx: no HTTP/2 upstreams
                role=edge_h2up port=${EDGE_H2UP_PORT[$p]}
            fi
            read -r -a edge <<<"$(pids_of "$p" "$role")"
            read -r -a gate <<<"$(pids_of "$p" gate)"
            for l in keepalive h2; do
                name=$OUT/raw/writes.$l.$p.$proto
                syscw=$(syscw "${edge[@]}")
                start perf-record perf record -q -o "$name.perf" -e "$events" \
                    -p "$(IFS=, && echo "${edge[*]},${gate[*]}")" -- sleep $((DURATION + 2))
                sleep 1 # perf attaches
                load "$l" "$port" "$name.load" &
                load_pid=$!
                PIDS+=("$load_pid")
                sleep "$(awk -v d="$DURATION" 'BEGIN { print d / 2 }')" # halfway through the load
                python3 "$BENCH/writes.py" sockets "${edge[@]}" "${gate[@]}" >"$name.sockets"
                wait "$load_pid" || say "warning: $l on $p exited with $? (see $name.load)"
                forget "$load_pid"
                syscw=$(($(syscw "${edge[@]}") - syscw))
                wait "$perf_record_PID" || die "perf record failed; see $OUT/perf-record.out"
                forget "$perf_record_PID"
                perf script -i "$name.perf" -F pid,event,trace 2>/dev/null |
                    python3 "$BENCH/writes.py" count "$p, $l load, $proto to the gate" "$name.load" "$name.sockets" \
                        "${GATE_PORT[$p]}" "$(IFS=, && echo "${edge[*]}")" "$(IFS=, && echo "${gate[*]}")" "$syscw" |
                    tee -a "$OUT/writes.txt"
                rm -f "$name.perf"
            done
        done
    done
}

# syscw PIDS...: the write syscalls (write, writev) the processes made so far, per /proc/PID/io.
syscw() {
    local pid total=0
    for pid in "$@"; do total=$((total + $(awk '/^syscw:/ { print $2 }' "/proc/$pid/io"))); done
    echo "$total"
}

for l in $LOADS; do
    case $l in
    keepalive | handshake | h2 | body1m | ws | keepalive-h2up | h2-h2up | body1m-h2up | ws-h2up) ;;
    *) die "unknown load $l (keepalive handshake h2 body1m ws, and keepalive h2 body1m ws with -h2up)" ;;
    esac
done
install_missing
build_farmgate
build_wsbench
mint_pki
start_chains
check_chains
if [[ -n $CALLGRIND ]]; then
    count_instructions
    exit 0
fi
if [[ -n $SYSCALLS ]]; then
    count_writes
    exit 0
fi
build_no_resume
check_resumption
describe_machine
say "measuring: $ROUNDS rounds × ($LOADS) × ($PROXIES), ${DURATION}s each; raw results in $OUT"
measure
stop_all
python3 "$BENCH/table.py" "$OUT"
