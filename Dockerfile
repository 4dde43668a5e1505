# syntax=docker/dockerfile:1
# One image for `pulse worker`, `pulse api` and `pulse topics` (see docker-compose.yml).
# Build: docker build -t pulse:local .   Run: docker run --rm pulse:local pulse --help

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm

# --- build: resolve and install every dependency into a virtualenv --------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first (pinned in pyproject.toml), so a source change does not reinstall them.
COPY pyproject.toml README.md ./
RUN mkdir streams services \
    && touch streams/__init__.py services/__init__.py \
    && pip install . \
    && pip uninstall -y userpulse
COPY streams ./streams
COPY services ./services
# The live page and the report's templates are package data: the check fails the build if a
# wheel install left them out (the report reads its templates on import).
RUN pip install --no-deps . \
    && python -I -c "import services.routes.live, streams.worker.app, streams.offline.report; assert services.routes.live.PAGE.exists()"

# --- runtime: the virtualenv, a non-root user, nothing else -----------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="pulse" \
      org.opencontainers.image.description="Pulse: real-time user lifecycle engine (worker and state API)"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PULSE_DATA_DIR=/var/lib/pulse \
    PULSE_METRICS_HOST=0.0.0.0 \
    PULSE_API_HOST=0.0.0.0
RUN groupadd --system --gid 10001 pulse \
    && useradd --system --uid 10001 --gid pulse --home-dir /var/lib/pulse --shell /usr/sbin/nologin pulse \
    && mkdir -p /var/lib/pulse \
    && chown pulse:pulse /var/lib/pulse
COPY --from=build /opt/venv /opt/venv
WORKDIR /var/lib/pulse
USER 10001:10001
# The worker's table store (rocksdb://) lives in /var/lib/pulse: mount one volume per worker
# there (docker-compose.yml does). No VOLUME here, so the API and one-shot jobs get none.
# 9464: worker metrics; 8000: state API.
EXPOSE 9464 8000
# The worker's metrics endpoint by default; the API's service overrides it (docker-compose.yml).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ.get('PULSE_HEALTHCHECK_URL', 'http://127.0.0.1:9464/metrics'), timeout=4)"]
CMD ["pulse", "worker"]
