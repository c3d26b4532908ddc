#!/usr/bin/env bash
# Validators for the deployment files (used by .ci/check-deploy.sh): kubernetes-validate and
# yamllint from PyPI; systemd-analyze and shellcheck from Debian. Idempotent, non-interactive.
set -euo pipefail

apt_pkgs=()
command -v systemd-analyze >/dev/null 2>&1 || apt_pkgs+=(systemd)
command -v shellcheck >/dev/null 2>&1 || apt_pkgs+=(shellcheck)
python3 -m pip --version >/dev/null 2>&1 || apt_pkgs+=(python3-pip)
if [ "${#apt_pkgs[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${apt_pkgs[@]}" >/dev/null
fi

pip_pkgs=()
python3 -m kubernetes_validate --version >/dev/null 2>&1 || pip_pkgs+=(kubernetes-validate)
python3 -m yamllint --version >/dev/null 2>&1 || pip_pkgs+=(yamllint)
if [ "${#pip_pkgs[@]}" -gt 0 ]; then
  # CI machines are throwaway: a Debian system Python may be used as is.
  PIP_ROOT_USER_ACTION=ignore PIP_BREAK_SYSTEM_PACKAGES=1 \
    python3 -m pip install --quiet --disable-pip-version-check "${pip_pkgs[@]}"
fi

echo "kubernetes-validate $(python3 -m kubernetes_validate --version)"
python3 -m yamllint --version
systemd-analyze --version | head -n 1
shellcheck --version | sed -n 2p
