# MotionNFT MLLM judge with the `transformers` backend: a local Qwen2-VL class model, in-process on a
# GPU (MLLM_JUDGE_BACKEND=transformers, MLLM_JUDGE_MODEL_PATH=/models/<dir>, MLLM_JUDGE_DEVICE=cuda:0).
# Not built by `make images` (torch with CUDA, no GPU there): linted only.
#   buildah bud --format docker -f docker/mllm-judge-transformers.Dockerfile \
#       -t motionnft/mllm-judge:0.1.0-transformers .
# A plain Python base, not nvidia/cuda: PyPI's torch wheels bundle the CUDA runtime and cuDNN; the
# node supplies only the driver, through the NVIDIA container toolkit.
# (`docker build` works the same; buildah needs --format docker to keep HEALTHCHECK.)
# The base is pinned by tag and digest; the digest is a placeholder to fill in before a release
# (docker/README.md says how). `make images` passes BASE_IMAGE=localhost/motionnft-base:bookworm,
# a Debian bookworm Python 3.11 made with mmdebstrap, because no registry is reachable there.
ARG BASE_IMAGE=docker.io/library/python:3.11.13-slim-bookworm@sha256:0000000000000000000000000000000000000000000000000000000000000000

# Stage 1 writes the image's requirement set, pyproject's own pins (docker/requirements.py). It holds
# only these two files, so the install that reads it stays cached until a pin changes.
FROM ${BASE_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
COPY docker/requirements.py docker/
RUN python3 docker/requirements.py --pyproject pyproject.toml judge-local > /requirements.txt

# Stage 2 builds the project's own wheel, no dependencies: the runtime gets no source tree.
FROM ${BASE_IMAGE} AS builder
# pip reads no config file of the building machine; no wheel cache is left in a layer.
ENV PIP_CONFIG_FILE=/dev/null \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
ARG PIP_INDEX_URL=https://pypi.org/simple
# Path of a CA bundle mounted into the build (a TLS-inspecting proxy); empty: pip's own bundle.
ARG PIP_CERT=
WORKDIR /src
COPY . .
RUN if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
    && python3 -m venv /opt/build \
    && /opt/build/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /dist .

FROM ${BASE_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="motionnft/mllm-judge" \
      org.opencontainers.image.description="MotionNFT MLLM judge (transformers backend: a local Qwen2-VL model)" \
      org.opencontainers.image.version="${VERSION}"
# uid/gid 10001, the numbers the manifests' runAsUser/runAsGroup name; /models is where weights are
# mounted read-only (none are baked in); /tmp is the only place written (an emptyDir in Kubernetes).
RUN groupadd --gid 10001 motionnft \
    && useradd --no-log-init --uid 10001 --gid 10001 --home-dir /home/motionnft --create-home \
       --shell /usr/sbin/nologin motionnft \
    && mkdir -p /models /app
# The venv is made here, in the runtime stage, from the two stages' outputs bind-mounted for the one
# RUN that reads each (no copy of them stays in a layer). A venv built in a stage and copied over
# (COPY --from) exists twice while the image is committed: with CUDA torch, 12 GB of build disk.
# pip reads no config file of the building machine; no wheel cache is left in a layer (ARG, not ENV:
# none of these stays in the image).
ARG PIP_CONFIG_FILE=/dev/null
ARG PIP_NO_CACHE_DIR=1
ARG PIP_DISABLE_PIP_VERSION_CHECK=1
ARG PIP_INDEX_URL=https://pypi.org/simple
# torch from PyPI: its x86_64 build is the CUDA one this image wants (a CPU-only judge would set
# https://download.pytorch.org/whl/cpu).
ARG TORCH_INDEX_URL=https://pypi.org/simple
ARG PIP_CERT=
RUN --mount=type=bind,from=requirements,source=/requirements.txt,target=/tmp/requirements.txt \
    if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --extra-index-url "$TORCH_INDEX_URL" -r /tmp/requirements.txt
# The project itself, non-editable, from its wheel; its dependencies are already there.
RUN --mount=type=bind,from=builder,source=/dist,target=/tmp/dist \
    /opt/venv/bin/pip install --no-cache-dir --no-deps --no-index /tmp/dist/motionnft-*.whl
COPY docker/healthcheck.py /app/healthcheck.py
# OMP_NUM_THREADS: the model runs on the GPU; the CPU prepares images and tokens (4 threads). The
# model is read from /models only: the hub is never asked (HF_HUB_OFFLINE), caches go to /tmp.
# NVIDIA_*: what the NVIDIA container toolkit exposes outside Kubernetes (its device plugin sets them there).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    OMP_NUM_THREADS=4 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/tmp/huggingface \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility \
    MLLM_JUDGE_HOST=0.0.0.0 \
    MLLM_JUDGE_PORT=8002
WORKDIR /app
USER 10001:10001
EXPOSE 8002
# For docker/podman/compose (loading a 7B-32B model takes minutes); Kubernetes uses its own probes.
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
    CMD ["python", "/app/healthcheck.py", "MLLM_JUDGE_", "8002"]
# SIGTERM drains in-flight requests (MLLM_JUDGE_GRACEFUL_TIMEOUT_S), then exits 0.
STOPSIGNAL SIGTERM
CMD ["python", "-m", "services.mllm_judge"]
