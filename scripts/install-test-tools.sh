#!/usr/bin/env bash
# Installs what the test suite runs for real when it is missing, with Debian's
# packages, as root (or through sudo):
#   redis-server (single, Cluster and Sentinel), nginx, promtool (prometheus),
#   kubectl (kubernetes-client; the kustomize test needs kubectl >= 1.21),
#   python3-grpcio for Debian's /usr/bin/python3 (the independent gRPC client).
# Debian's packages start their own services; the tests start their own on
# free loopback ports, so those are stopped again.
set -euo pipefail

has() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

need=()
has redis-server || need+=(redis-server)
has redis-cli || need+=(redis-tools)
has nginx || need+=(nginx)
has promtool || need+=(prometheus)
has kubectl || need+=(kubernetes-client)
if [ ! -x /usr/bin/python3 ] || ! /usr/bin/python3 -c 'import grpc' >/dev/null 2>&1; then
  need+=(python3 python3-grpcio)
fi

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
  "${as_root[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  for service in redis-server nginx prometheus prometheus-node-exporter; do
    ("${as_root[@]}" service "$service" stop || true) >/dev/null 2>&1
  done
fi

# kubectl renders deploy/k8s with its built-in kustomize; the manifests use
# kustomize v4 fields (labels, per-generator options), which kubectl 1.21+ has.
minor=$(kubectl version --client -o json 2>/dev/null | sed -n 's/.*"minor": *"\([0-9]*\).*/\1/p' | head -1)
if [ -n "$minor" ] && [ "$minor" -lt 21 ]; then
  echo "install-test-tools: warning: kubectl 1.$minor is older than 1.21; the kustomize test needs a newer one" >&2
fi
