#!/usr/bin/env bash
# Installs Debian's chromium and chromium-driver for the status page test
# (tests/it/status_page.rs), which loads the admin endpoint's page in a headless browser and
# checks the rendered DOM. Non-interactive and idempotent.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  echo "chromium and chromium-driver already installed"
  chromium --version 2>/dev/null || true
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  chromium chromium-driver fonts-dejavu-core >/dev/null
chromium --version 2>/dev/null || true
