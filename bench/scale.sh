#!/usr/bin/env bash
# Scaling table: for each size N (default 100,000, 1,000,000 and 4,000,000 users) a generated
# HR CSV (bench/gen_hr.py: the base file and a changed file with 1 % changed, 0.5 % gone and
# 0.5 % new users), then, with wall time and peak RSS of each:
#   baseline           of the base file into an empty state DB
#   plan changed       the changed file against that snapshot (counts checked)
#   plan unchanged     the base file again (no operation expected)
#   sync unchanged     `sync` of the base file against the bundled simulator (v1)
# and the csv-diff crate (crates.io) on the same pairs (base → changed, base → base), run
# alternately with `plan` in the same loop; the table reports plan ÷ csv-diff on the same pair
# (until 2026-11-29 evening the unchanged plan was divided by the changed pair's time).
#
# csv-diff is built by this script in a throwaway cargo project under the temporary directory
# (nothing of it reaches the product's dependencies); set CSV_DIFF_BIN to reuse a built one.
#
# Measured 2026-11-29 (release build, 2 cores shared with other builds, load average ≈ 6;
# best of 2 alternating runs; csv-diff 2.19 s on the 1M changed pair):
#       users  baseline          plan changed       plan unchanged     sync unchanged
#     100,000   14.5 s  233 MB   0.45 s  67 MB      0.12 s  53 MB      0.90 s  60 MB
#   1,000,000  127.2 s 2101 MB   1.89 s 179 MB 0.86×  0.77 s 148 MB 0.35×  3.25 s 154 MB
#   (before row stamps: 1M plan changed 16.9 s 350 MB = 4.2×, unchanged 13.7 s 320 MB = 3.4×)
# baseline streamed (lean plan, then the rows written as read again; one CSV parser per block),
# 2026-11-29, release, load average ≈ 5: 1M baseline 88.8 s 371 MB (was 127.2 s 2101 MB);
# then 1M plan unchanged 1.70 s 134 MB (run alone, not the alternating table).
# baseline in less memory (the lean plan's keys in a compact table, its records cut to the
# fields it reads, each row checked and made ready for the database where it is parsed),
# 2026-11-29, release, load average ≈ 4.5, before and after run back to back, each alone:
#   python3 bench/gen_hr.py N base.csv changed.csv
#   /usr/bin/time -v concur-sync --config base.toml baseline    (empty state DB; config as below)
#       users   before (dbf541d)               after
#     100,000     3.41 s (cpu  3.0 s) 133 MB     3.69 s (cpu  3.3 s) 119 MB
#   1,000,000    47.7 s  (cpu 36.8 s) 387 MB    41.7 s  (cpu 35.3 s) 200 MB
# (the peak at 100k is the blocks in flight and SQLite's cache, not the users; at 1M it is the
# lean plan, now about 150 bytes a user.)
# The whole table again on a quiet machine (load < 1), 2026-11-29, release, after outbox entries
# written as they leave, creates without field changes and user counts read from their index
# (migration 0015): `CSV_DIFF_BIN=… RUNS=2 bench/scale.sh 100000 1000000 4000000`
#       users  baseline          plan changed  ÷diff    plan unchanged ÷diff   sync unchanged
#     100,000    2.10 s  121 MB   0.12 s  56 MB 1.09×    0.07 s  42 MB 0.64×    0.25 s  50 MB
#   1,000,000   21.85 s  222 MB   1.18 s 180 MB 0.87×    0.76 s 167 MB 0.56×    0.84 s 197 MB
#   4,000,000  119.85 s  601 MB   4.95 s 559 MB 0.71×    3.34 s 500 MB 0.48×    4.99 s 564 MB
#   csv-diff, changed pair: 0.11 s, 1.35 s, 7.00 s (best of 2; the other 1M run took 3.04 s).
#   The 1M plan of the changed file peaked at 209 MB in its other run. Per user, memory falls
#   from 1M to 4M (plan changed 180 → 140 bytes, baseline 222 → 150). Plans grow linearly
#   (4.2× and 4.4× from 1M to 4M); baseline (5.5×) and the unchanged sync (5.9×) grow faster,
#   with the B-trees of a 2 GB state database. An earlier run of the same table, an hour before
#   (before user counts were read from their index): sync unchanged 1M 2.91 s 218 MB, 4M
#   10.07 s 619 MB; plan unchanged 1M 0.90–0.97 s against csv-diff's 1.58–1.81 s (0.55×).
# After the index file is mapped and used in place (loads a million users in 15–25 ms instead of
# 150–290 ms), users.approver (migration 0016) and the index rebuilt on its own thread after a
# sync, 2026-11-29, release, on a slower hour of the machine (csv-diff took 2.7× its time of
# the table above): `CONCUR_SYNC_BIN=… CSV_DIFF_BIN=… RUNS=2 bench/scale.sh 100000 1000000`
#       users  baseline          plan changed  ÷diff    plan unchanged ÷diff   sync unchanged
#     100,000    3.58 s  124 MB   0.15 s  44 MB 0.62×    0.09 s  38 MB 0.38×    0.30 s  46 MB
#   1,000,000   39.31 s  199 MB   1.73 s 161 MB 0.47×    1.17 s 151 MB 0.32×    2.23 s 180 MB
#   csv-diff: changed pair 0.24 s, 3.70 s; unchanged pair 0.21 s, 3.28 s (best of 2).
#   The 1M unchanged plan alone, same hour, state of the table above: 0.41–0.60 s (was
#   0.74–1.01 s), its index load 14–21 ms.
# After the manager rules over a compact array, 2026-11-29, release, load ≈ 1.7:
# `CONCUR_SYNC_BIN=… CSV_DIFF_BIN=… RUNS=2 bench/scale.sh 100000 1000000 4000000` (÷diff of the
# unchanged plan recomputed against the unchanged pair, as the script now reports it):
#       users  baseline          plan changed  ÷diff    plan unchanged ÷diff   sync unchanged
#     100,000    2.30 s  136 MB   0.12 s  49 MB 1.00×    0.06 s  37 MB 0.60×    0.29 s  50 MB
#   1,000,000   19.79 s  243 MB   0.93 s 172 MB 0.64×    0.53 s 159 MB 0.46×    0.84 s 192 MB
#   4,000,000  107.55 s  626 MB   3.81 s 546 MB 0.66×    2.14 s 528 MB 0.46×    3.36 s 562 MB
#   csv-diff: changed pair 0.12 s, 1.46 s, 5.75 s; unchanged pair 0.10 s, 1.16 s, 4.68 s.
#   Counts checked by the script at every size. From 1M to 4M: plan changed 4.1×, plan
#   unchanged 4.0×, sync unchanged 4.0× (was 5.9×); baseline 5.4× (4.7× in a run alone:
#   21.8 s → 102.0 s). Memory per user falls at every step (plan changed 490 → 172 → 136 bytes,
#   baseline 1360 → 243 → 157). Where baseline's excess goes: it records every user in one
#   transaction (a half-recorded baseline would make the next sync create users Concur already
#   has), so at 4M about 2 GB of uncommitted pages spill into the log; each spill looks its
#   pages up in the log's hash tables, which grow with it (walFindFrame: 3.4 % of the 4M write
#   phase, under 0.4 % at 1M), and the commit copies the 2 GB into the database (23.5 s at 4M,
#   4.9 s at 1M). The write phase grew 5.1× (12.5 → 63.2 s), reading and planning 3.5×.
#   Committing every 50,000 users instead (a trial, not kept) was no faster: 104.1 s at 4M,
#   31.0 s at 1M.
# After a first baseline into an empty snapshot writes through the rollback journal (each new
# page written once, where the log wrote it twice: into the log, then into the database),
# 2026-11-29, release, quiet machine (load < 1.5):
# `CONCUR_SYNC_BIN=… RUNS=2 bench/scale.sh 100000 1000000 4000000`
#       users  baseline          plan changed  ÷diff    plan unchanged ÷diff   sync unchanged
#     100,000    1.22 s  139 MB   0.07 s  50 MB 0.70×    0.04 s  38 MB 0.44×    0.27 s  47 MB
#   1,000,000   10.84 s  249 MB   0.59 s 178 MB 0.76×    0.35 s 160 MB 0.35×    0.50 s 194 MB
#   4,000,000   47.97 s  645 MB   2.51 s 534 MB 0.54×    1.48 s 528 MB 0.48×    2.21 s 566 MB
#   csv-diff: changed pair 0.10 s, 0.78 s, 4.68 s; unchanged pair 0.09 s, 1.00 s, 3.11 s.
#   From 1M to 4M: baseline 4.4×, plan changed 4.3×, plan unchanged 4.2×, sync unchanged 4.4×
#   (csv-diff 6.0× and 3.1× in the same run). Baseline alone, alternating with the build
#   before it: 1M 11.16–11.17 s (was 12.86–15.89 s), 4M 46.21–47.99 s (was 55.05–61.41 s);
#   the commit, which copied the log into the database, went from 1.7–9.6 s to 0.07–0.4 s and
#   the kernel's share of the CPU time at 4M from 12–14 s to 4.3–5.5 s. What remains above
#   4× is the planner's key tables and the B-trees outgrowing the CPU caches (the key look-ups
#   go from 9 % of the 1M plan phase to 15 % at 4M), not an algorithm.
#   The whole table again, same hour (`CONCUR_SYNC_BIN=… CSV_DIFF_BIN=… RUNS=2 bench/scale.sh …`):
#     100,000    1.65 s  138 MB   0.08 s  42 MB 0.73×    0.05 s  35 MB 0.56×    0.27 s  56 MB
#   1,000,000   15.76 s  229 MB   0.68 s 168 MB 0.65×    0.41 s 159 MB 0.42×    0.72 s 194 MB
#   4,000,000   49.68 s  626 MB   2.61 s 539 MB 0.60×    1.53 s 525 MB 0.41×    2.30 s 565 MB
#   csv-diff: changed pair 0.11 s, 1.04 s, 4.34 s; unchanged pair 0.09 s, 0.97 s, 3.73 s
#   (baseline and sync run once a size: the 1M baseline of this run is the slow one).
# Usage: bench/scale.sh [N ...]        e.g. bench/scale.sh 100000 1000000
#   RUNS=3 (alternating runs per pair), KEEP=1 keeps the temporary directory,
#   CONCUR_SYNC_BIN=path measures that binary instead of building this checkout.
# Needs python3, GNU time (/usr/bin/time), curl and network access to crates.io for csv-diff.
set -euo pipefail
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(100000 1000000 4000000)
RUNS=${RUNS:-3}
cd "$(dirname "$0")/.."
ROOT=$PWD
if [ -z "${CONCUR_SYNC_BIN:-}" ]; then
  cargo build --release --quiet
