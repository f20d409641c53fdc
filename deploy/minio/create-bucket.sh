#!/bin/sh
# One-shot set-up (runs in minio/mc): the bucket BATCH_STORE names
# (s3://BUCKET/prefix), and the user the workers and starter sign in as,
# allowed that bucket and nothing else.
#
# MinIO's admin (MINIO_ROOT_USER / MINIO_ROOT_PASSWORD) is used here alone; the
# workers get AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a user with a policy on
# one bucket. The workers start only after this container has exited 0
# (depends_on in docker-compose.yml): a job whose bucket is missing fails at
# validation instead of waiting. Idempotent.
set -eu

ENDPOINT="${AWS_ENDPOINT_URL:-http://minio:9000}"
STORE="${BATCH_STORE:-s3://batches/jobs/}"
BUCKET="${STORE#s3://}"
BUCKET="${BUCKET%%/*}"
MAX_ATTEMPTS="${SETUP_MAX_ATTEMPTS:-60}"
POLICY="batches-$BUCKET"

case "$STORE" in
  s3://?*) ;;
  *) echo "BATCH_STORE=$STORE is not in an S3 API: no bucket to create here"; exit 0 ;;
esac
# Another S3 API (AWS S3): the keys are the store's own; make the bucket if they may.
if [ "$ENDPOINT" != "http://minio:9000" ]; then
  mc alias set store "$ENDPOINT" "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" >/dev/null
  mc mb --ignore-existing "store/$BUCKET"
  echo "bucket $BUCKET ready at $ENDPOINT"
  exit 0
fi
if [ "$AWS_ACCESS_KEY_ID" = "$MINIO_ROOT_USER" ]; then
  echo "AWS_ACCESS_KEY_ID is MinIO's admin: give the workers a user of their own" >&2
  exit 1
fi

attempt=0
until mc alias set minio "$ENDPOINT" "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null; do
  attempt=$((attempt + 1))
  if [ "$attempt" -ge "$MAX_ATTEMPTS" ]; then
    echo "giving up after $attempt attempts: MinIO at $ENDPOINT" >&2
    exit 1
  fi
  sleep 2
done

mc mb --ignore-existing "minio/$BUCKET"

cat > /tmp/policy.json <<POLICY_JSON
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
     "Resource": ["arn:aws:s3:::$BUCKET"]},
    {"Effect": "Allow",
     "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::$BUCKET/*"]}
  ]
}
POLICY_JSON
mc admin policy create minio "$POLICY" /tmp/policy.json
mc admin user add minio "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY"
# Attaching again (a second `docker compose up`) is refused as already done.
mc admin policy attach minio "$POLICY" --user "$AWS_ACCESS_KEY_ID" || true
echo "bucket $BUCKET ready at $ENDPOINT for user $AWS_ACCESS_KEY_ID (policy $POLICY)"
