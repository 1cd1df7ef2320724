#!/usr/bin/env bash
# Installs what starfish-chatops needs on a fresh Debian machine: Debian's python3 packages for
# the container scripts (run with /usr/bin/python3), then the npm dependencies from the lockfile.
set -euo pipefail
cd "$(dirname "$0")/.."

PY_PACKAGES="python3-numpy python3-scipy python3-skimage python3-tifffile python3-matplotlib python3-pil python3-pytest"
missing=""
for p in $PY_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "Installing Debian packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

npm ci --no-fund --no-audit
