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
R=${3:-4}
BATCH=${BATCH:-500}
cd "$(dirname "$0")/.."
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=$PWD/target/release/concur-sync
fi
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

# mark: a request the simulator logs (and the report leaves out), to line its clock up with ours.
mark() { curl -s -o /dev/null "$SIM_URL/bench/mark" || true; }

# run NAME N RPS: initial load of N users; prints wall time and users/s, and for a rate-limited
# run where the limiter's slots went.
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
batch_size = $BATCH
[log]
level = "warn"
TOML
  local t0 t1
  mark
  t0=$(now)
  "$BIN" --config "$W/$name.toml" sync > "$W/$name.out"
  t1=$(now)
  mark
  local users
  users=$(curl -s "$SIM_URL/_sim/users" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
  [ "$users" = "$n" ] || { echo "$name: the simulator holds $users users, expected $n" >&2; exit 1; }
  curl -s "$SIM_URL/_sim/requests" > "$W/$name.requests.json"
  [ -n "${KEEP:-}" ] && { mkdir -p "$KEEP"; cp "$W/$name.requests.json" "$W/$name.out" "$KEEP/"; }
  python3 - "$name" "$n" "$rps" "$t0" "$t1" "$W/$name.out" "$W/$name.requests.json" "$BATCH" <<'PY'
import json, sys
name, n, rps, t0, t1, out, reqs, batch = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]), sys.argv[6], sys.argv[7], int(sys.argv[8])
secs = t1 - t0
rate = n / secs
line = f"{name}: {n} users in {secs:.2f} s end to end = {rate:,.0f} users/s"
if rps > 0:
    ceiling = batch * rps
    line += f" ({100 * rate / ceiling:.1f} % of the {ceiling:,.0f} users/s ceiling R × batch)"
print(line)
log = json.load(open(reqs))
marks = [r for r in log if r["path"] == "/bench/mark"]
log = sorted((r for r in log if r["path"] != "/bench/mark"), key=lambda r: r["arrived_ms"])
kinds = {}
for r in log:
    k = "batch" if r.get("records") else r["path"].split("?")[0]
    kinds[k] = kinds.get(k, 0) + 1
print(f"  on the wire: {len(log)} requests: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
if rps > 0:
    print(f"  requests ÷ (elapsed × R) = {len(log)} ÷ ({secs:.2f} s × {rps:g}/s) = "
          f"{100 * len(log) / (secs * rps):.1f} %;  users/s ÷ (R × batch) = {100 * rate / (batch * rps):.1f} %")
if rps > 0 and len(marks) == 2 and log:
    # Where the slots went: the limiter spaces requests 1.02 / R apart; any more is idle.
    slot = 1.02 / rps * 1000
    start = marks[0]["arrived_ms"]
    end = marks[1]["arrived_ms"]
    arr = [r["arrived_ms"] for r in log]
    batches = [r["arrived_ms"] for r in log if r.get("records")]
    pre = [r for r in log if not r.get("records") and (not batches or r["arrived_ms"] < batches[0])]
    gaps = [b - a for a, b in zip(arr, arr[1:])]
    idle_between = sum(max(0.0, g - slot) for g in gaps)
    print(f"  start-up: process start → first request {arr[0] - start} ms; "
          f"→ first batch {batches[0] - start if batches else '-'} ms "
          f"({len(pre)} requests before it: {', '.join(r['path'].split('?')[0] for r in pre)}; "
          f"ideal {len(pre) * slot:.0f} ms)")
    bg = [b - a for a, b in zip(batches, batches[1:])]
    if bg:
        print(f"  between batches: mean {sum(bg) / len(bg):.1f} ms, max {max(bg)} ms (slot {slot:.1f} ms); "
              f"idle between requests {idle_between / 1000:.2f} s = {idle_between / slot:.1f} slots")
    print(f"  tail: last request → exit {end - arr[-1]} ms")
print("  " + open(out).read().strip())
PY
}

[ "$N1" -gt 0 ] && run initial-unlimited "$N1" 0
run "initial-rps$R" "$N2" "$R"
