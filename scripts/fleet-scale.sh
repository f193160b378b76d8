#!/usr/bin/env bash
# Many agents on one machine: SHARDS fleet processes (examples/fleet.rs
# --shard I/N) against SERVERS `server` example processes, each process under
# the open-file limit (20,000 here) and each server port under the ephemeral
# port range (~28,000 connections from one source address). Agents spread
# over the servers by token position (--urls), so server j serves
# `fleet tokens --shard j/SERVERS`.
#
# Measures: time until every agent is ready (summed from the shards'
# /metrics), client and server RSS, idle CPU on both sides over IDLE_S,
# the time until all are ready again after every server restarts once; then
# stops the shards (SIGTERM: each prints its summary) and merges them.
#
#   cargo build --release --example fleet --example server
#   scripts/fleet-scale.sh                                   # 10 x 10,000 agents, 7 servers
#   SHARDS=2 PER_SHARD=1000 SERVERS=2 IDLE_S=10 scripts/fleet-scale.sh   # a quick try
set -euo pipefail
cd "$(dirname "$0")/.."

SHARDS="${SHARDS:-10}"
PER_SHARD="${PER_SHARD:-10000}"
SERVERS="${SERVERS:-7}"
IDLE_S="${IDLE_S:-60}"
DIALS="${DIALS:-16}"
# Go's keepalive gives a pong 10 s; a load generator on 2 busy shared cores
# may answer later than that, so allow longer here (it did not decide the
# 100,000-agent result on a loaded machine: call timeouts did, see README).
KEEPALIVE_TIMEOUT="${KEEPALIVE_TIMEOUT:-60s}"
DEADLINE_S="${DEADLINE_S:-900}"
BIN="${BIN:-target/release/examples}"
TOTAL=$((SHARDS * PER_SHARD))
OUT="${OUT:-$(mktemp -d /tmp/fleet-scale.XXXXXX)}"
mkdir -p "$OUT"

for b in fleet server; do
  [ -x "$BIN/$b" ] || { echo "build first: cargo build --release --example fleet --example server" >&2; exit 1; }
done
ulimit -n "$(ulimit -Hn)"
echo "fleet-scale: $TOTAL agents = $SHARDS shards x $PER_SHARD, $SERVERS servers; open files $(ulimit -n); output in $OUT"
echo "fleet-scale: uptime at start: $(uptime)"

