#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (Playwright's own browser download cannot work
# offline). Install it once if it is missing.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "Chromium is missing: run 'sudo apt-get install -y chromium' (the browser tests need /usr/bin/chromium)." >&2
  exit 1
fi
echo "Installing Chromium for the browser tests (apt-get)..."
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
