#!/bin/sh
# Runs once, when the data volume is first made: the service gets a role of its own that
# owns the orders database (so it can run its migrations) and nothing more; the
# superuser's password stays with the database container.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v password="$ORDER_SERVICE_DB_PASSWORD" <<'SQL'
CREATE ROLE order_service LOGIN PASSWORD :'password' NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION;
ALTER DATABASE orders OWNER TO order_service;
REVOKE ALL ON DATABASE orders FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE orders TO order_service;
SQL
