#!/bin/bash
# The baseline basebench is measured against: what a person would script by hand.
# For each cell: a no-cache BuildKit build, `docker save` to a file, a trivy scan of that
# file, then REPEAT starts timed to the first HTTP 200 with curl.
# Usage: shell_loop.sh APP_DIR REGISTRY GO_VERSION REPEAT TRIVY_CACHE BASE...
set -euo pipefail
app=$1 registry=$2 go=$3 repeat=$4 trivy_cache=$5
shift 5
docker=/usr/bin/docker  # docker.io's CLI: BuildKit built in (as tasks/stages/build.py)
builder="$registry/library/golang:$go-bookworm"
declare -A refs=(
    [bookworm]="$registry/library/debian:bookworm"
    [bookworm-slim]="$registry/library/debian:bookworm-slim"
    [distroless-static]="$registry/distroless/static-debian12:latest"
    [distroless-base]="$registry/distroless/base-debian12:latest"
)
trivy=${TRIVY:-$(dirname "$(readlink -f "$0")")/../.venv/bin/trivy}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for base in "$@"; do
    tag="shell-loop/$base:$go"
    if [ "$base" = single-stage ]; then
        DOCKER_BUILDKIT=1 $docker build -q --no-cache --network none -f "$app/Dockerfile.single" \
            --build-arg BUILDER="$builder" -t "$tag" "$app" >/dev/null
    else
        cgo=1; [ "$base" = distroless-static ] && cgo=0
        DOCKER_BUILDKIT=1 $docker build -q --no-cache --network none -f "$app/Dockerfile.multi" \
            --build-arg BUILDER="$builder" --build-arg BASE="${refs[$base]}" \
            --build-arg CGO_ENABLED=$cgo --build-arg RUN_ID=shell-loop -t "$tag" "$app" >/dev/null
    fi
    $docker save -o "$scratch/image.tar" "$tag"
    "$trivy" image --quiet --format json --list-all-pkgs --scanners vuln --skip-db-update \
        --skip-version-check --disable-telemetry --offline-scan --cache-backend memory \
        --cache-dir "$trivy_cache" --input "$scratch/image.tar" >/dev/null
    rm -f "$scratch/image.tar"
    for _ in $(seq "$repeat"); do
        id=$($docker run -d -p 127.0.0.1::8080 "$tag")
        port=$($docker port "$id" 8080/tcp | head -1 | cut -d: -f2)
        until curl -sf "http://127.0.0.1:$port/" >/dev/null; do sleep 0.005; done
        $docker rm -f "$id" >/dev/null
    done
    $docker rmi -f "$tag" >/dev/null
done
$docker image prune -f --filter label=org.basebench.run=shell-loop >/dev/null
