#!/usr/bin/env bash
# Browser tests drive Debian's Chromium (Playwright cannot download a browser here).
# Install it when missing. Exit 0 even when it cannot be installed: the browser tests
# then fail under CI=true and are reported as "not run" otherwise (tests/e2e/conftest.py).
set -uo pipefail

if [ -x /usr/bin/chromium ]; then
  /usr/bin/chromium --version 2>/dev/null || true
  exit 0
fi
echo "Chromium is missing: installing Debian's chromium package"
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
    || echo "WARNING: could not install chromium; browser tests cannot run"
else
  echo "WARNING: not root or no apt-get; install chromium yourself to run browser tests"
fi
exit 0
