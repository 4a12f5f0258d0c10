#!/usr/bin/env bash
# Installs the Debian packages the test-suite needs, only where they are missing. Idempotent and quiet when all is there.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)                    # the browser tests (connection form, sandbox page)
{ [ -x /usr/sbin/mariadbd ] || command -v mariadbd; } >/dev/null 2>&1 || need+=(mariadb-server)  # MySQL-family sync state
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "Installing Debian packages for the tests: ${need[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
