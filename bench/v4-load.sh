#!/usr/bin/env bash
# Initial-load benchmark under UPS v4 (concur.api = "v4") against the bundled simulator (release
# build), end to end (process start to exit, source read and state DB included):
#   1. N1 users (default 100,000) with the rate limit off (requests_per_second = 0) and the
#      simulator's provision delay 0                                            (target ≤ 20 s)
#   2. N2 users (default 20,000) at requests_per_second = R (default 4): one limiter for Bulks,
#      look-ups and status polls. Targets: wire requests ÷ (elapsed × R) ≥ 95 %, at most 1.5
#      status polls per Bulk on average; reports the users per second that result.
# Each run checks that the sync exited 0 and that the simulator holds exactly N v4 users, and
# counts the requests the simulator received (its request log): Bulks, status polls, the rest.
# Usage: bench/v4-load.sh [N1] [N2] [R]   (needs python3 and curl)
# Environment:
#   POLL1, POLL2    concur.provision_poll_seconds of run 1 / run 2 (default: unset, the product's
#                   default of 5 s)
#   DELAY1, DELAY2  the simulator's --provision-delay-ms of run 1 (default 0) / run 2 (default 0,
#                   the simulator's default)
#   LOG_LEVEL       [log] level of the sync (default warn); its stderr is kept with KEEP=DIR
#   KEEP            a directory that receives each run's config, output, log and request log
#
# Measured 2026-11-29, release build, 2 cores (`POLL1=0.2 bench/v4-load.sh 100000 20000 4`):
#   run 1, 100,000 users: 27.52 s end to end (sync CPU 20.4 s user + 4.1 s system), load ≈ 0.8;
#     the same machine, minutes apart, gave 23.76 s for the build before the narrow outbox, and
#     A/B runs of the two builds alternating (load 1.5–1.9) 30.4–33.0 s before, 24.6–27.5 s
#     after: wall times move by ±15 % between runs here, compare builds only side by side.
#   run 2, 20,000 users at R = 4: 404 requests in 104.83 s = 96.3 % of R, 1.00 polls per Bulk.
# Outbox entries written as their batch leaves (no 100,000-row write before the first Bulk), a
# create's field changes no longer computed, the limiter 1 % wider than nominal (was 2 %);
# 2026-11-29, load ≈ 1, same command:
#   run 1, 100,000 users: 15.69 s and 18.35 s end to end (sync CPU 14.1 s user + 2.7 s system,
#     peak RSS 312–322 MB, was 537–570 MB); one run while the machine was busier: 23.70 s.
#     A/B of the outbox change alone, alternating: 20.70 and 18.54 s before, 18.50
#     and 17.47 s after.
#   run 2, 20,000 users at R = 4: 404 requests in 102.93 s = 98.1 % of R, 1.00 polls per Bulk,
#     194 users/s.
# With the plan's manager rules over a compact array and the tail shortened (see
# bench/throughput.sh), 2026-11-29, `POLL1=0.2 bench/v4-load.sh 1000 20000 4`:
#   run 2, 20,000 users at R = 4: 404 requests in 102.81 s = 98.2 % of R, 1.00 polls per Bulk.
set -euo pipefail
N1=${1:-100000}
N2=${2:-20000}
R=${3:-4}
DELAY1=${DELAY1:-0}
DELAY2=${DELAY2:-0}
LOG_LEVEL=${LOG_LEVEL:-warn}
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=$PWD/target/release/concur-sync
COMPANY_UUID=5e0b3c8a-6f1d-4c2e-9a7b-0c1d2e3f4a5b
W=$(mktemp -d)
SIM_PID=
cleanup() {
  if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT

now() { date +%s.%N; }

# start_sim DELAY_MS: a fresh simulator on a free port serving the config's company UUID; sets
# SIM_URL and SIM_PID.
start_sim() {
  if [ -n "$SIM_PID" ]; then kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; fi
  "$BIN" simulate --listen 127.0.0.1:0 --company-uuid "$COMPANY_UUID" \
    --provision-delay-ms "$1" > "$W/sim.out" 2> "$W/sim.err" &
  SIM_PID=$!
  for _ in $(seq 100); do
    SIM_URL=$(sed -n 's/^simulator listening on //p' "$W/sim.out")
    [ -n "$SIM_URL" ] && return 0
    sleep 0.05
  done
  echo "the simulator did not start" >&2; cat "$W/sim.err" >&2; exit 1
}

# run NAME N RPS DELAY_MS POLL: initial load of N users; appends one line to the summary.
run() {
  local name=$1 n=$2 rps=$3 delay=$4 poll=$5
  python3 bench/gen_hr.py --v4 "$n" "$W/$name.csv" "$W/$name-changed.csv" > /dev/null 2>&1
  start_sim "$delay"
  local poll_line=
  [ -n "$poll" ] && poll_line="provision_poll_seconds = $poll"
  cat > "$W/$name.toml" <<TOML
[state]
path = "$W/$name.db"
[source]
kind = "csv"
path = "$W/$name.csv"
[concur]
api = "v4"
company_uuid = "$COMPANY_UUID"
base_url = "$SIM_URL"
client_id = "bench"
client_secret = "bench"
company_id = "bench"
request_token = "bench"
requests_per_second = $rps
$poll_line
[log]
level = "$LOG_LEVEL"
TOML
  local t0 t1 rc=0 timer=()
  # CPU seconds of the sync (user, system), to tell computing from waiting.
  [ -x /usr/bin/time ] && timer=(/usr/bin/time -f '%U %S' -o "$W/$name.cpu")
  : > "$W/$name.cpu"
  t0=$(now)
  "${timer[@]}" "$BIN" --config "$W/$name.toml" sync > "$W/$name.out" 2> "$W/$name.log" || rc=$?
  t1=$(now)
  curl -s "$SIM_URL/_sim/requests" > "$W/$name.requests.json"
  curl -s "$SIM_URL/_sim/v4/users" > "$W/$name.users.json"
  if [ -n "${KEEP:-}" ]; then
    mkdir -p "$KEEP"
    cp "$W/$name.toml" "$W/$name.out" "$W/$name.log" "$W/$name.requests.json" "$KEEP/"
  fi
  python3 - "$name" "$n" "$rps" "$delay" "${poll:-5 (default)}" "$t0" "$t1" "$rc" \
    "$W/$name.out" "$W/$name.requests.json" "$W/$name.users.json" "$W/summary" "$W/$name.cpu" <<'PY'
import json, sys
(name, n, rps, delay, poll, t0, t1, rc, out, reqs, users, summary, cpu) = sys.argv[1:]
n, rps, t0, t1, rc = int(n), float(rps), float(t0), float(t1), int(rc)
secs = t1 - t0
held = len(json.load(open(users)))
log = json.load(open(reqs))

def kind(r):
    p = r["path"].split("?")[0].lower().rstrip("/")
    if "oauth2" in p or p.endswith("/token"):
        return "token"
    if r["method"] == "POST" and p.endswith("/bulk"):
        return "bulk"
    if r["method"] == "GET" and "/provisions/" in p:
        return "poll"
    if r["method"] == "GET" and "/identity/v4/users" in p:
        return "look-up"
    if r["method"] == "GET" and ("/v4.1/users" in p):
        return "list"
    return "other"

counts = {}
for r in log:
    k = kind(r)
    counts[k] = counts.get(k, 0) + 1
bulks, polls = counts.get("bulk", 0), counts.get("poll", 0)
ops = sum(r.get("records") or 0 for r in log if kind(r) == "bulk")
status = {}
for r in log:
    status[r["status"]] = status.get(r["status"], 0) + 1
others = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k not in ("bulk", "poll"))
print(f"{name}: {n} users, requests_per_second = {rps:g}, provision_poll_seconds = {poll}, "
      f"simulator provision delay {delay} ms")
print(f"  sync exit {rc}; the simulator holds {held} v4 users; {secs:.2f} s end to end = "
      f"{n / secs:,.0f} users/s")
cpu = open(cpu).read().split()
if len(cpu) == 2:
    print(f"  CPU of the sync: {float(cpu[0]):.2f} s user + {float(cpu[1]):.2f} s system")
print(f"  on the wire: {len(log)} requests: {bulks} Bulks ({ops} operations), {polls} status polls "
      f"({polls / max(bulks, 1):.2f} per Bulk), {others}; answers {dict(sorted(status.items()))}")
if log:
    span = (max(r["time_ms"] for r in log) - min(r["arrived_ms"] for r in log)) / 1000
    print(f"  first request to last answer: {span:.2f} s")
line = {"name": name, "n": n, "rps": rps, "secs": secs, "rate": n / secs, "wire": len(log),
        "bulks": bulks, "polls": polls, "ok": rc == 0 and held == n}
if rps > 0:
    line["use"] = 100 * len(log) / (secs * rps)
    print(f"  requests ÷ (elapsed × R) = {len(log)} ÷ ({secs:.2f} s × {rps:g}/s) = {line['use']:.1f} %")
text = open(out).read().strip()
if text:
    print("  " + text.replace("\n", "\n  "))
with open(summary, "a") as f:
    f.write(json.dumps(line) + "\n")
if not line["ok"]:
    print(f"{name}: FAILED: sync exit {rc}, {held} of {n} users arrived", file=sys.stderr)
PY
}

