#!/usr/bin/env bash
# Builds the offline runtime base image `ordo-base:bookworm`: a minimal Debian bookworm
# root (debootstrap --variant=minbase) imported into the local Docker engine, for machines
# that cannot pull `debian:bookworm-slim` from a registry. Needs root, debootstrap and a
# reachable Debian mirror (ORDO_DEBIAN_MIRROR, default deb.debian.org).
#
#   deploy/docker/base-image.sh            # builds it unless the tag already exists
#   deploy/docker/base-image.sh --force    # rebuilds it
set -euo pipefail

tag=${ORDO_BASE_IMAGE:-ordo-base:bookworm}
mirror=${ORDO_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [[ "${1:-}" != "--force" ]] && docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base image $tag already exists (--force rebuilds it)"
    exit 0
fi
for tool in debootstrap docker; do
    command -v "$tool" >/dev/null || { echo "base-image.sh: $tool is not installed (Debian: apt-get install -y $tool)" >&2; exit 1; }
done

root=$(mktemp -d /var/tmp/ordo-base.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "== debootstrap --variant=minbase bookworm into $root"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || {
    tail -20 "$root.log" >&2
    echo "base-image.sh: debootstrap failed (full log: $root.log)" >&2
    exit 1
}
rm -f "$root.log"
# What a runtime never uses: package lists and caches, documentation, manuals, locales
# other than C. Keeps the image small; apt still works after `apt-get update`.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/* "$root"/var/cache/debconf/*-old \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/var/log/*.log "$root"/tmp/*
find "$root"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name 'locale.alias' -exec rm -rf {} +

echo "== docker import as $tag"
tar -C "$root" --numeric-owner -c . \
    | docker import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' - "$tag" >/dev/null
docker image ls "$tag" --format 'base image {{.Repository}}:{{.Tag}} {{.Size}}'
