#!/usr/bin/env bash
# Installs the SCIM 2.0 test peer (scim2-server from PyPI) into a venv at a fixed path; the SCIM
# tests and bench/scim-50k.sh look for it there (or at $CONCUR_SYNC_SCIM_PYTHON).
# Idempotent: a second run only checks that the server imports.
set -euo pipefail
VENV=${CONCUR_SYNC_SCIM_VENV:-/opt/concur-sync-test/venv}
if [ -x "$VENV/bin/python3" ] && "$VENV/bin/python3" -c 'import scim2_server.testserver.cli' 2>/dev/null; then
  echo "scim2-server already installed in $VENV"
  exit 0
fi
# shellcheck source=.ci/venv.sh disable=SC1091
. "$(dirname "$0")/venv.sh"
make_venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check 'scim2-server>=0.8,<0.9'
"$VENV/bin/python3" -c 'import scim2_server.testserver.cli'
echo "scim2-server installed in $VENV"
