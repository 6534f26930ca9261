# syntax=docker/dockerfile:1
# dragonfly-hybrid scanning node.
#
#   builder: Python + stable Rust (rustup) + maturin; builds the release wheel and smoke-tests it with
#            scripts/build-wheel.sh, the script CI runs (scripts/test.sh), so CI exercises these steps.
#   runtime: Python slim + the wheel, as a non-root user, running `dragonfly-hybrid node`.
#
#   docker build -t dragonfly-hybrid .
#   docker run --rm -e DRAGONFLY_CLIENT_ID -e DRAGONFLY_CLIENT_SECRET -p 127.0.0.1:9100:9100 dragonfly-hybrid
#
# Configuration is the node's DRAGONFLY_* environment (README.md, "Configuration"). The first build compiles YARA-X
# (~12 min on 2 cores); the cache mounts below keep Cargo's downloads and target directory for rebuilds.

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS builder
# curl for rustup; gcc and libc6-dev: rustc links with the system C toolchain, and mimalloc is C.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:$PATH \
    CARGO_TARGET_DIR=/root/.cache/dragonfly-hybrid/target \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --profile minimal --default-toolchain stable --no-modify-path \
    && rustc --version
RUN python -m pip install --no-cache-dir 'maturin>=1.8,<2'
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/root/.cache \
    bash scripts/build-wheel.sh


FROM python:${PYTHON_VERSION}-slim AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DRAGONFLY_METRICS_HOST=0.0.0.0 \
    DRAGONFLY_METRICS_PORT=9100
RUN --mount=type=bind,from=builder,source=/src/dist,target=/tmp/dist \
    python -m pip install --no-cache-dir /tmp/dist/dragonfly_hybrid-*.whl \
    && useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin dragonfly
USER dragonfly
WORKDIR /home/dragonfly
# The compiled-rules cache (~/.cache/dragonfly-hybrid/rules); owned by the user so a volume can go here.
RUN mkdir -p /home/dragonfly/.cache/dragonfly-hybrid
EXPOSE 9100
# /healthz answers 200 once the node runs with rules loaded, 503 otherwise (urlopen raises: exit 1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('DRAGONFLY_METRICS_PORT', '9100'), timeout=4)" || exit 1
ENTRYPOINT ["dragonfly-hybrid"]
CMD ["node"]
