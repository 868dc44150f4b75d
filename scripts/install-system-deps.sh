#!/usr/bin/env bash
# Installs the system packages the test suite needs: the PostgreSQL server and psql client,
# Chromium for the browser tests, and Docker Engine (dockerd, containerd, runc, the docker CLI) plus
# the static busybox for the container tests (tests/docker_engine.py starts a private dockerd and
# builds its images from host files; nothing is pulled).
# Safe to run twice; does nothing when everything is there. Needs root only to install.
set -euo pipefail

missing=()
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
fi
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-venv)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if ! command -v dockerd >/dev/null 2>&1 && [ ! -x /usr/sbin/dockerd ]; then
  missing+=(docker.io)
fi
# The images need the static busybox; Debian's `busybox` package has a dynamic /bin/busybox.
dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' \
  || missing+=(busybox-static)

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
