#!/usr/bin/env bash
# CPU of the bundled simulator (release build) during a UPS v4 initial load: the simulator
# (`simulate --provision-delay-ms 0`) receives a v4 `sync` of N users (default 100,000) with
# requests_per_second = 0 and provision_poll_seconds = 0.2, then the CPU seconds (user, system)
# of the simulator (read from /proc/PID/stat before it exits) and of the sync are reported, per
# 100,000 users. Compare CPU seconds, not wall time: the sync and the simulator share the machine.
# Usage: bench/sim-profile.sh [N]
# Environment:
#   PERF=FILE   also record the simulator with `perf record -F 299 --call-graph dwarf` into FILE
#               (large: delete it when done); read it with `perf report -i FILE --no-children`
#   NO_BUILD=1  use target/release/concur-sync as it is
set -euo pipefail
N=${1:-100000}
cd "$(dirname "$0")/.."
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet
BIN=$PWD/target/release/concur-sync
COMPANY_UUID=5e0b3c8a-6f1d-4c2e-9a7b-0c1d2e3f4a5b
W=$(mktemp -d)
SIM_PID=
PERF_PID=
cleanup() {
  if [ -n "$PERF_PID" ]; then kill -INT "$PERF_PID" 2>/dev/null || true; wait "$PERF_PID" 2>/dev/null || true; fi
  if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT

python3 bench/gen_hr.py --v4 "$N" "$W/a.csv" "$W/b.csv" > /dev/null 2>&1
"$BIN" simulate --listen 127.0.0.1:0 --company-uuid "$COMPANY_UUID" --provision-delay-ms 0 \
  > "$W/sim.out" 2> "$W/sim.err" &
SIM_PID=$!
SIM_URL=
for _ in $(seq 100); do
  SIM_URL=$(sed -n 's/^simulator listening on //p' "$W/sim.out")
  [ -n "$SIM_URL" ] && break
  sleep 0.05
done
[ -n "$SIM_URL" ] || { echo "the simulator did not start" >&2; cat "$W/sim.err" >&2; exit 1; }

cat > "$W/sync.toml" <<TOML
[state]
path = "$W/state.db"
[source]
kind = "csv"
path = "$W/a.csv"
[concur]
api = "v4"
company_uuid = "$COMPANY_UUID"
base_url = "$SIM_URL"
client_id = "bench"
client_secret = "bench"
company_id = "bench"
request_token = "bench"
requests_per_second = 0
provision_poll_seconds = 0.2
[log]
level = "warn"
TOML

# user + system CPU ticks of a process
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
if [ -n "${PERF:-}" ]; then
  perf record -F 299 --call-graph dwarf -o "$PERF" -p "$SIM_PID" > "$W/perf.out" 2>&1 &
  PERF_PID=$!
  sleep 1
fi
SIM0=$(ticks "$SIM_PID")
t0=$(date +%s.%N)
rc=0
/usr/bin/time -f '%U %S' -o "$W/sync.cpu" "$BIN" --config "$W/sync.toml" sync \
  > "$W/sync.out" 2> "$W/sync.err" || rc=$?
t1=$(date +%s.%N)
SIM1=$(ticks "$SIM_PID")
if [ -n "$PERF_PID" ]; then kill -INT "$PERF_PID"; wait "$PERF_PID" || true; PERF_PID=; fi
HELD=$(curl -s "$SIM_URL/_sim/v4/users" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
read -r SYNC_U SYNC_S < "$W/sync.cpu"
python3 - "$N" "$rc" "$HELD" "$t0" "$t1" "$SIM0" "$SIM1" "$HZ" "$SYNC_U" "$SYNC_S" <<'PY'
import sys
n, rc, held = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
t0, t1 = float(sys.argv[4]), float(sys.argv[5])
sim = (int(sys.argv[7]) - int(sys.argv[6])) / int(sys.argv[8])
su, ss = float(sys.argv[9]), float(sys.argv[10])
per = 100_000 / n
print(f"{n} users: sync exit {rc}; the simulator holds {held} v4 users; {t1 - t0:.2f} s wall")
print(f"  simulator CPU (user+sys): {sim:.2f} s = {sim * per:.2f} s per 100k users")
print(f"  sync CPU: {su:.2f} s user + {ss:.2f} s system = {(su + ss) * per:.2f} s per 100k users")
sys.exit(0 if rc == 0 and held == n else 1)
PY
