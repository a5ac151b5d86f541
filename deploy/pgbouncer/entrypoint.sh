#!/bin/sh
# The user list from the database password's secret file (PgBouncer's format
# doubles every `"` inside the quotes), and the database it pools from
# DATABASE_HOST, DATABASE_PORT, DATABASE_NAME and DATABASE_USER: compose's
# `db` unless compose.existing-db.yaml names another.
set -eu
user=${DATABASE_USER:-service}
password=$(sed 's/"/""/g' /run/secrets/postgres_password)
umask 077
printf '"%s" "%s"\n' "$(printf '%s' "$user" | sed 's/"/""/g')" "$password" > /tmp/userlist.txt
sed "s|^service = .*|service = host=${DATABASE_HOST:-db} port=${DATABASE_PORT:-5432} dbname=${DATABASE_NAME:-service}|" \
    /etc/pgbouncer/pgbouncer.ini > /tmp/pgbouncer.ini
exec "$@"
