#!/bin/sh
# The user list from the database password's secret file: PgBouncer's format
# doubles every `"` inside the quotes.
set -eu
password=$(sed 's/"/""/g' /run/secrets/postgres_password)
umask 077
printf '"service" "%s"\n' "$password" > /tmp/userlist.txt
exec "$@"
