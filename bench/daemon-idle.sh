#!/usr/bin/env bash
# Service benchmark: idle resident memory and CPU of `concur-sync run`, and the time from a
# file's rename into the drop folder to the first Concur request (targets: ≤ 30 MB idle RSS,
# near-zero idle CPU, < 2 s plus settle rules).
# Usage: bench/daemon-idle.sh [IDLE_SECONDS]   (default 30)
set -euo pipefail
IDLE=${1:-30}
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=$PWD/target/release/concur-sync
W=$(mktemp -d)
SIM_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ADMIN_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() { kill "${RUN:-}" "${SIM:-}" 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT
mkdir -p "$W/inbox"
"$BIN" simulate --listen "127.0.0.1:$SIM_PORT" > "$W/sim.log" 2>&1 &
SIM=$!
cat > "$W/config.toml" <<TOML
[state]
path = "$W/state.db"
[source]
kind = "csv"
path = "$W/inbox"
[defaults]
ledger = "DEFAULT"
[concur]
api = "v1"
base_url = "http://127.0.0.1:$SIM_PORT"
client_id = "bench"
client_secret = "bench"
company_id = "bench"
request_token = "bench"
[sync]
schedule = "0 0 0 1 1 *"
[admin]
listen = "127.0.0.1:$ADMIN_PORT"
TOML
"$BIN" --config "$W/config.toml" run > "$W/run.log" 2>&1 &
RUN=$!
for _ in $(seq 1 100); do curl -sf "127.0.0.1:$ADMIN_PORT/healthz" >/dev/null && break; sleep 0.1; done
sleep 2
t0=$(awk '{print $14+$15}' "/proc/$RUN/stat")
sleep "$IDLE"
t1=$(awk '{print $14+$15}' "/proc/$RUN/stat")
hz=$(getconf CLK_TCK)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$RUN/status")
echo "idle: RSS ${rss} KB; CPU $(( (t1 - t0) * 1000 / hz )) ms over ${IDLE} s"

# Rename a 1,000-user file into the folder and time the first user batch the simulator sees.
python3 bench/gen_hr.py 1000 "$W/a.csv" "$W/b.csv" 2>/dev/null
curl -s -X DELETE "127.0.0.1:$SIM_PORT/_sim/requests" >/dev/null
cp "$W/a.csv" "$W/inbox/.hr.csv.tmp"
start=$(date +%s%N)
mv "$W/inbox/.hr.csv.tmp" "$W/inbox/hr.csv"
for _ in $(seq 1 200); do
  if curl -s "127.0.0.1:$SIM_PORT/_sim/requests" | grep -qi '/api/user/v1.0/users'; then break; fi
  sleep 0.01
done
end=$(date +%s%N)
echo "rename → first User v1 request: $(( (end - start) / 1000000 )) ms (polling granularity 10 ms)"
rss=$(awk '/VmRSS/ {print $2}' "/proc/$RUN/status")
echo "after the cycle: RSS ${rss} KB"
