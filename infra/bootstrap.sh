#!/bin/sh
# Debian packages basebench needs before its virtualenv exists. The rest (docker.io,
# docker-registry, mmdebstrap) is installed by `basebench infra up` when missing.
# With --test, also what only the tests need (Chromium renders the HTML report).
set -eu
need=""
command -v python3 >/dev/null 2>&1 || need="$need python3"
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need="$need python3-venv"
command -v curl >/dev/null 2>&1 || need="$need curl"
command -v openssl >/dev/null 2>&1 || need="$need openssl"
command -v ip >/dev/null 2>&1 || need="$need iproute2"
if [ "${1:-}" = "--test" ]; then
    command -v chromium >/dev/null 2>&1 || need="$need chromium"
fi
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: missing Debian packages:$need; install them (as root: apt-get install$need)" >&2
    exit 2
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need
