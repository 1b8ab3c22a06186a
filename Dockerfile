# One image for every Sendfleet process; the command picks the role (ops/entrypoint.sh):
#   docker run IMAGE api | worker | control | beat | migrate
# Python matches the development virtualenv (3.11.7); dependencies are requirements.txt's pins.

FROM python:3.11.7-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --no-cache-dir -r /tmp/requirements.txt

FROM python:3.11.7-slim-bookworm AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    API_BIND=0.0.0.0:8000
# pg_dump / pg_restore of the server's major version (15) for ops/backup.sh and restore.sh.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15=15.* \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 sendfleet \
 && useradd --system --uid 10001 --gid sendfleet --home-dir /app --shell /usr/sbin/nologin sendfleet \
 && install -d -o sendfleet -g sendfleet /var/lib/sendfleet
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root pyproject.toml gunicorn.conf.py ./
COPY --chown=root:root app ./app
COPY --chown=root:root worker ./worker
COPY --chown=root:root rotator ./rotator
COPY --chown=root:root ops/entrypoint.sh ./ops/entrypoint.sh
COPY --chown=root:root ops/backup.sh ops/restore.sh ops/backup_settings.sh ops/backup_store.py ./ops/
USER 10001:10001
EXPOSE 8000
# The api's check; the worker services override it with `health worker` (docker-compose.yml).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
  CMD ["/app/ops/entrypoint.sh", "health", "api"]
ENTRYPOINT ["/app/ops/entrypoint.sh"]
CMD ["api"]
