# One-command workflows. Every target works on a fresh clone with only Python 3.11 installed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Offline-safe defaults: never wait on a model hub; one thread per process on small machines.
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export OMP_NUM_THREADS ?= 1
# A local Ray on loopback: Ray reads this once, when it is imported, so it is set before Python starts.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER ?= 0

.PHONY: install test demo run run-judge lint bench-reward bench-judge bench-learner bench-pipeline bench-bench bench-mine bench-ablations clean images images-trainer

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# The whole loop on this machine: synthetic data, both services, local Ray, the tiny policy.
demo: $(STAMP)
	$(PY) -m trainer.demo

run: $(STAMP)
	$(PY) -m services.reward_api

run-judge: $(STAMP)
	$(PY) -m services.mllm_judge

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

bench-reward: $(STAMP)
	$(PY) -m benchmarks.bench_reward --out docs/benchmarks.md

bench-judge: $(STAMP)
	$(PY) -m benchmarks.bench_judge --out docs/benchmarks.md

# The learner's step at FLUX.1 Kontext and Qwen-Image-Edit size (needs CUDA: without it, says so in its
# section, keeps the last GPU numbers and exits 0). benchmarks/gpu_learner.sh runs it with the GPU checks.
bench-learner: $(STAMP)
	$(PY) -m benchmarks.bench_learner --out docs/benchmarks.md

# The demo's training on-policy and with run.pipeline, side by side (two runs of make demo's config,
# 27 minutes on 2 cores here; pass e.g. ARGS='--set run.epochs=20' for a shorter one).
bench-bench: $(STAMP)
	$(PY) -m benchmarks.bench_bench --out docs/benchmarks.md $(ARGS)

# The demo's ablations (reward weights 1/0, 0.5/0.5, 0/1; six-level motion; no NFT negative branch),
# one run each (about 15 minutes apiece here at 60 epochs; ARGS='--epochs 20' for a quicker look).
bench-ablations: $(STAMP)
	$(PY) -m benchmarks.bench_ablations --out docs/benchmarks.md $(ARGS)

# The miner's prefilter: windows/s by stage and video size, and the share of judge calls it saves.
bench-mine: $(STAMP)
	$(PY) -m benchmarks.bench_mine --out docs/benchmarks.md $(ARGS)

bench-pipeline: $(STAMP)
	$(PY) -m benchmarks.bench_pipeline --out docs/benchmarks.md $(ARGS)

# Container images, built for real without a Docker engine: Debian's buildah (vfs, chroot) on a
# Debian base made with mmdebstrap; each service image is started until /readyz answers. Needs root,
# buildah and mmdebstrap; sizes go to docs/images.md. See docker/README.md.
images:
	$(PYTHON) docker/build_images.py

# The trainer image (CUDA torch, Ray, diffusers: an estimated 8 GB; not yet built on this machine).
images-trainer:
	$(PYTHON) docker/build_images.py trainer

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
