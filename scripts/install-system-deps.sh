#!/usr/bin/env bash
# Installs the system packages the test suite needs: the PostgreSQL server and psql client, and
# Chromium for the browser tests.
# Safe to run twice; does nothing when everything is there. Needs root only to install.
set -euo pipefail

missing=()
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: ${missing[*]} (run as root, or install them)" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
