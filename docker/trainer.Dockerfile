# MotionNFT trainer: Ray, the editing policies (diffusers + peft), CUDA torch; the image the KubeRay
# RayJob's head and worker pods run (`python -m trainer --config FILE` is the job's entrypoint).
#   buildah bud --format docker -f docker/trainer.Dockerfile -t motionnft/trainer:0.1.0-cuda .
# Follows rayproject/ray's conventions that KubeRay relies on: bash (KubeRay starts nodes with
# `bash -lc 'ulimit -n 65536; ray start ...'`), `ray` on PATH, wget (KubeRay's default probes call
# the raylet's and dashboard's health endpoints with it), a writable HOME and Ray's session dir
# under /tmp. A plain Python base, not nvidia/cuda: PyPI's torch wheels bundle the CUDA runtime,
# cuDNN and NCCL; the node supplies only the driver, through the NVIDIA container toolkit.
# The base is pinned by tag and digest; the digest is a placeholder to fill in before a release
# (docker/README.md says how). `make images-trainer` builds it here on the mmdebstrap base.
ARG BASE_IMAGE=docker.io/library/python:3.11.13-slim-bookworm@sha256:0000000000000000000000000000000000000000000000000000000000000000

# Stage 1 writes the image's requirement set, pyproject's own pins (docker/requirements.py). It holds
# only these two files, so the install that reads it stays cached until a pin changes.
FROM ${BASE_IMAGE} AS requirements
WORKDIR /src
COPY pyproject.toml ./
COPY docker/requirements.py docker/
RUN python3 docker/requirements.py --pyproject pyproject.toml train > /requirements.txt

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
LABEL org.opencontainers.image.title="motionnft/trainer" \
      org.opencontainers.image.description="MotionNFT trainer (Ray head and workers, CUDA torch)" \
      org.opencontainers.image.version="${VERSION}"
# DL3008 (pin apt versions): deb.debian.org keeps only a package's newest version, so a pinned wget
# stops resolving at the next security update; the base's digest pins the distribution release.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/*
# uid/gid 10001, the numbers the manifests' runAsUser/runAsGroup name, with a login shell (Ray's
# `bash -l`) and a home (Ray and matplotlib write dotfiles); /models: weights, mounted read-only.
RUN groupadd --gid 10001 motionnft \
    && useradd --no-log-init --uid 10001 --gid 10001 --home-dir /home/motionnft --create-home \
       --shell /bin/bash motionnft \
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
# torch from PyPI: its x86_64 build is the CUDA one this image wants.
ARG TORCH_INDEX_URL=https://pypi.org/simple
ARG PIP_CERT=
RUN --mount=type=bind,from=requirements,source=/requirements.txt,target=/tmp/requirements.txt \
    if [ -z "$PIP_CERT" ]; then unset PIP_CERT; fi \
    && python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --extra-index-url "$TORCH_INDEX_URL" -r /tmp/requirements.txt
# The project itself, non-editable, from its wheel; its dependencies are already there.
RUN --mount=type=bind,from=builder,source=/dist,target=/tmp/dist \
    /opt/venv/bin/pip install --no-cache-dir --no-deps --no-index /tmp/dist/motionnft-*.whl
# The presets (a RayJob mounts its own config from a ConfigMap). No weights, not even the tiny
# policy's: every policy loads from /models (the dev overlay's init container writes tiny-kontext).
COPY --from=builder /src/configs /app/configs
# No OMP_NUM_THREADS: Ray sets it for each actor from the actor's num_cpus, unless it is already set.
# The models are read from /models only (HF_HUB_OFFLINE); caches and Ray's session dir go to /tmp.
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/motionnft \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    HF_HOME=/tmp/huggingface \
    MPLCONFIGDIR=/tmp/matplotlib \
    RAY_TMPDIR=/tmp/ray \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /app
USER 10001:10001
# Ray: GCS 6379, dashboard and job API 8265, client 10001, metrics export 8080.
EXPOSE 6379 8265 10001 8080
# KubeRay is the runner and probes the Ray processes itself; a batch `python -m trainer` run in
# docker has nothing to answer a health check with.
HEALTHCHECK NONE
CMD ["bash"]
