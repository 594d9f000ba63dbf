#!/usr/bin/env bash
# The serve job from the host: Exo-OS's HTTP/1.1 server, UDP echo and ping over QEMU user
# networking (host 127.0.0.1:$EXO_HTTP_PORT -> guest TCP 80, 127.0.0.1:$EXO_UDP_PORT -> UDP 7).
#
#   scripts/serve.sh run [N=2] [machine=q35]    boot, print the URL, serve until Ctrl-C (no
#                                               time limit); says how it ended
#   scripts/serve.sh check [N=2] [machine=q35]  CI: curl (GET / body, 404, keep-alive reuse),
#                                               UDP echo, then stop; exit 1 on any mismatch
#   scripts/serve.sh bench [CPUS="1 2 4"]       wrk (1 thread, 16 connections, 5 s) at each CPU
#                                               count: http.rps.<n> and http.lat.<n> (µs) rows
#                                               in out/serve-bench.log (mode tcg: QEMU's slirp
#                                               and a 2-core host decide, not the kernel alone)
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
what=${1:-run}
port=${EXO_HTTP_PORT:-8080} uport=${EXO_UDP_PORT:-8007}
export EXO_HTTP_PORT=$port EXO_UDP_PORT=$uport
mkdir -p out
qemu_pid=""
stop() { [ -n "$qemu_pid" ] && { pkill -P "$qemu_pid" 2>/dev/null; kill "$qemu_pid" 2>/dev/null; wait "$qemu_pid" 2>/dev/null; }; qemu_pid=""; }
trap stop EXIT

# boot N machine log [timeout]: start the serve job in the background (QEMU ended after
# timeout seconds, default 3600; 0: never), wait (60 s) for its address. qemu.sh's own
# messages go to log.err.
boot() {
    local n=$1 machine=$2 log=$3 tmo=${4:-3600}
    : >"$log"
    scripts/qemu.sh --machine "$machine" --smp "$n" --job serve --net user --timeout "$tmo" --log "$log" >/dev/null 2>"$log.err" &
    qemu_pid=$!
    for _ in $(seq 1 120); do
        grep -q '^SERVE,address,' "$log" && return 0
        grep -q '^SERVE,FAIL' "$log" && { grep '^SERVE' "$log" >&2; return 1; }
        kill -0 "$qemu_pid" 2>/dev/null || { echo "serve: QEMU ended early" >&2; tail -5 "$log" >&2; return 1; }
        sleep 0.5
    done
    echo "serve: no address within 60 s" >&2
    return 1
}

udp_echo() {
    python3 - "$uport" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
for i in range(5):
    msg = b"exo-udp-echo-%d-" % i + bytes(range(64)) * 8
    s.sendto(msg, ("127.0.0.1", int(sys.argv[1])))
    data, _ = s.recvfrom(4096)
    assert data == msg, "echo differs"
print("udp echo: 5 datagrams of %d bytes echoed intact" % len(msg))
PY
}

case $what in
run)
    n=${2:-2} machine=${3:-q35}
    # No time limit: it serves until Ctrl-C, and says how it ended. Until 2026-12-06 QEMU
    # was ended after an hour (qemu.sh --timeout 3600) and the script stopped without a
    # word (found by review).
    boot "$n" "$machine" out/serve.log 0 || exit 1
    grep '^SERVE' out/serve.log
    echo "Exo-OS serves http://127.0.0.1:$port/ (UDP echo on 127.0.0.1:$uport); Ctrl-C stops it."
    trap 'echo; echo "serve: stopped by Ctrl-C"; exit 130' INT
    tail -n +1 -f out/serve.log --pid "$qemu_pid" | grep --line-buffered '^SERVE,stats'
    wait "$qemu_pid"
    rc=$?
    qemu_pid=""
    echo "serve: QEMU ended by itself (qemu.sh exit $rc), not by Ctrl-C; the end of out/serve.log and qemu.sh's messages:" >&2
    tail -n 5 out/serve.log >&2
    cat out/serve.log.err >&2
    exit 1
    ;;
