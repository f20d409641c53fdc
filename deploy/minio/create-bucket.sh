#!/bin/sh
# One-shot bucket creation (runs in minio/mc).
#
# Creates the bucket BATCH_STORE names (s3://BUCKET/prefix), with the keys the
# worker and starter use, once MinIO answers. The workers start only after this
# container has exited 0 (depends_on in docker-compose.yml): a job whose bucket
# is missing fails at validation instead of waiting. Idempotent.
set -eu

ENDPOINT="${AWS_ENDPOINT_URL:-http://minio:9000}"
STORE="${BATCH_STORE:-s3://batches/jobs/}"
BUCKET="${STORE#s3://}"
BUCKET="${BUCKET%%/*}"
MAX_ATTEMPTS="${SETUP_MAX_ATTEMPTS:-60}"

case "$STORE" in
  s3://?*) ;;
  *) echo "BATCH_STORE=$STORE is not in an S3 API: no bucket to create here"; exit 0 ;;
esac

attempt=0
until mc alias set store "$ENDPOINT" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/dev/null; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge "$MAX_ATTEMPTS" ]; then
    echo "giving up after $attempt attempts: MinIO at $ENDPOINT" >&2
    exit 1
  fi
  sleep 2
done

mc mb --ignore-existing "store/$BUCKET"
echo "bucket $BUCKET ready at $ENDPOINT"
