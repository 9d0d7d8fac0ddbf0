#!/usr/bin/env bash
# Installs the system packages Isthmus needs (as root), or says exactly what to install.
set -euo pipefail
need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v sysctl >/dev/null 2>&1 || need+=(procps)
command -v tini >/dev/null 2>&1 || need+=(tini)
command -v curl >/dev/null 2>&1 || need+=(curl)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 || {
        apt-get update -qq >/dev/null 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    }
else
    echo "Isthmus needs these system packages: ${need[*]}" >&2
    echo "install them, e.g.: sudo apt-get install -y ${need[*]}" >&2
    exit 1
fi