check)
    n=${2:-2} machine=${3:-q35}
    boot "$n" "$machine" out/serve-check.log || exit 1
    fail=0
    body=$(curl -sS -m 10 "http://127.0.0.1:$port/") || fail=1
    [ "$body" = "Hello from Exo-OS" ] && echo "GET / -> 200 '$body'" || { echo "GET / body: '$body'"; fail=1; }
    code=$(curl -sS -m 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/nope") || fail=1
    [ "$code" = 404 ] && echo "GET /nope -> 404" || { echo "GET /nope -> $code"; fail=1; }
    # Keep-alive: two requests on one connection (curl reuses it and says so).
    v=$(curl -sS -m 10 -v "http://127.0.0.1:$port/" "http://127.0.0.1:$port/" 2>&1 >/dev/null)
    if grep -q 'Re-using existing connection' <<<"$v" && [ "$(grep -c '< HTTP/1.1 200' <<<"$v")" = 2 ]; then
        echo "keep-alive: 2 requests, 1 connection"
    else
        echo "keep-alive: connection not reused"; fail=1
    fi
    udp_echo || fail=1
    grep -E '^SERVE,(up|address)' out/serve-check.log
    exit $fail
    ;;
bench)
    cpus=${2:-1 2 4}
    command -v wrk >/dev/null || { echo "serve bench: wrk is not installed (just setup)"; exit 1; }
    lua=$(mktemp --suffix=.lua)
    cat >"$lua" <<'LUA'
done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format("WRK,%d,%d,%d,%d,%d,%d,%d,%d,%d\n", summary.requests,
    math.floor(summary.requests / secs), summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout,
    math.floor(latency.mean), latency.min, latency.max,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
LUA
    out=out/serve-bench.log
    echo "SUITE,http,0,1000000,tcg,0,$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown),host wrk over QEMU user networking" >"$out"
    rows=0
    for n in $cpus; do
        boot "$n" q35 "out/serve-$n.log" || { stop; continue; }
        # Warm-up (ARP, slirp's connection table), then the measured run.
        wrk -t1 -c16 -d1s "http://127.0.0.1:$port/" >/dev/null 2>&1
        # QEMU's slirp listens on the forwarded port with a backlog of 1: simultaneous connects
        # overflow it and the host retries those SYNs after 1 s. Counted so the tail is explained.
        drops0=$(nstat -az TcpExtListenDrops 2>/dev/null | awk '/ListenDrops/ { print $2 }')
        line=$(wrk -t1 -c16 -d5s -s "$lua" "http://127.0.0.1:$port/" 2>&1 | grep '^WRK,')
        drops1=$(nstat -az TcpExtListenDrops 2>/dev/null | awk '/ListenDrops/ { print $2 }')
        stop
        IFS=, read -r _ reqs rps errs mean min max p50 p95 p99 <<<"$line"
        [ -n "${rps:-}" ] || { echo "serve bench: wrk gave no summary at $n CPUs"; continue; }
        echo "http at $n CPUs: $rps requests/s, latency p50 ${p50} µs p99 ${p99} µs ($reqs requests, $errs errors; host SYNs dropped at slirp's listen backlog: $(( ${drops1:-0} - ${drops0:-0} )))"
        echo "BENCH,http.rps.$n,1,$rps,$rps,$rps,$rps,$rps,$rps" >>"$out"
        echo "BENCH,http.lat.$n,$reqs,$mean,$min,$max,$p50,$p95,$p99" >>"$out"
        rows=$((rows + 2))
    done
    echo "END,http,$rows" >>"$out"
    rm -f "$lua"
    [ "$rows" -gt 0 ]
    ;;
*) sed -n '2,/^set /{/^#/p}' "$0"; exit 2 ;;
esac
