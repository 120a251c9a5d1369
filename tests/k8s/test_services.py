"""The service Deployments against the apps themselves: probe paths are routes the app serves,
ports are the port its settings say, every variable set is a setting, the ConfigMaps load, and the
images, tags and backends agree with docker/images.toml and pyproject."""

from __future__ import annotations

import importlib
import os
import tomllib
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from tests.k8s.manifests import (
    NAMESPACE,
    OVERLAYS,
    REPO,
    SERVICES,
    TARGETS,
    Obj,
    containers,
    find,
    one,
    pod_specs,
    render,
    service_container,
    service_env,
    target_id,
)

# Variables a service container may set that are not its settings (libraries read them).
NON_SETTINGS = {"OMP_NUM_THREADS"}
# Secret keys of motionnft-tokens the manifests may reference (docs/operations.md "Deploy").
TOKEN_KEYS = {"reward-token", "judge-token", "vllm-api-key"}
IMAGES = tomllib.loads((REPO / "docker" / "images.toml").read_text())["images"]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
ALL = pytest.mark.parametrize("target", sorted(TARGETS), ids=target_id)
SERVICE = pytest.mark.parametrize("deployment", sorted(SERVICES))


def settings_class(service: str) -> Any:
    module = importlib.import_module(f"services.{service}.settings")
    return next(v for k, v in vars(module).items() if k.endswith("Settings") and k != "ServingSettings")


def prefix(service: str) -> str:
    return str(settings_class(service).model_config["env_prefix"])


