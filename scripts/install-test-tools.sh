#!/usr/bin/env bash
# Installs what the test suite runs for real when it is missing: redis-server,
# nginx and promtool (Debian's prometheus package), as root with apt-get (or
# through sudo). Debian's packages start their own services; the tests start
# their own on free ports, so those are stopped again.
set -euo pipefail

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
if [ "${#need[@]}" -gt 0 ]; then
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then as_root=(sudo); else
      echo "install-test-tools: missing ${need[*]}; run as root (apt-get install -y ${need[*]})" >&2
      exit 1
    fi
  fi
  echo "install-test-tools: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}"
  for service in redis-server nginx prometheus; do
    ("${as_root[@]}" service "$service" stop || true) >/dev/null 2>&1
  done
fi
if ! command -v kubectl >/dev/null 2>&1; then
  echo "install-test-tools: note: kubectl is not on PATH; the kustomize test will fail (install kubectl)" >&2
fi
