#!/usr/bin/env bash
# SCIM read + plan benchmark: N users (default 50,000, with managers and the enterprise
# extension) seeded into a real scim2-server, then `concur-sync plan` with source.kind = "scim"
# on an empty snapshot (a full read). Prints the reader's split between time spent waiting on
# the server (`server_wait_ms`) and time spent in concur-sync (`own_ms`), the planner's timings,
# and wall time / peak RSS of the whole command.
# Usage: bench/scim-50k.sh [N] [PAGE_SIZE]   (defaults 50000 and 1000; scim2-server caps a page at
# 1000). Needs .ci/install-scim.sh (or CONCUR_SYNC_SCIM_PYTHON). BIN=… skips the release build.
#
# Measured 2026-11-23 (release build, 2 cores shared with other builds, load average ~8),
# 50,000 users, page_size 1000 (50 pages + discovery = 51 requests), two runs:
#   seeding through /Bulk                        172 s
#   read: waiting on scim2-server (server_wait)  240 s / 145 s  (~3-5 s per page of 1000)
#   read: in concur-sync (own_ms: JSON + mapping)  1.1 s / 0.7 s
#   plan after the read (finish + complete)       1.0 s / 0.7 s
#   whole `plan`                                  243 s / 147 s wall, 177 MB peak RSS
# The read is bound by the server: concur-sync's share is under 1.5 % of the wall time.
set -euo pipefail
N=${1:-50000}
PAGE=${2:-1000}
cd "$(dirname "$0")/.."
PY=${CONCUR_SYNC_SCIM_PYTHON:-/opt/concur-sync-test/venv/bin/python3}
[ -x "$PY" ] || { echo "scim2-server is not installed: run .ci/install-scim.sh" >&2; exit 1; }
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=target/release/concur-sync
fi
W=$(mktemp -d)
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
TOKEN=bench-$RANDOM$RANDOM
"$PY" -c 'import sys; sys.argv[0] = "scim2-server"; from scim2_server.testserver.cli import main; main()' \
  --port "$PORT" --bearer-token "$TOKEN" > "$W/server.log" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$W"' EXIT
B=http://127.0.0.1:$PORT/v2
for _ in $(seq 1 200); do
  curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "$B/ServiceProviderConfig" && break
  sleep 0.05
done
"$PY" bench/scim_seed.py "$B" "$TOKEN" "$N"
printf '%s' "$TOKEN" > "$W/token"
cat > "$W/config.toml" <<TOML
[state]
path = "$W/state.db"
[source]
kind = "scim"
[source.scim]
url = "$B"
token_file = "$W/token"
page_size = $PAGE
requests_per_second = 0
timeout_seconds = 600
[concur]
api = "v1"
base_url = "http://127.0.0.1:9"
client_id = "bench"
client_secret = "bench"
company_id = "bench"
request_token = "bench"
TOML
for run in 1 2; do
  RUST_LOG=concur_sync::source::scim=info,concur_sync::sync=debug \
    /usr/bin/env time -f "plan run $run: %e s wall, %M KB peak RSS" \
    "$BIN" --config "$W/config.toml" plan > "$W/plan.txt" 2> "$W/err.txt" || { cat "$W/err.txt"; exit 1; }
  grep -E "SCIM read finished|plan timings|wall" "$W/err.txt" | sed -E 's/\x1b\[[0-9;]*m//g'
  grep "^plan:" "$W/plan.txt"
done
