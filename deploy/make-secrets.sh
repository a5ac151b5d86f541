#!/bin/sh
# The secret files compose.yaml reads (./secrets/NAME), made once with random
# values; an existing file is kept. Readable by the owner only.
set -eu
cd "$(dirname "$0")/.."
mkdir -p secrets
chmod 700 secrets
umask 077
for name in postgres_password jwt_secret_key secret_key metrics_token admin_password; do
    if [ ! -s "secrets/$name" ]; then
        python3 -c 'import secrets; print(secrets.token_urlsafe(48))' > "secrets/$name"
        echo "made secrets/$name"
    fi
done