fi
BIN=${CONCUR_SYNC_BIN:-$ROOT/target/release/concur-sync}
W=$(mktemp -d)
SIM_PID=
cleanup() {
  if [ -n "$SIM_PID" ]; then kill "$SIM_PID" 2>/dev/null || true; wait "$SIM_PID" 2>/dev/null || true; fi
  if [ -z "${KEEP:-}" ]; then rm -rf "$W"; else echo "kept $W" >&2; fi
}
trap cleanup EXIT

# --- csv-diff, built apart from the product -------------------------------------------------
if [ -z "${CSV_DIFF_BIN:-}" ]; then
  mkdir -p "$W/csvdiff/src"
  cat > "$W/csvdiff/Cargo.toml" <<'TOML'
[package]
name = "csvdiff-bench"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
csv-diff = "0.1"

[profile.release]
debug = false

[workspace]
TOML
  cat > "$W/csvdiff/src/main.rs" <<'RS'
//! csv-diff on two files (first column the key): prints added, deleted and modified counts.
use csv_diff::csv::Csv;
use csv_diff::csv_diff::CsvByteDiffLocal;
use csv_diff::diff_row::DiffByteRecord;
use std::fs::File;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let diff = CsvByteDiffLocal::new()?;
    let records = diff.diff(
        Csv::with_reader_seek(File::open(&args[1])?),
        Csv::with_reader_seek(File::open(&args[2])?),
    )?;
    let (mut add, mut delete, mut modify) = (0u64, 0u64, 0u64);
    for r in records.as_slice() {
        match r {
            DiffByteRecord::Add(_) => add += 1,
            DiffByteRecord::Delete(_) => delete += 1,
            DiffByteRecord::Modify { .. } => modify += 1,
        }
    }
    println!("added {add} deleted {delete} modified {modify}");
    Ok(())
}
RS
  echo "building csv-diff in $W/csvdiff …" >&2
  (cd "$W/csvdiff" && CARGO_TARGET_DIR="$W/csvdiff/target" cargo build --release --quiet)
  CSV_DIFF_BIN=$W/csvdiff/target/release/csvdiff-bench
