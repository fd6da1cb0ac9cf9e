# syntax=docker/dockerfile:1
# migrator's container image. It runs `migrator upgrade` (ENTRYPOINT migrator, CMD upgrade)
# against the plugin trees in /app/plugin_migrations, the path MIGRATOR_MIGRATIONS_DIR names.
#
#   docker build -t migrator:0.1.0 .
#   docker run --rm -e MIGRATOR_DATABASE_URL=postgresql://app@db/platform migrator:0.1.0
#
# A platform ships its own trees on top, and indexes them (the root filesystem is read-only at
# run time; see "The revision index" in README.md):
#     FROM migrator:0.1.0
#     USER root
#     COPY plugin_migrations/ /app/plugin_migrations/
#     RUN python -m compileall -q /app/plugin_migrations && migrator index
#     USER 10001:10001
# (or installs plugin packages that declare `migrator.plugins` entry points, then the same RUN).
# tests/test_packaging.py lints this file with hadolint and runs the build stage's RUN steps
# in a fresh virtual environment; keep them plain shell.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- build: a virtual environment with the pinned dependencies, then migrator ----------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY requirements.lock ./
# The venv gets no pip of its own: the build image's pip installs into it (--python).
RUN python -m venv --without-pip /opt/migrator \
    && python -m pip --python /opt/migrator/bin/python install --no-deps \
        --requirement requirements.lock
COPY pyproject.toml README.md ./
COPY migrator/ migrator/
RUN python -m pip --python /opt/migrator/bin/python install --no-deps . \
    && python -m pip --python /opt/migrator/bin/python check

# -- runtime: the venv, the trees, a non-root user; no pip, no compiler --------------------
FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="migrator" \
      org.opencontainers.image.description="Per-plugin Alembic migrations for PostgreSQL" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN python -m pip uninstall --yes --no-cache-dir pip setuptools wheel \
    && groupadd --system --gid 10001 migrator \
    && useradd --system --uid 10001 --gid migrator --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin migrator
COPY --from=build /opt/migrator /opt/migrator
WORKDIR /app
COPY plugin_migrations/ /app/plugin_migrations/
# Bytecode and the revision index built now: the root filesystem is read-only at run time.
# The index (.migrator-index.json) spares each pod start parsing every revision file.
RUN python -m compileall -q /app/plugin_migrations \
    && /opt/migrator/bin/migrator index --migrations-dir /app/plugin_migrations
ENV PATH=/opt/migrator/bin:$PATH \
    MIGRATOR_MIGRATIONS_DIR=/app/plugin_migrations \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Numeric, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
ENTRYPOINT ["migrator"]
CMD ["upgrade"]