def load_settings(objs: list[Obj], deployment: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The settings object the container would build from its environment (secrets as stand-ins)."""
    service = SERVICES[deployment]
    env = {k: ("stand-in-secret" if v == "<secret>" else v) for k, v in service_env(objs, deployment).items()}
    for key in [k for k in os.environ if k.upper().startswith(prefix(service))]:
        monkeypatch.delenv(key)  # only the manifest's variables count
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return settings_class(service)()


def build_app(objs: list[Obj], deployment: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, FastAPI]:
    settings = load_settings(objs, deployment, monkeypatch)
    app = importlib.import_module(f"services.{SERVICES[deployment]}.app").create_app(settings)
    return settings, app


@ALL
@SERVICE
def test_every_variable_is_a_setting_and_the_config_maps_load(
    target: str, deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = render(target)
    service = SERVICES[deployment]
    fields = {prefix(service) + name.upper() for name in settings_class(service).model_fields}
    env = service_env(objs, deployment)
    assert set(env) - fields <= NON_SETTINGS, f"not settings of {service}: {sorted(set(env) - fields - NON_SETTINGS)}"
    settings = load_settings(objs, deployment, monkeypatch)  # raises on a typo or a bad value
    assert settings.host == "0.0.0.0", "a container must listen on every interface"
    assert settings.auth_token is not None, "the token comes from the Secret"


@ALL
@SERVICE
def test_probes_and_ports_are_what_the_app_serves(
    target: str, deployment: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = render(target)
    settings, app = build_app(objs, deployment, monkeypatch)
    routes = {route.path: route for route in app.routes if isinstance(route, APIRoute)}
    container = service_container(objs, deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": settings.port}
    for kind, path in {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}.items():
        probe = container[kind]["httpGet"]
        assert probe["path"] == path and path in routes, f"{kind}: {probe['path']}"
        assert "GET" in (routes[path].methods or set())
        assert ports.get(probe["port"], probe["port"]) == settings.port
    service = one(objs, "Service", deployment)
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] in (ports.keys() | {settings.port}) and port["port"] == settings.port
    # The drain fits in the grace period: preStop sleep + the service's graceful timeout + margin.
    pod = one(objs, "Deployment", deployment)["spec"]["template"]["spec"]
    sleep = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    assert pod["terminationGracePeriodSeconds"] >= sleep + settings.graceful_timeout_s + 5


@ALL
def test_secrets_are_references_to_the_documented_keys(target: str) -> None:
    for obj in render(target):
        for ref in _secret_refs(obj):
            assert ref["name"] == "motionnft-tokens" and ref["key"] in TOKEN_KEYS, ref


def _secret_refs(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, dict):
        own = [node["secretKeyRef"]] if "secretKeyRef" in node else []
        return own + [r for v in node.values() for r in _secret_refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _secret_refs(v)]
    return []


@ALL
def test_images_agree_with_docker_images_toml_and_the_version(target: str) -> None:
    known = {(entry["image"], entry["tag"]): key for key, entry in IMAGES.items()}
    objs = render(target)
    for obj in objs:
        for ref in _images(obj):
            name, _, tag = ref.partition(":")
            if not name.startswith("motionnft/"):
                assert name == "vllm/vllm-openai" and tag, f"unexpected third-party image {ref}"
                continue
            assert (name, tag) in known, f"{ref} is not in docker/images.toml"
            assert tag.split("-")[0] == VERSION, f"{ref}: tag does not start with pyproject's {VERSION}"
    for deployment, service in SERVICES.items():
        name, _, tag = service_container(objs, deployment)["image"].partition(":")
        entry = IMAGES[known[(name, tag)]]
        assert entry.get("serves") == service, f"{deployment} runs {name}:{tag}, an image of {entry.get('serves')}"

    # The image must carry the backend its settings pick: RAFT needs torchvision, a local judge torch.
    def extras(deployment: str) -> list[str]:
        name, _, tag = service_container(objs, deployment)["image"].partition(":")
        return list(IMAGES[known[(name, tag)]]["extras"])

    reward_backend = service_env(objs, "reward-api").get("REWARD_API_FLOW_BACKEND", "dis")
    assert reward_backend.startswith("raft") == ("raft" in extras("reward-api"))
    judge_backend = service_env(objs, "mllm-judge").get("MLLM_JUDGE_BACKEND")
    assert (judge_backend == "transformers") == ("judge-local" in extras("mllm-judge"))


def _images(obj: Obj) -> list[str]:
    return [c["image"] for _, _, spec in pod_specs([obj]) for c in containers(spec)]


@pytest.mark.parametrize("target", OVERLAYS, ids=target_id)
def test_the_judge_points_at_the_vllm_of_this_overlay(target: str) -> None:
    objs = render(target)
    judge = service_env(objs, "mllm-judge")
    vllm = find(objs, "Deployment", "vllm")
    if judge.get("MLLM_JUDGE_BACKEND") != "openai":
        assert not vllm, "vLLM deployed but the judge does not use it"
        return
    (deployment,) = vllm
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = dict(a.removeprefix("--").split("=", 1) for a in container["args"] if a.startswith("--"))
    assert args["served-model-name"] == judge["MLLM_JUDGE_OPENAI_MODEL"]
    url = urlsplit(judge["MLLM_JUDGE_OPENAI_BASE_URL"])
    (port,) = one(objs, "Service", "vllm")["spec"]["ports"]
    assert url.hostname == f"vllm.{NAMESPACE}.svc.cluster.local" and url.port == port["port"] == int(args["port"])
    gpus = int(container["resources"].get("limits", {}).get("nvidia.com/gpu", 0))
    assert int(args.get("tensor-parallel-size", 1)) == max(gpus, 1), "tensor parallelism over the GPUs it gets"
    if target == "gpu":
        assert gpus >= 2


def test_the_gpu_overlay_runs_raft_on_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    objs = render("gpu")
    settings = load_settings(objs, "reward-api", monkeypatch)
    assert settings.flow_backend == "raft_large" and settings.device == "cuda"
    assert str(settings.raft_checkpoint).startswith("/models/")
    container = service_container(objs, "reward-api")
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"mountPath": "/models", "name": "models", "readOnly": True} in container["volumeMounts"]


def test_the_dev_overlay_is_cpu_only(monkeypatch: pytest.MonkeyPatch) -> None:
    objs = render("dev")
    assert load_settings(objs, "reward-api", monkeypatch).flow_backend == "dis"
    assert load_settings(objs, "mllm-judge", monkeypatch).backend == "similarity"
    for where, _, spec in pod_specs(objs):
        for container in containers(spec):
            assert "nvidia.com/gpu" not in container["resources"].get("limits", {}), where
