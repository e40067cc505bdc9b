#!/bin/sh
# Debian packages basebench needs before its virtualenv exists: the `bootstrap` rows of
# tasks/programs.tsv. With --test, also the `test` rows (what only the tests run). The
# `setup` and `run` rows are installed by `basebench infra up` (infra/install.py).
# With --dry-run, print the packages it would install and stop.
set -eu
table="$(dirname "$0")/../tasks/programs.tsv"
kinds=" bootstrap "
dry_run=""
for arg in "$@"; do
    case "$arg" in
        --test) kinds=" bootstrap test " ;;
        --dry-run) dry_run=1 ;;
        *) echo "usage: bootstrap.sh [--test] [--dry-run]" >&2; exit 2 ;;
    esac
done
# As tasks/programs.py looks; BOOTSTRAP_SBIN="" (the tests) searches PATH alone.
PATH="$PATH:${BOOTSTRAP_SBIN-/usr/local/sbin:/usr/sbin:/sbin}"

present() {
    # python3 counts only when it can make the virtualenv (Debian ships venv apart).
    if [ "$1" = python3 ]; then
        python3 -c 'import ensurepip, venv' >/dev/null 2>&1
    else
        command -v "$1" >/dev/null 2>&1
    fi
}

need=""
lines=""
# One "program package why" line per Debian-packaged row of the wanted kinds.
rows=$(awk -F'\t' -v kinds="$kinds" \
    '!/^#/ && NF >= 4 && index(kinds, " " $3 " ") && $2 !~ /^pip:/ { print $1 "\t" $2 "\t" $4 }' \
    "$table")
tab=$(printf '\t')
while IFS="$tab" read -r program package why; do
    [ -n "$program" ] && ! present "$program" || continue
    case " $need " in
        *" $package "*) ;;
        *) need="$need $package"
           lines="$lines$package for $program: $why
" ;;
    esac
done <<EOF
$rows
EOF

[ -z "$need" ] && exit 0
if [ -n "$dry_run" ]; then
    printf '%s' "$lines" | sed 's/^/bootstrap: would install Debian package /'
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "bootstrap: missing Debian packages:$need; install them (as root: apt-get install$need)" >&2
    exit 2
fi
printf '%s' "$lines" | sed 's/^/bootstrap: installing Debian package /'
log=$(mktemp)
# apt's own output goes to a log: on success the lines above say it all, on failure its last line.
if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends -o DPkg::Lock::Timeout=300 $need; } >"$log" 2>&1; then
    echo "bootstrap: apt-get install$need failed: $(tail -n 1 "$log") (log: $log)" >&2
    exit 1
fi
rm -f "$log"
