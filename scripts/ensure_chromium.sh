#!/usr/bin/env bash
# Install Debian's Chromium and its WebDriver for the dashboard's browser test, when missing.
#
#   scripts/ensure_chromium.sh
#
# The test drives /usr/bin/chromium through /usr/bin/chromedriver (packages `chromium` and
# `chromium-driver`). Both present: returns at once, silently. Missing: installs them with
# apt-get, non-interactively, as root (or through sudo when it needs no password). Where that
# is not possible it says so and exits 0: the browser test then skips, naming what is missing.
set -euo pipefail

if [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]]; then
    exit 0
fi
log() { echo "ensure_chromium: $*" >&2; }

if ! command -v apt-get >/dev/null 2>&1; then
    log "no apt-get here: install Chromium and chromedriver yourself to run the browser test"
    exit 0
fi
if [[ $(id -u) -eq 0 ]]; then
    as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
else
    log "not root: run 'apt-get install chromium chromium-driver' as root for the browser test"
    exit 0
fi
log "installing chromium and chromium-driver"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
