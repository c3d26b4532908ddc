#!/usr/bin/env bash
# Plan benchmark: 1,000,000-user HR CSV, snapshot seeded from it, then `concur-sync plan` on a
# second file with 1% changed, 0.5% gone and 0.5% new. Prints wall time and peak RSS.
# Usage: bench/plan-1m.sh [N]   (default N=1000000; needs python3 and GNU time or /proc)
set -euo pipefail
N=${1:-1000000}
cd "$(dirname "$0")/.."
cargo build --release --quiet
BIN=target/release/concur-sync
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
python3 bench/gen_hr.py "$N" "$W/base.csv" "$W/changed.csv"
stat -c "%s %n" "$W"/*.csv
cat > "$W/config.toml" <<TOML
[state]
path = "$W/state.db"
[source]
kind = "csv"
path = "$W/base.csv"
[concur]
api = "v1"
base_url = "http://127.0.0.1:9"
client_id = "bench"
client_secret = "bench"
company_id = "bench"
request_token = "bench"
TOML
/usr/bin/env time -f "baseline: %e s wall, %M KB peak RSS" "$BIN" --config "$W/config.toml" baseline
sed -i "s#$W/base.csv#$W/changed.csv#" "$W/config.toml"
for run in 1 2 3; do
  /usr/bin/env time -f "plan run $run: %e s wall, %M KB peak RSS" "$BIN" --config "$W/config.toml" plan > "$W/plan.txt"
done
tail -n 1 "$W/plan.txt"
