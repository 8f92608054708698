# syntax=docker/dockerfile:1
# Build: dependencies into a virtual environment. Run: slim, non-root, the same start command
# the tests use (python -m app serve), migrations applied at start.
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY app ./app
RUN /opt/venv/bin/pip install . && /opt/venv/bin/pip uninstall -y ketamine-fhir

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    DATABASE_URL=sqlite:////data/fhir.sqlite3 FHIR_LOG_FORMAT=json
RUN useradd --system --uid 10001 --home-dir /srv fhir && mkdir /data && chown fhir /data
WORKDIR /srv
COPY --from=build /opt/venv /opt/venv
COPY --chown=fhir app ./app
COPY --chown=fhir migrations ./migrations
USER 10001
EXPOSE 8000
VOLUME ["/data"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
# Listening on 0.0.0.0 needs authorization configured (FHIR_AUTH_JWKS, FHIR_AUTH_ISSUER,
# FHIR_AUTH_AUDIENCE; see docker-compose.yml); without it the server refuses to start.
# Worker processes: FHIR_WORKERS (default 1).
CMD ["python", "-m", "app", "serve", "--host", "0.0.0.0", "--port", "8000"]
