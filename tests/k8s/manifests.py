"""Rendering k8s/ with `kubectl kustomize` and walking the rendered objects (shared by tests/k8s).

Every test of the manifests looks at what `kubectl apply -k` would send, not at the source files:
a patch that misses its target, or an overlay that drops a field, shows up here.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
SCHEMAS = K8S / "schemas" / "crds"
TARGETS = {"base": K8S / "base", "dev": K8S / "overlays" / "dev", "gpu": K8S / "overlays" / "gpu"}
OVERLAYS = ("dev", "gpu")


def target_id(target: str) -> str:
    """Test ids `k8s-gpu`, not `gpu`: tests/conftest.py skips every test with a `gpu` keyword."""
    return f"k8s-{target}"


NAMESPACE = "motionnft"
TRAINER_LABEL = ("app.kubernetes.io/part-of", "motionnft-trainer")
# Each service Deployment, the settings module its container reads, and its app factory.
SERVICES = {"reward-api": "reward_api", "mllm-judge": "mllm_judge"}

Obj = dict[str, Any]


def kubectl() -> str:
    """The kubectl binary, or skip: rendering needs its built-in kustomize."""
    path = shutil.which("kubectl")
    if path is None:
        pytest.skip("kubectl is not installed: the k8s/ manifests cannot be rendered (kubectl kustomize)")
    return path


@functools.cache
def _render(target: str) -> tuple[Obj, ...]:
    done = subprocess.run(
        [kubectl(), "kustomize", str(TARGETS[target])], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {TARGETS[target]} failed:\n{done.stderr}")
    return tuple(doc for doc in yaml.safe_load_all(done.stdout) if doc)


def render(target: str) -> list[Obj]:
    """The objects `kubectl kustomize` renders for base, dev or gpu (cached; copies are not made)."""
    return list(_render(target))


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    """Objects of this kind (and name; a generated ConfigMap matches by its name before the hash)."""
    found = []
    for obj in objs:
        if obj["kind"] != kind:
            continue
        actual = obj["metadata"]["name"]
        if name is None or actual == name or (kind == "ConfigMap" and actual.rsplit("-", 1)[0] == name):
            found.append(obj)
    return found


def one(objs: list[Obj], kind: str, name: str) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def pod_specs(objs: list[Obj]) -> Iterator[tuple[str, Obj, Obj]]:
    """(where, pod metadata, pod spec) of every pod template: Deployments, RayJob head/workers/submitter."""
    for obj in objs:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            template = obj["spec"]["template"]
            yield name, template.get("metadata", {}), template["spec"]
        elif obj["kind"] == "RayJob":
            cluster = obj["spec"]["rayClusterSpec"]
            head = cluster["headGroupSpec"]["template"]
            yield f"{name} head", head.get("metadata", {}), head["spec"]
            for group in cluster["workerGroupSpecs"]:
                template = group["template"]
                yield f"{name} group {group['groupName']}", template.get("metadata", {}), template["spec"]
            if "submitterPodTemplate" in obj["spec"]:
                template = obj["spec"]["submitterPodTemplate"]
                yield f"{name} submitter", template.get("metadata", {}), template["spec"]


def containers(spec: Obj, *, init: bool = True) -> list[Obj]:
    return [*(spec.get("initContainers", []) if init else []), *spec["containers"]]


def config_map_data(objs: list[Obj], name: str) -> dict[str, str]:
    return dict(one(objs, "ConfigMap", name).get("data", {}))


def service_container(objs: list[Obj], deployment: str) -> Obj:
    spec = one(objs, "Deployment", deployment)["spec"]["template"]["spec"]
    (container,) = [c for c in spec["containers"] if c["name"] == deployment]
    return container


def service_env(objs: list[Obj], deployment: str) -> dict[str, str]:
    """The environment the container starts with: its ConfigMaps (envFrom), then `env` (Secrets as '<secret>')."""
    container = service_container(objs, deployment)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(config_map_data(objs, source["configMapRef"]["name"].rsplit("-", 1)[0]))
    for var in container.get("env", []):
        env[var["name"]] = var.get("value", "<secret>")
    return env


def rayjob(objs: list[Obj]) -> Obj:
    return one(objs, "RayJob", "motionnft-train")


def train_config_text(objs: list[Obj]) -> str:
    return config_map_data(objs, "motionnft-train-config")["train.yaml"]


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