SERVER_PIDS=()
SHARD_PIDS=()
cleanup() {
  # Only the processes this script started, by their ids.
  for pid in "${SHARD_PIDS[@]}" "${SERVER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

rss_kib() { awk '/^VmRSS:/ {s += $2} END {print s + 0}' $(printf '/proc/%s/status ' "$@") 2>/dev/null; }
# utime + stime of the given pids, in clock ticks (USER_HZ = 100).
cpu_ticks() { for p in "$@"; do cut -d' ' -f14,15 "/proc/$p/stat"; done | awk '{s += $1 + $2} END {print s + 0}'; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.1f", b - a}'; }

for i in $(seq 0 $((TOTAL - 1))); do printf 'scale-agent-token-%07d\n' "$i"; done > "$OUT/tokens.txt"

# Servers: each its share of the tokens, on a port kept for its restart.
PORTS=()
start_server() {
  local j="$1" listen="$2" share
  share=$(wc -l < "$OUT/server-$j.tokens")
  "$BIN/server" --listen "$listen" --tokens-file "$OUT/server-$j.tokens" --keep-history false \
    --max-connections $((share + 1024)) > "$OUT/server-$j.out" 2>&1 &
  SERVER_PIDS[j]=$!
}
URLS=""
for j in $(seq 0 $((SERVERS - 1))); do
  "$BIN/fleet" tokens --shard "$j/$SERVERS" "$OUT/tokens.txt" > "$OUT/server-$j.tokens"
  start_server "$j" 127.0.0.1:0
done
for j in $(seq 0 $((SERVERS - 1))); do
  for _ in $(seq 1 100); do grep -q 'listening on' "$OUT/server-$j.out" && break; sleep 0.1; done
  url=$(grep -m1 'listening on' "$OUT/server-$j.out" | awk '{print $NF}')
  PORTS[j]=$(echo "$url" | sed -E 's#.*:([0-9]+)/?$#\1#')
  URLS="${URLS:+$URLS,}$url"
done
sleep 1
SERVER_RSS_BEFORE=$(rss_kib "${SERVER_PIDS[@]}")

# Shards.
T0=$(now)
for i in $(seq 0 $((SHARDS - 1))); do
  "$BIN/fleet" --tokens "$OUT/tokens.txt" --urls "$URLS" --shard "$i/$SHARDS" --dials "$DIALS" --keepalive-timeout "$KEEPALIVE_TIMEOUT" \
    --metrics-listen 127.0.0.1:0 --duration 120m > "$OUT/shard-$i.json" 2> "$OUT/shard-$i.err" &
  SHARD_PIDS[i]=$!
done
METRICS=()
for i in $(seq 0 $((SHARDS - 1))); do
  for _ in $(seq 1 600); do grep -q 'metrics on http://' "$OUT/shard-$i.err" && break; sleep 0.1; done
  METRICS[i]=$(grep -m1 -o 'http://[^ ]*/metrics' "$OUT/shard-$i.err")
done

# Sum of coder_fleet_agents{state=STATE} over the shards.
agents_in() {
  local state="$1" u
  for u in "${METRICS[@]}"; do curl -fsS --max-time 10 "$u" || true; done \
    | awk -v want="state=\"$state\"" '/^coder_fleet_agents\{/ && index($1, want) {s += $2} END {print s + 0}'
}
# Waits (bounded) until every agent is ready; prints progress every 5 s.
wait_all_ready() {
  local start=$SECONDS ready last=0
  while [ $((SECONDS - start)) -lt "$DEADLINE_S" ]; do
    ready=$(agents_in ready)
    [ "$ready" -ge "$TOTAL" ] && return 0
    if [ $((SECONDS - last)) -ge 5 ]; then
      echo "  $((SECONDS - start)) s: ready $ready of $TOTAL, connected $(agents_in connected), reconnecting $(agents_in reconnecting), failed $(agents_in failed)"
      last=$SECONDS
    fi
    sleep 0.5
  done
  return 1
}

if wait_all_ready; then
  UP_S=$(secs "$T0" "$(now)")
  echo "fleet-scale: all $TOTAL ready after $UP_S s"
else
  echo "fleet-scale: NOT all ready within $DEADLINE_S s: ready $(agents_in ready) of $TOTAL" >&2
  UP_S=""
fi
sleep 5
CLIENT_RSS=$(rss_kib "${SHARD_PIDS[@]}")
SERVER_RSS=$(rss_kib "${SERVER_PIDS[@]}")
READY=$(agents_in ready)
echo "fleet-scale: held $READY agents; client RSS $((CLIENT_RSS / 1024)) MiB total ($(awk -v r="$CLIENT_RSS" -v n="$TOTAL" 'BEGIN {printf "%.1f", r / n}') KiB/agent incl. each process's base)"
echo "fleet-scale: servers RSS $((SERVER_RSS / 1024)) MiB total, $(awk -v a="$SERVER_RSS_BEFORE" -v b="$SERVER_RSS" -v n="$TOTAL" 'BEGIN {printf "%.1f", (b - a) / n}') KiB/session over their idle RSS"
echo "fleet-scale: per-process fds: shards $(for p in "${SHARD_PIDS[@]}"; do ls /proc/$p/fd | wc -l; done | sort -n | tail -1) max, servers $(for p in "${SERVER_PIDS[@]}"; do ls /proc/$p/fd | wc -l; done | sort -n | tail -1) max"

# Idle CPU.
C0=$(cpu_ticks "${SHARD_PIDS[@]}"); S0=$(cpu_ticks "${SERVER_PIDS[@]}"); W0=$(now)
sleep "$IDLE_S"
C1=$(cpu_ticks "${SHARD_PIDS[@]}"); S1=$(cpu_ticks "${SERVER_PIDS[@]}"); W1=$(now)
per1000() { awk -v t="$1" -v w0="$W0" -v w1="$W1" -v n="$READY" 'BEGIN {printf "%.4f", t / 100 / (w1 - w0) / n * 1000}'; }
echo "fleet-scale: idle CPU over $(secs "$W0" "$W1") s: clients $(per1000 $((C1 - C0))), servers $(per1000 $((S1 - S0))) CPU-s per s per 1,000 agents; uptime: $(uptime)"

# Every server restarts once (killed, started again on its port).
T1=$(now)
for j in $(seq 0 $((SERVERS - 1))); do kill "${SERVER_PIDS[j]}"; done
for j in $(seq 0 $((SERVERS - 1))); do wait "${SERVER_PIDS[j]}" 2>/dev/null || true; done
for j in $(seq 0 $((SERVERS - 1))); do start_server "$j" "127.0.0.1:${PORTS[j]}"; done
if wait_all_ready; then
  BACK_S=$(secs "$T1" "$(now)")
  echo "fleet-scale: after every server restarted, all $TOTAL ready again after $BACK_S s"
else
  echo "fleet-scale: NOT all back within $DEADLINE_S s: ready $(agents_in ready)" >&2
fi

# Stop the shards: each prints its summary; merge them.
for pid in "${SHARD_PIDS[@]}"; do kill -TERM "$pid"; done
for pid in "${SHARD_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
SHARD_PIDS=()
"$BIN/fleet" merge "$OUT"/shard-*.json | tee "$OUT/merged.json"
echo "fleet-scale: uptime at end: $(uptime)"
