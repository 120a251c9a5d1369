"""docker/images.toml agrees with the Dockerfiles, pyproject's extras and version, and the decided names."""

from __future__ import annotations

import re

from tests.docker.dockerfiles import ROOT, catalogue, parse, pyproject

EXPECTED = {
    "reward-api": ("motionnft/reward-api", ""),
    "reward-api-cuda": ("motionnft/reward-api", "-cuda"),
    "mllm-judge": ("motionnft/mllm-judge", ""),
    "mllm-judge-transformers": ("motionnft/mllm-judge", "-transformers"),
    "trainer": ("motionnft/trainer", "-cuda"),
}
FIELDS = {"image", "tag", "dockerfile", "extras", "build_here", "serves"}


def test_names_and_tags_are_the_decided_ones() -> None:
    version = pyproject()["project"]["version"]
    images = catalogue()
    assert set(images) == set(EXPECTED)
    for key, (image, suffix) in EXPECTED.items():
        spec = images[key]
        assert set(spec) <= FIELDS and FIELDS - set(spec) <= {"serves"}, f"{key}: fields {sorted(spec)}"
        assert (spec["image"], spec["tag"]) == (image, version + suffix)
        assert spec["dockerfile"] == f"docker/{key}.Dockerfile" and (ROOT / spec["dockerfile"]).is_file()
        assert spec.get("serves") in {None, "reward_api", "mllm_judge"}


def test_only_the_cpu_service_images_are_built_here() -> None:
    assert {k for k, s in catalogue().items() if s["build_here"]} == {"reward-api", "mllm-judge"}


def test_extras_exist_and_are_the_ones_the_dockerfile_installs() -> None:
    extras = set(pyproject()["project"]["optional-dependencies"])
    for key, spec in catalogue().items():
        assert spec["extras"] and set(spec["extras"]) <= extras, f"{key}: {spec['extras']}"
        instructions, _ = parse(ROOT / spec["dockerfile"])
        runs = " ".join(i.args for i in instructions if i.keyword == "RUN")
        found = re.findall(r"requirements\.py --pyproject pyproject\.toml ([^>]*)>", runs)
        installed = [f.split("--")[0].split() for f in found]
        assert installed == [spec["extras"]], f"{key}: installs {found}"


def test_serves_matches_the_cmd() -> None:
    for key, spec in catalogue().items():
        cmd = [i.args for i in parse(ROOT / spec["dockerfile"])[0] if i.keyword == "CMD"][-1]
        serves = spec.get("serves")
        assert (f'"services.{serves}"' in cmd) if serves else ("services." not in cmd), f"{key}: {cmd}"


def test_make_images_builds_on_the_local_base_and_pypi_torch() -> None:
    """The overrides `make images` needs here, documented in the Dockerfiles' defaults."""
    script = (ROOT / "docker" / "build_images.py").read_text()
    assert 'BASE_IMAGE = "localhost/motionnft-base:bookworm"' in script
    assert "TORCH_INDEX_URL=" in script and "https://pypi.org/simple" in script
    cpu = (ROOT / "docker" / "reward-api.Dockerfile").read_text()
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in cpu
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^images:", makefile, re.MULTILINE) and "docker/build_images.py" in makefile
