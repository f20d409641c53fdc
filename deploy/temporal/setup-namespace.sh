#!/bin/sh
# One-shot namespace and search-attribute setup (runs in temporalio/admin-tools).
#
# Waits until the frontend answers, creates the namespace the worker uses and
# registers the custom search attributes the workflow upserts. An upsert of an
# unregistered attribute fails the workflow task forever, so the worker only
# starts once this container has exited 0 (depends_on in docker-compose.yml).
# Idempotent: an existing namespace or attribute is left as it is.
set -eu

ADDRESS="${TEMPORAL_ADDRESS:-temporal:7233}"
NAMESPACE="${TEMPORAL_NAMESPACE:-default}"
RETENTION="${NAMESPACE_RETENTION:-72h}"
MAX_ATTEMPTS="${SETUP_MAX_ATTEMPTS:-60}"

retry() {
  attempt=0
  until "$@"; do
    attempt=$((attempt + 1))
    if [ "$attempt" -ge "$MAX_ATTEMPTS" ]; then
      echo "giving up after $attempt attempts: $*" >&2
      return 1
    fi
    sleep 2
  done
}

echo "waiting for the Temporal frontend at $ADDRESS"
retry temporal operator cluster health --address "$ADDRESS"

if temporal operator namespace describe --namespace "$NAMESPACE" --address "$ADDRESS" >/dev/null 2>&1; then
  echo "namespace $NAMESPACE exists"
else
  retry temporal operator namespace create --namespace "$NAMESPACE" \
    --retention "$RETENTION" --address "$ADDRESS"
fi

# Both lists below must hold exactly contracts.constants.SEARCH_ATTRIBUTES
# (tests/deploy checks them).
register_attributes() {
  temporal operator search-attribute create --namespace "$NAMESPACE" --address "$ADDRESS" \
    --name BatchStatus --type Keyword --name BatchId --type Keyword && return 0
  # Already registered by an earlier run? Then there is nothing left to do.
  listing=$(temporal operator search-attribute list --namespace "$NAMESPACE" --address "$ADDRESS") || return 1
  for name in BatchStatus BatchId; do
    printf '%s\n' "$listing" | grep -qw "$name" || return 1
  done
  echo "search attributes already registered"
}
# The first attempts can fail while a new namespace propagates: retry.
retry register_attributes

temporal operator search-attribute list --namespace "$NAMESPACE" --address "$ADDRESS"
echo "namespace $NAMESPACE ready"
