#!/usr/bin/env bash
# Checks of the deployment files; fails on any finding:
#   - shellcheck on the project's shell scripts;
#   - systemd-analyze verify of deploy/systemd/concur-sync.service (any output is a failure:
#     it exits 0 on unit-file warnings), with ExecStart pointed at the built binary;
#   - systemd-analyze security --offline=true: overall exposure at most $MAX_EXPOSURE;
#   - kubernetes-validate --strict and yamllint on every manifest under deploy/kubernetes/;
#   - the shipped config.toml files load in the built binary, and the stop timeouts of the unit
#     and the StatefulSet leave room for service.shutdown_timeout;
#   - every shipped configuration that binds the admin endpoint beyond loopback sets its token
#     (admin.token_file, a key of the example Secret under Kubernetes), and the StatefulSet's
#     probes run `concur-sync probe` inside the pod;
#   - the Dockerfile's Rust image matches Cargo.toml's rust-version.
# Needs .ci/install-deploy.sh. Run after `cargo test` (uses target/debug/concur-sync).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MAX_EXPOSURE=${MAX_EXPOSURE:-2.0}
UNIT=deploy/systemd/concur-sync.service
BIN=$ROOT/target/debug/concur-sync
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

fail() {
  echo "check-deploy: $*" >&2
  exit 1
}

if [ ! -x "$BIN" ]; then
  cargo build --quiet --bin concur-sync
fi

echo "-- shellcheck"
scripts=(.ci/run .ci/*.sh bench/*.sh)
shellcheck --severity=style "${scripts[@]}"
echo "ok: ${scripts[*]}"

echo "-- systemd-analyze verify $UNIT"
# verify also checks that ExecStart exists and is executable: use the binary built here.
sed "s#^ExecStart=/usr/local/bin/concur-sync #ExecStart=$BIN #" "$UNIT" >"$W/concur-sync.service"
grep -q "^ExecStart=$BIN " "$W/concur-sync.service" ||
  fail "$UNIT: ExecStart= no longer starts with /usr/local/bin/concur-sync; update this check"
out=$(systemd-analyze verify "$W/concur-sync.service" 2>&1) || {
  echo "$out"
  fail "systemd-analyze verify failed"
}
[ -z "$out" ] || {
  echo "$out"
  fail "systemd-analyze verify printed warnings"
}
echo "ok: no findings"

echo "-- systemd-analyze security --offline=true $UNIT"
sec=$(systemd-analyze security --offline=true "$W/concur-sync.service" 2>&1) || true
echo "$sec" | grep -v '✓' || true
exposure=$(echo "$sec" | sed -n 's/.*Overall exposure level for concur-sync\.service: \([0-9.]*\).*/\1/p')
[ -n "$exposure" ] || fail "no overall exposure level in the output above"
echo "overall exposure: $exposure (limit $MAX_EXPOSURE)"
awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }' ||
  fail "exposure $exposure is above $MAX_EXPOSURE"

echo "-- kubernetes-validate --strict deploy/kubernetes"
mapfile -t manifests < <(find deploy/kubernetes -name '*.yaml' | sort)
[ "${#manifests[@]}" -gt 0 ] || fail "no manifests under deploy/kubernetes"
for m in "${manifests[@]}"; do
  out=$(python3 -m kubernetes_validate --strict "$m" 2>&1) || {
    echo "$out"
    fail "$m is not valid"
  }
  echo "$out"
  # Every document must have been checked against a schema and passed, nothing else.
  if echo "$out" | grep -qv ' passed for resource '; then
    fail "$m: unexpected output from kubernetes-validate"
  fi
done

echo "-- yamllint deploy/kubernetes"
python3 -m yamllint --strict \
  -d '{extends: default, rules: {line-length: {max: 100}, document-start: disable}}' \
  deploy/kubernetes
echo "ok"

echo "-- shipped configurations"
python3 - "$W" <<'PY'
import ipaddress, pathlib, re, sys, tomllib, yaml

w = pathlib.Path(sys.argv[1])
errors = []
k8s = {}
for path in sorted(pathlib.Path("deploy/kubernetes").glob("*.yaml")):
    for doc in yaml.safe_load_all(path.read_text()):
        k8s[doc["kind"]] = doc
toml_k8s = k8s["ConfigMap"]["data"]["config.toml"]
(w / "k8s-config.toml").write_text(toml_k8s)
cfg_k8s = tomllib.loads(toml_k8s)
cfg_sd = tomllib.loads(pathlib.Path("deploy/systemd/config.toml").read_text())

