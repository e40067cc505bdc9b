#!/bin/sh
# Debian packages basebench needs before its virtualenv exists. The rest (docker.io,
# docker-registry, mmdebstrap) is installed by `basebench infra up` when missing.
set -eu
need=""
command -v python3 >/dev/null 2>&1 || need="$need python3"
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need="$need python3-venv"
command -v curl >/dev/null 2>&1 || need="$need curl"
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: missing Debian packages:$need; install them (as root: apt-get install$need)" >&2
    exit 2
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
