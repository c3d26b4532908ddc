#!/usr/bin/env bash
# LDAP source benchmark: 100,000 inetOrgPerson entries loaded into a throwaway OpenLDAP slapd
# (slapadd, mdb, 127.0.0.1), then `concur-sync plan` with source.kind = "ldap", bound as an
# ordinary account (size limit 500, paged 500 at a time): once against an empty snapshot
# (every user a create) and three times after `baseline` (the daily case: nothing changed).
# Prints wall time and peak RSS of each run. Target: ≤ 5 s and ≤ 300 MB.
# Measured 2026-11-23 (release build, 2 cores shared with other builds, load average ≈ 10):
#   directory read alone                      1.7–3.0 s for 100,000 entries (paged 500 at a time)
#   plan after baseline (nothing changed)     3.2–4.2 s wall, 240 MB peak RSS   (target met)
#   plan on an empty snapshot (100k creates)  6.3 s wall,     339 MB peak RSS   (over target)
# Measured 2026-11-29, entries mapped as they arrive (release, 2 shared cores, load ≈ 4.5):
#   plan on an empty snapshot (100k creates)  7.3 s wall,     292 MB peak RSS   (target met)
#   plan after baseline (nothing changed)     4.6–9.0 s wall, 180–187 MB peak RSS
# Measured 2026-11-29, creates without field changes (release, quiet machine, load < 1):
#   plan on an empty snapshot (100k creates)  5.28 s wall,     215 MB peak RSS   (target met)
#   plan after baseline (nothing changed)     3.4–4.7 s wall,  176–217 MB peak RSS
# Measured 2026-11-29 evening, manager rules over a compact array (release, load ≈ 1.7),
# `BIN=… bench/ldap-100k.sh`:
#   plan on an empty snapshot (100k creates)  3.64 s wall,     247 MB peak RSS   (target met)
#   plan after baseline (nothing changed)     2.59–3.46 s wall, 184–235 MB peak RSS
# Usage: bench/ldap-100k.sh [N]   (default N=100000; needs slapd + ldap-utils, python3, GNU time)
#   BIN=path measures that concur-sync binary instead of building this checkout.
set -euo pipefail
N=${1:-100000}
cd "$(dirname "$0")/.."
for t in slapd slapadd python3; do
  command -v "$t" >/dev/null || { echo "missing $t: run .ci/install-ldap.sh" >&2; exit 1; }
done
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet
  BIN=$PWD/target/release/concur-sync
fi
W=$(mktemp -d)
cleanup() {
  if [ -f "$W/slapd.pid" ]; then kill "$(cat "$W/slapd.pid")" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$W/db"
cat > "$W/slapd.conf" <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile  $W/slapd.pid
argsfile $W/slapd.args
database mdb
maxsize  4294967296
suffix   "dc=example,dc=com"
rootdn   "cn=admin,dc=example,dc=com"
rootpw   bench-admin
directory $W/db
dbnosync
index objectClass eq
limits * size.soft=500 size.hard=500 size.prtotal=unlimited
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
CONF
python3 - "$N" "$W/data.ldif" <<'PY'
import base64, sys
n, out = int(sys.argv[1]), sys.argv[2]
first = ["Zoë", "José", "Bjørn", "Chloé", "Ana", "Олег", "Renée", "Søren"]
last = ["García", "Sørensen", "Dubois", "Wójcik", "Ångström", "Lee", "Smith"]
b = lambda s: base64.b64encode(s.encode()).decode()
with open(out, "w") as f:
    f.write("dn: dc=example,dc=com\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n")
    f.write("dn: ou=people,dc=example,dc=com\nobjectClass: organizationalUnit\nou: people\n\n")
    f.write("dn: ou=system,dc=example,dc=com\nobjectClass: organizationalUnit\nou: system\n\n")
    f.write("dn: uid=reader,ou=system,dc=example,dc=com\nobjectClass: account\nobjectClass: simpleSecurityObject\nuid: reader\nuserPassword: bench-reader\n\n")
    for i in range(n):
        fn, ln = first[i % len(first)], last[i % len(last)]
        f.write(f"dn: uid=u{i},ou=people,dc=example,dc=com\nobjectClass: inetOrgPerson\nuid: u{i}\n"
                f"cn:: {b(fn + ' ' + ln)}\nsn:: {b(ln)}\ngivenName:: {b(fn)}\nmail: user{i}@example.com\n"
                f"employeeNumber: E{i:06d}\ndepartmentNumber: D{i % 40}\npreferredLanguage: en-US\n")
        if i > 0:
            f.write(f"manager: uid=u{(i - 1) // 10},ou=people,dc=example,dc=com\n")
        f.write("\n")
PY
/usr/bin/env time -f "slapadd $N entries: %e s wall" slapadd -q -f "$W/slapd.conf" -l "$W/data.ldif"
slapd -f "$W/slapd.conf" -h "ldap://127.0.0.1:$PORT/"
for _ in $(seq 1 100); do
  python3 -c "import socket; socket.create_connection(('127.0.0.1',$PORT)).close()" 2>/dev/null && break
  sleep 0.1
done
printf '%s\n' bench-reader > "$W/bind-password"
cat > "$W/config.toml" <<TOML
[state]
path = "$W/state.db"
[source]
kind = "ldap"
[source.ldap]
url = "ldap://127.0.0.1:$PORT"
bind_dn = "uid=reader,ou=system,dc=example,dc=com"
bind_password_file = "$W/bind-password"
base_dn = "ou=people,dc=example,dc=com"
[concur]
api = "v1"
base_url = "http://127.0.0.1:9"
client_id = "bench"
client_secret = "bench"
company_id = "bench"
request_token = "bench"
TOML
/usr/bin/env time -f "plan, empty snapshot ($N creates): %e s wall, %M KB peak RSS" \
  "$BIN" --config "$W/config.toml" plan > "$W/plan.txt"
tail -n 1 "$W/plan.txt"
"$BIN" --config "$W/config.toml" baseline > /dev/null
for run in 1 2 3; do
  /usr/bin/env time -f "plan run $run after baseline: %e s wall, %M KB peak RSS" \
    "$BIN" --config "$W/config.toml" plan > "$W/plan.txt"
done
tail -n 1 "$W/plan.txt"
