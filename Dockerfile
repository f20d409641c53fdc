# syntax=docker/dockerfile:1
# One image for the worker (default command), the starter CLI and the gateway
# emulator; docker-compose.yml picks the command per service.
#
# The base image is pinned to an exact Python patch release and Debian release;
# bump it deliberately (and pin by digest, FROM python:...@sha256:..., where the
# registry is reachable from the build machine).
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Unprivileged user with a fixed uid/gid, so volume ownership is predictable.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /app \
       --shell /usr/sbin/nologin app

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install --no-cache-dir --requirement requirements.txt

# Source, owned by root and read-only for the app user (.dockerignore keeps out
# virtualenvs, local state, tests and secrets).
COPY . .
# Bytecode for our own modules: PYTHONDONTWRITEBYTECODE keeps Python from writing it at
# run time, and without it the workflow sandbox compiles the workflow's modules from
# source for every job it starts (docs/benchmarks.md, "bytecode").
RUN python -m compileall -q .

# The emulator's state (a named volume in docker-compose.yml). A named volume
# mounted here starts with this directory's owner, so the app user can write to it.
RUN mkdir -p /data && chown app:app /data

USER app:app

# 8000: emulator (when run with `python -m emulator`); 9464: worker metrics.
ENV WORKER_METRICS_PORT=9464
EXPOSE 8000 9464

CMD ["python", "worker.py"]
