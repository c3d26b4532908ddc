#!/usr/bin/env bash
# Installs the SCIM 2.0 compliance checker (scim2-tester, run through scim2-cli's `test`, from
# PyPI) into a venv of its own; the SCIM push tests look for it there (or at
# $CONCUR_SYNC_SCIM_TESTER). Idempotent: a second run only checks that the command runs.
set -euo pipefail
VENV=${CONCUR_SYNC_SCIM_TESTER_VENV:-/opt/concur-sync-test/scim-tester-venv}
if [ -x "$VENV/bin/scim2" ] && "$VENV/bin/scim2" --help >/dev/null 2>&1; then
  echo "scim2-tester already installed in $VENV"
  exit 0
fi
# shellcheck source=.ci/venv.sh disable=SC1091
. "$(dirname "$0")/venv.sh"
make_venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check 'scim2-tester>=0.5,<0.6' 'scim2-cli>=0.6,<0.7'
"$VENV/bin/scim2" --help >/dev/null
echo "scim2-tester installed in $VENV"
