# shellcheck shell=bash
# Sourced by the .ci/install-*.sh scripts that install a Python test peer from PyPI.
# make_venv DIR: a fresh venv at DIR (removed first), with Debian's python3-venv installed when
# the machine's python3 cannot make one.
make_venv() {
  local venv=$1 py
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  py=$(command -v python3 || true)
  if [ -z "$py" ] || ! "$py" -m venv "$venv" >/dev/null 2>&1; then
    # Debian's python3 needs python3-venv (ensurepip) to make a venv.
    rm -rf "$venv"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv
    /usr/bin/python3 -m venv "$venv"
  fi
}
