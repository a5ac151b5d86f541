#!/usr/bin/env bash
# The Dockerfile's FROM images, made present in podman's store, once.
#
#   deploy/image/base.sh [Dockerfile | IMAGE ...]     (default: ./Dockerfile)
#
# For each distinct FROM image (or IMAGE named): nothing when the tag is already there; else a
# pull where a registry answers; else a stand-in made from Debian's packages
# (debootstrap of the same release) and tagged with the FROM name, so the
# Dockerfile builds unchanged on a machine that reaches Debian's archive but
# no container registry. Stand-ins exist for
#   python:X.Y[.Z]-slim-RELEASE   Debian RELEASE's python3 (which must be X.Y)
#                                 and pip, where the official image has them
#   debian:RELEASE-slim           Debian RELEASE, minimal
# A stand-in carries the label io.service.stand-in=deploy/image/base.sh.
# DEBIAN_MIRROR picks the archive (debootstrap's default otherwise).
# Needs root, podman and debootstrap.
set -euo pipefail
cd "$(dirname "$0")/../.."

. deploy/image/podman.sh
[ $# -gt 0 ] || set -- Dockerfile
STAND_IN_LABEL=io.service.stand-in=deploy/image/base.sh

say() { echo "base.sh: $*" >&2; }

# docker.io/library/NAME:TAG for a short NAME:TAG, as docker and podman
# resolve a FROM without a registry.
qualified() {
    case $1 in
    */*/*) echo "$1" ;;
    */*) echo "docker.io/$1" ;;
    *) echo "docker.io/library/$1" ;;
    esac
}

from_images() {
    # FROM [--platform=...] IMAGE [AS NAME]; a FROM naming an earlier stage
    # is not an image.
    awk 'toupper($1) == "FROM" {
            image = ""
            for (i = 2; i <= NF; i++) if ($i !~ /^--/) { image = $i; break }
            if (!(image in stages)) print image
            for (i = 2; i < NF; i++) if (toupper($i) == "AS") stages[$(i + 1)] = 1
        }' "$@" | sort -u
}

debootstrap_rootfs() { # release rootfs packages
    # minbase: apt, dpkg and the essential set, as the official slim images.
    # shellcheck disable=SC2086 (DEBIAN_MIRROR is optional)
    debootstrap --variant=minbase --include="$3" "$1" "$2" ${DEBIAN_MIRROR:-} >"$2.log" 2>&1 || {
        tail -n 20 "$2.log" >&2
        say "debootstrap $1 failed (log above)"
        return 1
    }
    rm -f "$2.log"
    # What debootstrap copied from this machine stays here: the container
    # engine provides its own resolv.conf, hosts and hostname.
    rm -f "$2/etc/resolv.conf" "$2/etc/hosts" "$2/etc/hostname"
    rm -rf "$2"/var/lib/apt/lists/* "$2"/var/cache/apt/* "$2"/var/log/* "$2"/tmp/* \
        "$2"/usr/share/doc "$2"/usr/share/man "$2"/usr/share/info
}

import_rootfs() { # rootfs image description [--change ...]
    rootfs=$1 image=$2 description=$3
    shift 3
    tar --numeric-owner -C "$rootfs" -c . | $PODMAN import --quiet \
        --change "LABEL $STAND_IN_LABEL" \
        --change "LABEL org.opencontainers.image.description=\"$description\"" \
        "$@" - "$image" >/dev/null
}

stand_in() { # image (qualified)
    local image=$1 short=${1##*/} work
    work=$(mktemp -d /var/tmp/base-image.XXXXXX)
    trap 'rm -rf "$work"' EXIT
    case $short in
    python:*-slim-*)
        tag=${short#python:}
        python=$(echo "$tag" | sed -n 's/^\([0-9]*\.[0-9]*\)\(\.[0-9]*\)\{0,1\}-slim-.*$/\1/p')
        release=${tag##*-slim-}
        [ -n "$python" ] || { say "cannot read a Python version in $short"; return 1; }
        say "$short: debootstrap $release with python$python (Debian's packages)"
        debootstrap_rootfs "$release" "$work/rootfs" \
            python3,python3-pip,python3-venv,ca-certificates,netbase,tzdata
        found=$(chroot "$work/rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
        if [ "$found" != "$python" ]; then
            say "$short: Debian $release ships Python $found, not $python: no stand-in"
            return 1
        fi
        full=$(chroot "$work/rootfs" python3 -c 'import platform; print(platform.python_version())')
        # The official image's Python is its own, installed under /usr/local
        # and free to pip install into; Debian marks its Python externally
        # managed (PEP 668), which the official image does not.
        rm -f "$work/rootfs/usr/lib/python$python/EXTERNALLY-MANAGED"
        for name in python python3 "python$python"; do
            ln -sf "/usr/bin/python$python" "$work/rootfs/usr/local/bin/$name"
        done
        for name in pip pip3 "pip$python"; do
            ln -sf /usr/bin/pip3 "$work/rootfs/usr/local/bin/$name"
        done
        import_rootfs "$work/rootfs" "$image" \
            "Stand-in for $short: Debian $release, its python3 $full and pip" \
            --change "ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin" \
            --change "ENV LANG=C.UTF-8" \
            --change "ENV PYTHON_VERSION=$full" \
            --change 'CMD ["python3"]'
        ;;
    debian:*-slim)
        release=${short#debian:}
        release=${release%-slim}
        say "$short: debootstrap $release"
        debootstrap_rootfs "$release" "$work/rootfs" ca-certificates
        import_rootfs "$work/rootfs" "$image" "Stand-in for $short: Debian $release" \
            --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
            --change 'CMD ["bash"]'
        ;;
    *)
        say "$short: no registry answered and no stand-in is made for it"
        return 1
        ;;
    esac
    rm -rf "$work"
    trap - EXIT
    say "$short: stand-in tagged $image"
}

ensure() { # image (qualified): there already, pulled, or a stand-in
    if $PODMAN image exists "$1"; then
        return
    fi
    if $PODMAN pull --quiet "$1" >/dev/null 2>&1; then
        say "$1: pulled"
        return
    fi
    stand_in "$1"
}

images=()
dockerfiles=()
for argument in "$@"; do
    if [ -f "$argument" ]; then
        dockerfiles+=("$argument")
    else
        images+=("$argument")
    fi
done
if [ ${#dockerfiles[@]} -gt 0 ]; then
    while read -r image; do
        images+=("$image")
    done < <(from_images "${dockerfiles[@]}")
fi

# One build of a stand-in at a time on this machine (parallel test runs).
exec 9>/var/tmp/service-base-image.lock
flock 9
for image in "${images[@]}"; do
    ensure "$(qualified "$image")"
done
