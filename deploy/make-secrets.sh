#!/bin/sh
# The secret files compose.yaml reads (./secrets/NAME), made once with random
# values; an existing file is kept.
# Compose bind-mounts each file into the containers with its own owner and
# mode, and the containers read them as their own users (the api as uid
# 10001, PgBouncer as postgres): a file only its owner may read is unreadable
# there. So the files are world-readable and the folder is not: on this host
# only its owner gets past secrets/, in a container only the file is mounted.
set -eu
cd "$(dirname "$0")/.."
mkdir -p secrets
chmod 700 secrets
for name in postgres_password jwt_secret_key secret_key metrics_token mfa_encryption_key admin_password redis_password; do
    if [ ! -s "secrets/$name" ]; then
        (umask 077 && python3 -c 'import secrets; print(secrets.token_urlsafe(48))' > "secrets/$name")
        echo "made secrets/$name"
    fi
    chmod 644 "secrets/$name"
done
