#!/usr/bin/env bash
# A real Prometheus in the loop: the `server` example, SHARDS fleet shards
# (examples/fleet.rs --shard I/N --metrics-listen) and a Prometheus that
# scrapes them; then Prometheus's HTTP API must say
#   sum(coder_fleet_agents{state="connected"}) == AGENTS
# and every shard's target is up. Skips (exit 0) when `prometheus` is not
# installed (Debian: apt-get install prometheus; no service is needed, this
# script runs the binary with its own config and a temporary storage dir).
#
#   scripts/prometheus-check.sh                 # 300 agents, 3 shards
#   AGENTS=2000 SHARDS=4 scripts/prometheus-check.sh
#   PROFILE=release scripts/prometheus-check.sh # use release builds
set -euo pipefail
cd "$(dirname "$0")/.."

AGENTS="${AGENTS:-300}"
SHARDS="${SHARDS:-3}"
PROFILE="${PROFILE:-debug}"
DEADLINE_S="${DEADLINE_S:-45}"

if ! command -v prometheus >/dev/null 2>&1; then
  echo "prometheus-check: skipped (no prometheus binary; apt-get install prometheus)"
  exit 0
fi
for tool in curl python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "prometheus-check: needs $tool" >&2; exit 1; }
done

if [ "$PROFILE" = release ]; then
  cargo build --quiet --release --example fleet --example server
else
  cargo build --quiet --example fleet --example server
fi
BIN="target/$PROFILE/examples"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  # Only the processes this script started, by their ids.
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits (bounded) until FILE has a line matching PATTERN; prints that line.
wait_line() {
  local file="$1" pattern="$2" i
  for i in $(seq 1 200); do
    if grep -m1 -E "$pattern" "$file" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "prometheus-check: no line /$pattern/ in $file:" >&2
  cat "$file" >&2
  return 1
}

for i in $(seq 0 $((AGENTS - 1))); do printf 'prom-check-token-%06d\n' "$i"; done > "$WORK/tokens.txt"

"$BIN/server" --listen 127.0.0.1:0 --tokens-file "$WORK/tokens.txt" --keep-history false \
  --max-connections $((AGENTS + 1024)) > "$WORK/server.out" 2>&1 &
PIDS+=($!)
URL="$(wait_line "$WORK/server.out" '^coderd .* listening on ' | awk '{print $NF}')"

TARGETS=()
for i in $(seq 0 $((SHARDS - 1))); do
  "$BIN/fleet" --tokens "$WORK/tokens.txt" --urls "$URL" --shard "$i/$SHARDS" \
    --metrics-listen 127.0.0.1:0 --duration 10m > "$WORK/shard-$i.json" 2> "$WORK/shard-$i.err" &
  PIDS+=($!)
done
for i in $(seq 0 $((SHARDS - 1))); do
  addr="$(wait_line "$WORK/shard-$i.err" 'metrics on http://' | sed -E 's#.*http://([^/]+)/metrics.*#\1#')"
  TARGETS+=("\"$addr\"")
done

PROM_PORT="$(free_port)"
cat > "$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: fleet
    static_configs:
      - targets: [$(IFS=,; echo "${TARGETS[*]}")]
YAML
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/data" \
  --web.listen-address="127.0.0.1:$PROM_PORT" > "$WORK/prometheus.log" 2>&1 &
PIDS+=($!)
PROM="http://127.0.0.1:$PROM_PORT"

# One instant query; prints the value of its single result ("" if none).
query() {
  curl -fsS --max-time 5 "$PROM/api/v1/query" --data-urlencode "query=$1" \
    | python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if len(r)==1 else "")'
}

START=$SECONDS
CONNECTED="" UP=""
while [ $((SECONDS - START)) -lt "$DEADLINE_S" ]; do
  if curl -fsS --max-time 2 "$PROM/-/ready" >/dev/null 2>&1; then
    CONNECTED="$(query 'sum(coder_fleet_agents{job="fleet",state="connected"})' || true)"
    UP="$(query 'sum(up{job="fleet"})' || true)"
    SHARD_LABELS="$(query 'count(count by (shard) (coder_fleet_agents_configured{job="fleet"}))' || true)"
    echo "prometheus-check: $((SECONDS - START)) s: connected=${CONNECTED:-?} of $AGENTS, targets up=${UP:-?} of $SHARDS, shard labels=${SHARD_LABELS:-?}"
    if [ "$CONNECTED" = "$AGENTS" ] && [ "$UP" = "$SHARDS" ] && [ "$SHARD_LABELS" = "$SHARDS" ]; then
      echo "prometheus-check: ok: Prometheus sees all $AGENTS agents connected over $SHARDS shards"
      curl -fsS --max-time 5 "$PROM/api/v1/query" \
        --data-urlencode 'query=sum by (shard) (coder_fleet_agents{state="ready"})' \
        | python3 -c 'import json,sys; [print("  shard", r["metric"]["shard"], "ready", r["value"][1]) for r in sorted(json.load(sys.stdin)["data"]["result"], key=lambda r: int(r["metric"]["shard"]))]'
      exit 0
    fi
  fi
  sleep 1
done
echo "prometheus-check: FAILED: connected=${CONNECTED:-?} of $AGENTS, up=${UP:-?} of $SHARDS within ${DEADLINE_S} s" >&2
tail -5 "$WORK/prometheus.log" >&2
for i in $(seq 0 $((SHARDS - 1))); do tail -2 "$WORK/shard-$i.err" >&2; done
exit 1
