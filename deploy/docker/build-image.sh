#!/usr/bin/env bash
# Builds the Ordo image offline from a binary that is already compiled: strips its debug
# info (the release binary keeps it: 500 MB → about 40 MB), stages it alone in a build
# context and builds deploy/docker/Dockerfile's `prebuilt` target on the local base image
# (deploy/docker/base-image.sh makes it when missing).
#
#   deploy/docker/build-image.sh [TAG] [BINARY]
#     TAG     default ordo:dev
#     BINARY  default $CARGO_TARGET_DIR/release/ordo (CARGO_TARGET_DIR default target)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tag=${1:-ordo:dev}
binary=${2:-${CARGO_TARGET_DIR:-$here/../../target}/release/ordo}
base=${ORDO_BASE_IMAGE:-ordo-base:bookworm}

[[ -x "$binary" ]] || { echo "build-image.sh: no executable at $binary (cargo build --release -p ordo --locked)" >&2; exit 1; }
ORDO_BASE_IMAGE="$base" "$here/base-image.sh"

context=$(mktemp -d /var/tmp/ordo-image.XXXXXX)
trap 'rm -rf "$context"' EXIT
objcopy --strip-debug "$binary" "$context/ordo"
chmod 0755 "$context/ordo"
echo "== docker build $tag from $binary ($(du -h "$context/ordo" | cut -f1) stripped) on $base"
# ORDO_IMAGE_REVISION labels the image (a rebuilt binary gets a new image id even when the
# tag is reused; tests use it to roll containers onto a really different image).
labels=()
[[ -n "${ORDO_IMAGE_REVISION:-}" ]] && labels=(--label "org.opencontainers.image.revision=$ORDO_IMAGE_REVISION")
docker build --quiet --target prebuilt --build-arg "RUNTIME_BASE=$base" "${labels[@]}" \
    -f "$here/Dockerfile" -t "$tag" "$context" >/dev/null
docker image ls "$tag" --format 'image {{.Repository}}:{{.Tag}} {{.Size}}'