fi

# --- the bundled simulator, for `sync` ------------------------------------------------------
"$BIN" simulate --listen 127.0.0.1:0 > "$W/sim.out" 2> "$W/sim.err" &
SIM_PID=$!
SIM_URL=
for _ in $(seq 100); do
  SIM_URL=$(sed -n 's/^simulator listening on //p' "$W/sim.out")
  [ -n "$SIM_URL" ] && break
  sleep 0.05
done
[ -n "$SIM_URL" ] || { echo "the simulator did not start" >&2; cat "$W/sim.err" >&2; exit 1; }

# timed OUT CMD...: runs CMD under GNU time; prints "seconds/KB" (stdout of CMD goes to OUT).
timed() {
  local out=$1
  shift
  /usr/bin/time -f "%e/%M" -o "$W/time" "$@" > "$out"
  cat "$W/time"
}
secs() { echo "${1%/*}"; }
mb() { echo $(( ${1#*/} / 1024 )); }
# min of a list of numbers
minimum() { printf '%s\n' "$@" | sort -g | head -n 1; }

ROWS=()
for N in "${SIZES[@]}"; do
  D=$W/n$N
  mkdir -p "$D"
  python3 bench/gen_hr.py "$N" "$D/base.csv" "$D/changed.csv" 2> "$D/gen.txt"
  read -r CHANGED GONE NEW < <(sed -E 's/changed=([0-9]+) gone=([0-9]+) new=([0-9]+)/\1 \2 \3/' "$D/gen.txt")
  config() { # config FILE SOURCE
    cat > "$1" <<TOML
[state]
path = "$D/state.db"
[source]
kind = "csv"
path = "$2"
[concur]
api = "v1"
base_url = "$SIM_URL"
client_id = "bench"
client_secret = "bench"
company_id = "bench"
request_token = "bench"
[log]
level = "warn"
TOML
  }
  config "$D/changed.toml" "$D/changed.csv"
  config "$D/base.toml" "$D/base.csv"
  BASELINE=$(timed "$D/baseline.out" "$BIN" --config "$D/base.toml" baseline)
  echo "N=$N baseline: $BASELINE ($(cat "$D/baseline.out"))" >&2
  PC=() PU=() DC=() DU=() PCM=() PUM=()
  for run in $(seq "$RUNS"); do
    t=$(timed "$D/diff-changed.out" "$CSV_DIFF_BIN" "$D/base.csv" "$D/changed.csv"); DC+=("$(secs "$t")")
    t=$(timed "$D/plan-changed.txt" "$BIN" --config "$D/changed.toml" plan); PC+=("$(secs "$t")"); PCM+=("$(mb "$t")")
    t=$(timed "$D/diff-unchanged.out" "$CSV_DIFF_BIN" "$D/base.csv" "$D/base.csv"); DU+=("$(secs "$t")")
    t=$(timed "$D/plan-unchanged.txt" "$BIN" --config "$D/base.toml" plan); PU+=("$(secs "$t")"); PUM+=("$(mb "$t")")
    echo "N=$N run $run: csv-diff changed ${DC[-1]} s, plan changed ${PC[-1]} s ${PCM[-1]} MB, csv-diff unchanged ${DU[-1]} s, plan unchanged ${PU[-1]} s ${PUM[-1]} MB" >&2
  done
  # The plan's summary must be exactly what the generator made, and csv-diff must agree.
  SUMMARY=$(grep '^plan: ' "$D/plan-changed.txt" | tail -n 1)
  echo "N=$N plan changed: $SUMMARY; csv-diff: $(cat "$D/diff-changed.out"); generated: changed=$CHANGED gone=$GONE new=$NEW" >&2
  python3 - "$SUMMARY" "$CHANGED" "$GONE" "$NEW" <<'PY'
import re, sys
summary, changed, gone, new = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
def count(word):
    m = re.search(r"(\d+) " + word, summary)
    return int(m.group(1)) if m else 0
got = (count("create"), count("update"), count("deactivat"))
want = (new, changed, gone)
if got != want:
    sys.exit(f"plan counts (creates, updates, deactivations) {got}, expected {want}: {summary}")
PY
  UNSUMMARY=$(grep '^plan: ' "$D/plan-unchanged.txt" | tail -n 1)
  case "$UNSUMMARY" in
    "plan: 0 create, 0 update, 0 reactivate, 0 deactivate, 0 password, $N unchanged, 0 rejected"*) ;;
    *) echo "N=$N plan of the unchanged file is not empty: $UNSUMMARY" >&2; exit 1 ;;
  esac
  SYNC=$(timed "$D/sync.out" "$BIN" --config "$D/base.toml" sync)
  echo "N=$N sync unchanged: $SYNC ($(tr '\n' ' ' < "$D/sync.out"))" >&2
  ROWS+=("$(printf '%9s  %7.2f s %5d MB  %6.2f s %4d MB  %5.2f×  %6.2f s %4d MB  %5.2f×  %6.2f s %4d MB' \
    "$N" "$(secs "$BASELINE")" "$(mb "$BASELINE")" \
    "$(minimum "${PC[@]}")" "$(minimum "${PCM[@]}")" \
    "$(python3 -c "print($(minimum "${PC[@]}") / max($(minimum "${DC[@]}"), 0.001))")" \
    "$(minimum "${PU[@]}")" "$(minimum "${PUM[@]}")" \
    "$(python3 -c "print($(minimum "${PU[@]}") / max($(minimum "${DU[@]}"), 0.001))")" \
    "$(secs "$SYNC")" "$(mb "$SYNC")")")
  ROWS+=("$(printf '%9s  csv-diff: changed pair %.2f s, unchanged pair %.2f s (best of %d)' "" "$(minimum "${DC[@]}")" "$(minimum "${DU[@]}")" "$RUNS")")
  rm -f "$D/state.db" "$D/state.db-wal" "$D/state.db-shm"
done

echo
echo "    users  baseline           plan changed  ÷diff  plan unchanged ÷diff  sync unchanged"
printf '%s\n' "${ROWS[@]}"
echo "(best of $RUNS alternating runs; ÷diff = plan time ÷ csv-diff time on the same pair: base → changed for the changed file, base → base for the unchanged one)"
