#!/usr/bin/env bash
# The main job on a local testnet: starts the services, builds and runs the
# node on anvil (deploying the contract) consuming both Redis and Kafka,
# replays the NAB machine temperature series as system metrics (with user
# and business events interleaved): the first half through Redis, the
# second through Kafka (keyed by metric name, user and event type), verifies
# an anchored insight against the chain, and keeps the node running until
# Ctrl-C.
#
#   scripts/demo.sh              # run until Ctrl-C
#   DEMO_EXIT=1 scripts/demo.sh  # stop after the replay and the verification
#
# Environment: DEMO_RATE (samples per second, default 400), DEMO_LIMIT
# (samples, default all), DEMO_RPC_PORT (9944), DEMO_HTTP_PORT (8080).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

RATE="${DEMO_RATE:-400}"
RPC_PORT="${DEMO_RPC_PORT:-9944}"
HTTP_PORT="${DEMO_HTTP_PORT:-8080}"
SERIES=data/nab/realKnownCause/machine_temperature_system_failure.csv
STATE="${ANALYTICS_STATE_DIR:-$HOME/.local/state/analytics-node}/demo"
RPC="http://127.0.0.1:$RPC_PORT"
mkdir -p "$STATE"

scripts/services.sh up
eval "$(scripts/services.sh env)"

echo "==> building analytics-node"
cargo build --locked -p analytics-node
BIN="$ROOT/target/debug/analytics-node"

echo "==> deploying InsightAnchor on anvil ($ETH_RPC_URL)"
CONTRACT="$("$BIN" deploy --eth-rpc-url "$ETH_RPC_URL" | tail -n 1)"
echo "    contract: $CONTRACT"

# A fresh demo database on the local server, so each demo starts clean.
PGOPTIONS="--client-min-messages=warning" psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS analytics_demo WITH (FORCE)" \
    -c "CREATE DATABASE analytics_demo"
DEMO_DB="${DATABASE_URL%/*}/analytics_demo"

# The Kafka topics exist before the node subscribes to them.
"$BIN" replay-csv "$SERIES" --kafka --kafka-brokers "$KAFKA_BROKERS" --limit 0 >/dev/null

echo "==> starting the node (log: $STATE/node.log)"
"$BIN" run --database-url "$DEMO_DB" --redis-url "$REDIS_URL" \
    --kafka --kafka-brokers "$KAFKA_BROKERS" \
    --eth-rpc-url "$ETH_RPC_URL" --contract "$CONTRACT" \
    --rpc-port "$RPC_PORT" --ws-port "$HTTP_PORT" >"$STATE/node.log" 2>&1 &
NODE_PID=$!
stop_node() { kill "$NODE_PID" 2>/dev/null || true; wait "$NODE_PID" 2>/dev/null || true; }
trap stop_node EXIT

rpc() {
    curl -sf -X POST -H 'content-type: application/json' \
        --data "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$1\",\"params\":$2}" "$RPC"
}
for _ in $(seq 1 120); do
    rpc analytics_systemHealth '[]' >/dev/null 2>&1 && break
    kill -0 "$NODE_PID" 2>/dev/null || { cat "$STATE/node.log"; exit 1; }
    sleep 0.5
done

SAMPLES="$(tail -n +2 "$SERIES" | grep -c .)"
[[ -n "${DEMO_LIMIT:-}" && "$DEMO_LIMIT" -lt "$SAMPLES" ]] && SAMPLES="$DEMO_LIMIT"
HALF=$((SAMPLES / 2))
echo "==> replaying $SERIES at $RATE samples/s: $HALF samples through Redis"
"$BIN" replay-csv "$SERIES" --metric machine_temperature --redis-url "$REDIS_URL" \
    --rate "$RATE" --with-activity --limit "$HALF"
echo "==> and $((SAMPLES - HALF)) samples through Kafka ($KAFKA_BROKERS)"
"$BIN" replay-csv "$SERIES" --metric machine_temperature --kafka \
    --kafka-brokers "$KAFKA_BROKERS" --rate "$RATE" --with-activity \
    --skip "$HALF" --limit "$((SAMPLES - HALF))"

echo "==> waiting for the first insight to be final"
PROOF="$STATE/proof.json"
rm -f "$PROOF"
for _ in $(seq 1 120); do
    if rpc analytics_getInsightProof '[1]' >"$STATE/answer.json" 2>/dev/null \
        && python3 - "$STATE/answer.json" "$PROOF" <<'PY'
import json, sys
answer = json.load(open(sys.argv[1]))
result = answer.get("result")
if not result or result["batch"]["status"] != "final":
    sys.exit(1)
json.dump(result, open(sys.argv[2], "w"), indent=2)
PY
    then break; fi
    sleep 1
done
[[ -s "$PROOF" ]] || { echo "no final insight; see $STATE/node.log"; exit 1; }

echo "==> verifying insight 1 against the chain alone"
"$BIN" verify "$PROOF" --rpc-url "$ETH_RPC_URL" --contract "$CONTRACT"

rpc analytics_systemHealth '[]' | python3 -c '
import json, sys
t = json.load(sys.stdin)["result"]["totals"]
print("==> stored {events} events, {insights} insights in {batches} batches, "
      "{deadLetters} dead letters".format(**t))'

cat <<EOF2

The node is running on the local testnet:
  JSON-RPC      $RPC   (try: analytics_listInsights, analytics_getInsightProof)
  Dashboard     http://127.0.0.1:$HTTP_PORT/
  Health        http://127.0.0.1:$HTTP_PORT/health   metrics: /metrics
  Contract      $CONTRACT on $ETH_RPC_URL
  Verify        $BIN verify $PROOF --rpc-url $ETH_RPC_URL --contract $CONTRACT
  Node log      $STATE/node.log
EOF2

if [[ -n "${DEMO_EXIT:-}" ]]; then
    exit 0
fi
echo "Ctrl-C stops the node."
wait "$NODE_PID"
