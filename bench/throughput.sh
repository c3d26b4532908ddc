#!/usr/bin/env bash
# Throughput benchmark against the bundled simulator (release build), end to end (process start
# to exit, source read and state DB included):
#   1. initial load of N1 users (default 100,000) with the rate limit off   (target ≤ 10 s)
#   2. initial load of N2 users (default 20,000) at requests_per_second = 4  (target ≥ 95 % of
#      the ceiling of 500 records/request × 4 requests/s = 2,000 users/s)
# Usage: bench/throughput.sh [N1] [N2]   (needs python3)
set -euo pipefail
N1=${1:-100000}
N2=${2:-20000}
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=$PWD/target/release/concur-sync
W=$(mktemp -d)
SIM_PID=
cleanup() {
  if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT

now() { date +%s.%N; }

# Starts a fresh simulator on a free port; sets SIM_URL and SIM_PID.
start_sim() {
  if [ -n "$SIM_PID" ]; then kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; fi
  "$BIN" simulate --listen 127.0.0.1:0 > "$W/sim.out" 2> "$W/sim.err" &
  SIM_PID=$!
  for _ in $(seq 100); do
    SIM_URL=$(sed -n 's/^simulator listening on //p' "$W/sim.out")
    [ -n "$SIM_URL" ] && return 0
    sleep 0.05
  done
  echo "the simulator did not start" >&2; cat "$W/sim.err" >&2; exit 1
}

# run NAME N RPS: initial load of N users; prints wall time and users/s.
run() {
  local name=$1 n=$2 rps=$3
  python3 bench/gen_hr.py "$n" "$W/$name.csv" "$W/$name-changed.csv" > /dev/null 2>&1
  start_sim
  cat > "$W/$name.toml" <<TOML
[state]
path = "$W/$name.db"
[source]
kind = "csv"
path = "$W/$name.csv"
[concur]
api = "v1"
base_url = "$SIM_URL"
client_id = "bench"
client_secret = "bench"
company_id = "bench"
request_token = "bench"
requests_per_second = $rps
batch_size = 500
[log]
level = "warn"
TOML
  local t0 t1
  t0=$(now)
  "$BIN" --config "$W/$name.toml" sync > "$W/$name.out"
  t1=$(now)
  local users
  users=$(curl -s "$SIM_URL/_sim/users" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  [ "$users" = "$n" ] || { echo "$name: the simulator holds $users users, expected $n" >&2; exit 1; }
  curl -s "$SIM_URL/_sim/requests" > "$W/$name.requests.json"
  python3 - "$name" "$n" "$rps" "$t0" "$t1" "$W/$name.out" "$W/$name.requests.json" <<'PY'
import json, sys
name, n, rps, t0, t1, out, reqs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6], sys.argv[7]
secs = t1 - t0
rate = n / secs
line = f"{name}: {n} users in {secs:.2f} s end to end = {rate:,.0f} users/s"
if rps > 0:
    ceiling = 500 * rps
    line += f" ({100 * rate / ceiling:.1f} % of the {ceiling:,.0f} users/s ceiling at {rps:g} requests/s)"
print(line)
# On the wire: from the first request's arrival (the token) to the last batch's answer.
log = json.load(open(reqs))
span = (max(r["time_ms"] for r in log) - min(r["arrived_ms"] for r in log)) / 1000
wire = f"  on the wire: {len(log)} requests in {span:.2f} s = {n / span:,.0f} users/s"
if rps > 0:
    wire += f" ({100 * n / span / (500 * rps):.1f} % of the ceiling)"
print(wire)
print("  " + open(out).read().strip())
PY
}

run initial-unlimited "$N1" 0
run initial-rps4 "$N2" 4
