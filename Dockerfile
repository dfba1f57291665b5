# florence-tagger gateway: S3 -> image preparation -> vLLM (Qwen2.5-VL) -> optional gpt-oss.
#
#   docker build -t florence-tagger .
#   docker run -p 8000:8000 -e AWS_REGION=us-east-1 \
#     -e VLM_BASE_URL=http://<vlm-host>:8001/v1 florence-tagger
#
# The image holds no GPU code: the models run in vLLM's own images (see docker-compose.yml).
# Configuration is only through the environment variables of gateway/settings.py; no config file is baked in.

# Both stages must use the same interpreter, because the virtualenv built in the first is copied into the
# second. The argument exists so that an offline CI can build from a locally made base image.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
# Metadata first, sources second: editing gateway/ does not change this layer's inputs.
COPY pyproject.toml README.md ./
COPY gateway ./gateway
# Every dependency ships manylinux wheels, so no compiler is needed even here; if one ever needs building,
# its toolchain belongs in this stage only.
RUN /opt/venv/bin/pip install . \
    && /opt/venv/bin/pip uninstall --yes pip \
    && find /opt/venv -name '__pycache__' -type d -prune -exec rm -rf {} +

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="florence-tagger" \
      org.opencontainers.image.description="Image-captioning gateway in front of vLLM servers"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed numeric uid/gid so that Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app
COPY --from=builder /opt/venv /opt/venv
# The SQLite catalogue's home (DATA_DIR): owned by the app so a fresh named volume mounted here is writable.
RUN mkdir /data && chown 10001:10001 /data
ENV DATA_DIR=/data
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
# /livez answers while the process runs; /health also needs the VLM and would restart a healthy gateway
# during a VLM outage. The slim image has no curl, so the probe is Python's own urllib (non-2xx raises).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/livez' % os.environ.get('PORT', '8000'), timeout=4)"]
CMD ["florence-tagger", "serve"]
