#!/bin/sh
# One-shot schema setup for Temporal on PostgreSQL (runs in temporalio/admin-tools).
#
# Creates the two databases the server expects (temporal and temporal_visibility),
# installs the base schema and applies every versioned migration shipped with the
# admin-tools image. Re-running it is harmless: existing databases are kept and
# update-schema only applies migrations that are missing, which is also how a
# server upgrade (new image tags) migrates the schema.
set -eu

: "${POSTGRES_SEEDS:?}" "${DB_PORT:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD:?}"
SCHEMA_DIR=/etc/temporal/schema/postgresql/v12

sql() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -p "$DB_PORT" -u "$POSTGRES_USER" "$@"
}

echo "waiting for PostgreSQL at $POSTGRES_SEEDS:$DB_PORT"
attempt=0
until nc -z "$POSTGRES_SEEDS" "$DB_PORT"; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge 60 ]; then
    echo "PostgreSQL did not answer after $attempt attempts" >&2
    exit 1
  fi
  sleep 2
done

# $1: database, $2: its schema directory in the admin-tools image.
setup_database() {
  echo "schema of database $1"
  # create fails when the database already exists; setup-schema below fails
  # loudly if it really could not be created.
  sql --db "$1" create || echo "database $1 already exists"
  sql --db "$1" setup-schema -v 0.0
  sql --db "$1" update-schema -d "$SCHEMA_DIR/$2/versioned"
}

setup_database temporal temporal
setup_database temporal_visibility visibility

echo "Temporal schema ready"
