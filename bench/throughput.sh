#!/usr/bin/env bash
# Throughput benchmark against the bundled simulator (release build), end to end (process start
# to exit, source read and state DB included):
#   1. initial load of N1 users (default 100,000) with the rate limit off   (target ≤ 10 s;
#      N1 = 0 skips it)
#   2. initial load of N2 users (default 20,000) at requests_per_second = R (default 4), User v1,
#      batch_size = BATCH (default 500). Targets: requests on the wire ÷ (elapsed × R) ≥ 98 %,
#      users/s ÷ (R × batch) ≥ 97 % (100,000 users: ≤ 51.5 s).
#   Run 2 also reports where the limiter's slots went, from the simulator's request log lined up
#   with process start and exit by a marker request: start-up (process start → first request →
#   first batch, and the requests before it), the gaps between batches (the limiter spaces
#   requests 1.01 / R apart: anything longer is an idle slot) and the tail (last request → exit).
# Usage: bench/throughput.sh [N1] [N2] [R]   (needs python3 and curl)
# Environment: BIN (a concur-sync binary to measure instead of building this tree), BATCH,
#   KEEP (a directory that receives each run's request log and output).
#
# Measured 2026-11-29 on the shared 2-core machine (load average 4–7, other builds running),
# `BIN=… bench/throughput.sh 0 100000 4`, one run each, back to back:
#   before (dbf541d): 100,000 users in 56.96 s = 1,756 users/s (87.8 % of R × batch); 203
#     requests (token, FormFields, Bulk User v3.1 list, 200 batches) ÷ (56.96 s × 4) = 89.1 %;
#     first batch 5.31 s after start (ideal 0.77 s: adoption read the whole source, then the
#     cycle read and planned it, then wrote 100,000 outbox rows); between batches mean
#     255.8 ms, 18.2 idle slots in all; tail 0.77 s. An earlier run under load 8.5: 85.91 s,
#     first batch after 26.0 s, batches 286 ms apart (answer and store write longer than a slot).
#   after: 100,000 users in 59.64 s = 1,677 users/s (83.8 %); 203 requests ÷ (59.64 s × 4) =
#     85.1 %; first batch after 7.81 s, between batches mean 256.6 ms (28.8 idle slots, most
#     in the start-up), tail 0.80 s. The source is read once (adoption reads it only when
#     Concur lists users) and planned while the token, FormFields and list requests go out;
#     what is left before the first batch is writing 100,000 outbox rows in one transaction
#     (3.7–4.8 s here, varying with the disk), so on this machine the run-to-run spread is
#     larger than the gain. Targets not met: with 203 requests spaced 1.02 / R apart, pacing
#     alone takes 51.5 s, which leaves 36 ms for start-up and tail at 97 % of R × batch.
#   then (outbox entries written as their batch leaves instead of 100,000 rows before the first
#     batch; a create's field changes no longer computed; the limiter 1 % wider than nominal
#     instead of 2 %), 2026-11-29, load ≈ 2, `BIN=… bench/throughput.sh 0 100000 4`:
#     100,000 users in 52.72 s = 1,897 users/s (94.8 % of R × batch); 203 ÷ (52.72 s × 4) =
#     96.3 %; first batch after 1.49 s (ideal 0.76 s: the plan of 100,000 creates takes about
#     1.2 s), between batches mean 253.8 ms (slot 252.5 ms), tail 0.79 s (most of it rebuilding
#     the snapshot index file of 100,000 users, which the next plan loads instead of reading
#     the database). Targets (98 %, 97 %) not met: the first and the last of 203 requests
#     1.01 / R apart are 51.01 s apart, so 97 % of R × batch (51.55 s) leaves 0.54 s for the
#     start-up (process start → first request, and any slot idle before the first batch) and
#     the tail together; here they take 0.1 + 0.73 + 0.79 s.
#   v4 (bench/v4-load.sh 1000 20000 4, run 2): before 405 requests (201 Bulks, 1.00 poll per
#     Bulk, Identity and Spend lists, token) in 117.97 s = 85.8 % of R (under heavier load);
#     after 404 requests (no Spend read when Identity lists nobody) in 105.04 s = 96.2 %; with
#     the changes above, 404 requests in 102.93 s = 98.1 % (`POLL1=0.2 bench/v4-load.sh`).
#   then (the index file mapped and rebuilt on its own thread after the cycle, users.approver,
#     the CSV row parser's buffer no longer zeroed per row, a plan's creates ordered with keys
#     worked out once and id-key maps, cheaper create passwords and expected row stamps),
#     2026-11-29, `BIN=… bench/throughput.sh 0 100000 4`, five runs on a noisy hour (load 1.3–2
#     with nothing else running): 51.58–51.92 s end to end = 96.3–96.9 % of R × batch and
#     97.7–98.4 % on the wire; first batch after 0.94–1.22 s (ideal 0.76 s; planning 100,000
#     creates still takes 0.7–0.9 s, a third of it the cross-record rules of Planner::finish),
#     tail 0.29–0.56 s (was 0.79 s). Targets (98 %, 97 %) reached in the best runs only.
#   then (the manager rules and send order worked out over a compact array of the plan's users
#     by index: planning 100,000 creates finishes in about 115 ms instead of 370; pending
#     migrations in one transaction; the log copied into the database while the index file is
#     rebuilt at exit), 2026-11-29, load 1.5–1.9, `BIN=… bench/throughput.sh 0 100000 4`, six
#     runs back to back: 51.33–51.46 s end to end = 97.2–97.4 % of R × batch (target 97 %),
#     98.6–98.9 % on the wire (target 98 %); first batch 796–818 ms after process start (ideal:
#     first request + 758 ms = 795–815 ms), idle between requests 0.08–0.10 s, tail 0.22–0.36 s.
#     Both targets met in every run.
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
    # Where the slots went: the limiter spaces requests 1.01 / R apart; any more is idle.
    slot = 1.01 / rps * 1000
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