sts = k8s["StatefulSet"]["spec"]
if sts["replicas"] != 1:
    errors.append("StatefulSet: replicas must be 1 (one writer)")
grace = sts["template"]["spec"]["terminationGracePeriodSeconds"]
if grace <= cfg_k8s["service"]["shutdown_timeout"]:
    errors.append(f"StatefulSet: terminationGracePeriodSeconds {grace} is not above shutdown_timeout")
unit = pathlib.Path("deploy/systemd/concur-sync.service").read_text()
m = re.search(r"^TimeoutStopSec=(\d+)s?$", unit, re.M)
if not m or int(m.group(1)) <= cfg_sd["service"]["shutdown_timeout"]:
    errors.append("concur-sync.service: TimeoutStopSec must be above service.shutdown_timeout")

# Beyond loopback the admin endpoint needs its token (the daemon refuses to start without one):
# every shipped configuration listening there sets admin.token_file (in the file, or through
# CONCUR_SYNC__ADMIN__TOKEN_FILE in the unit or the StatefulSet), and under Kubernetes the file
# is a key of the mounted Secret.
def loopback(listen):
    host = str(listen).rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

def env_of(text_or_containers, name):
    if isinstance(text_or_containers, str):
        m = re.search(rf"{name}=(\S+)", text_or_containers)
        return m.group(1) if m else None
    for c in text_or_containers:
        for env in c.get("env", []):
            if env.get("name") == name:
                return env.get("value")
    return None

containers = sts["template"]["spec"]["containers"]
shipped = [
    ("deploy/systemd/config.toml and concur-sync.service", cfg_sd, unit),
    ("deploy/kubernetes/configmap.yaml and the StatefulSet", cfg_k8s, containers),
]
for where, cfg, env in shipped:
    admin = cfg.get("admin", {})
    listen = env_of(env, "CONCUR_SYNC__ADMIN__LISTEN") or admin.get("listen", "127.0.0.1:9464")
    token_file = env_of(env, "CONCUR_SYNC__ADMIN__TOKEN_FILE") or admin.get("token_file")
    if loopback(listen):
        continue
    if token_file is None:
        errors.append(f"{where}: admin.listen {listen} is not a loopback address and no admin.token_file is set")
        continue
    if cfg is cfg_k8s:
        mounts = {
            m["name"]: m["mountPath"] for c in containers for m in c.get("volumeMounts", [])
        }
        secret = pathlib.Path("deploy/kubernetes/examples/secret.yaml")
        keys = yaml.safe_load(secret.read_text()).get("stringData", {})
        d, key = token_file.rsplit("/", 1)
        if d != mounts.get("secrets") or key not in keys:
            errors.append(f"{where}: admin.token_file {token_file} is not a key of the Secret mounted at {mounts.get('secrets')} ({secret})")
# The image has no shell or curl: the binary probes the health paths from inside the pod.
for c in containers:
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        if "httpGet" in c.get(probe, {}) or "tcpSocket" in c.get(probe, {}):
            errors.append(f"StatefulSet: {probe} of {c['name']} must be an exec probe (concur-sync probe)")

for e in errors:
    print("check-deploy:", e, file=sys.stderr)
sys.exit(1 if errors else 0)
PY
# Unknown keys are errors, so loading them proves every key is one the daemon knows.
if "$BIN" --help | grep -qE '^ +run '; then
  for pair in "deploy/systemd/config.toml=deploy/systemd/config.toml" \
    "deploy/kubernetes/configmap.yaml (config.toml)=$W/k8s-config.toml"; do
    name=${pair%%=*}
    out=$(CONCUR_SYNC__STATE__PATH="$W/state.db" "$BIN" --config "${pair#*=}" status --json 2>&1) || {
      echo "$out"
      fail "$name does not load in $BIN"
    }
    rm -f "$W"/state.db*
    echo "ok: $name loads"
  done
else
  echo "skipped loading them: $BIN has no \`run\` command (the daemon is not in this build)"
fi

echo "-- Dockerfile"
rust_version=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
grep -q "^FROM rust:$rust_version-" Dockerfile ||
  fail "Dockerfile: the builder image is not rust:$rust_version-* (Cargo.toml rust-version)"
echo "ok: builder rust:$rust_version (the image is not built in CI)"

echo "check-deploy: all passed"
