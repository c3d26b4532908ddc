#!/usr/bin/env bash
# Installs OpenLDAP slapd and ldap-utils for the LDAP source tests (tests/it/ldap.rs) and
# bench/ldap-100k.sh. Non-interactive and idempotent: no system database is configured and no
# system slapd is started; the tests run their own throwaway servers.
set -euo pipefail
if command -v slapd >/dev/null && command -v slapadd >/dev/null && command -v ldapmodify >/dev/null; then
  echo "slapd and ldap-utils already installed"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update
echo 'slapd slapd/no_configuration boolean true' | $SUDO debconf-set-selections
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends slapd ldap-utils
