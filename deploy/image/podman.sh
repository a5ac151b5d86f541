# Sourced by deploy/image/*.sh: how podman runs here.
# - runc where it is installed: crun fails on cgroup v1 hosts (these CI
#   machines); PODMAN overrides the whole command.
# - open files and processes no higher than this shell's own hard limits:
#   podman's defaults for root (1048576 files) are refused where the host's
#   limit is lower.
if [ -z "${PODMAN:-}" ]; then
    PODMAN=podman
    if command -v runc >/dev/null 2>&1; then
        PODMAN="podman --runtime runc"
    fi
fi
hard_limit() { # ulimit flag, ceiling
    limit=$(ulimit -H "$1")
    if [ "$limit" = unlimited ] || [ "$limit" -gt "$2" ]; then
        limit=$2
    fi
    echo "$limit"
}
nofile=$(hard_limit -n 65536)
nproc=$(hard_limit -u 4096)
PODMAN_LIMITS="--ulimit nofile=$nofile:$nofile --ulimit nproc=$nproc:$nproc"
