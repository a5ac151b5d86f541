#!/usr/bin/env bash
# The image, built from the Dockerfile as it is, the way CI builds it:
#
#   deploy/image/build.sh [TAG]          (default: service:latest)
#
# - the Dockerfile's FROM images first (deploy/image/base.sh: pulled, or a
#   stand-in from Debian's packages where no registry answers);
# - Docker's image format: OCI's has no HEALTHCHECK, and podman drops it;
# - the builder's trust store (BUILD_CA_BUNDLE, else the system's) mounted
#   over the image's for the build steps only, so pip and uv reach PyPI
#   behind a TLS-intercepting proxy; a build-time volume is never committed,
#   so nothing of the builder's reaches the image.
# Docker users: `docker build .`, adding the proxy's CA as their docs say.
set -euo pipefail
cd "$(dirname "$0")/../.."
. deploy/image/podman.sh
tag=${1:-service:latest}

deploy/image/base.sh Dockerfile

bundle=${BUILD_CA_BUNDLE:-}
if [ -z "$bundle" ]; then
    for candidate in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt; do
        if [ -f "$candidate" ]; then
            bundle=$candidate
            break
        fi
    done
fi
set --
if [ -n "$bundle" ]; then
    # Debian's path, the official Python images' base.
    set -- -v "$bundle:/etc/ssl/certs/ca-certificates.crt:ro"
fi

# shellcheck disable=SC2086 (PODMAN and PODMAN_LIMITS are word lists)
$PODMAN build --format docker --network host $PODMAN_LIMITS "$@" --tag "$tag" .
