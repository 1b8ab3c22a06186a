#!/usr/bin/env bash
# Creates (or updates the password of) the role node 2 replicates with. Node 1's postgres
# runs it once, on its first start, from /docker-entrypoint-initdb.d/; on a node 1 that is
# already initialised run it by hand:
#   docker compose -f node1.yml exec postgres bash /docker-entrypoint-initdb.d/init-replication-user.sh
# Environment: REPLICATION_USER, REPLICATION_PASSWORD (required); POSTGRES_USER and
# POSTGRES_DB as the official image sets them; libpq's PGHOST/PGPORT if not the local socket.
set -euo pipefail
: "${REPLICATION_USER:?REPLICATION_USER is required}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD is required}"
# The name and password go in as psql variables (:"name" and :'literal' quote them), never
# pasted into the SQL text.
psql -v ON_ERROR_STOP=1 -X -q \
  --username "${POSTGRES_USER:-postgres}" --dbname "${POSTGRES_DB:-postgres}" \
  -v user="${REPLICATION_USER}" -v password="${REPLICATION_PASSWORD}" <<'SQL'
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') AS missing \gset
\if :missing
  CREATE ROLE :"user" WITH REPLICATION LOGIN PASSWORD :'password';
\else
  ALTER ROLE :"user" WITH REPLICATION LOGIN PASSWORD :'password';
\endif
SQL
echo "replication role ${REPLICATION_USER} ready"