run initial-unlimited "$N1" 0 "$DELAY1" "${POLL1:-}"
run "initial-rps$R" "$N2" "$R" "$DELAY2" "${POLL2:-}"

python3 - "$W/summary" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print()
print(f"{'run':<20} {'users':>7} {'R':>3} {'secs':>7} {'users/s':>8} {'requests':>8} {'Bulks':>6} "
      f"{'polls/Bulk':>10} {'use of R':>8}  targets")
for r in rows:
    per = r["polls"] / max(r["bulks"], 1)
    if r["rps"] > 0:
        use = f"{r['use']:.1f} %"
        verdict = (f"use ≥ 95 %: {'met' if r['use'] >= 95 else 'MISSED'}; "
                   f"polls/Bulk ≤ 1.5: {'met' if per <= 1.5 else 'MISSED'}")
    else:
        use = "-"
        verdict = f"≤ 20 s: {'met' if r['secs'] <= 20 else 'MISSED'}"
    if not r["ok"]:
        verdict += "; LOAD INCOMPLETE"
    print(f"{r['name']:<20} {r['n']:>7} {r['rps']:>3g} {r['secs']:>7.2f} {r['rate']:>8,.0f} "
          f"{r['wire']:>8} {r['bulks']:>6} {per:>10.2f} {use:>8}  {verdict}")
sys.exit(0 if all(r["ok"] for r in rows) else 1)
PY
