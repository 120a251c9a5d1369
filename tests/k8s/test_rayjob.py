"""The training RayJob against the trainer: the Ray version, an entrypoint that exists, a config that
validates and whose Ray resources the worker groups declare, URLs that are the Services, tokens
from the Secret, and a run directory on the checkpoints volume so a re-run resumes."""

from __future__ import annotations

import importlib.util
import posixpath
import shlex
from typing import Any
from urllib.parse import urlsplit

import pytest
import ray

from tests.k8s.manifests import (
    NAMESPACE,
    TARGETS,
    Obj,
    one,
    rayjob,
    render,
    target_id,
    train_config_text,
)
from trainer.config import TrainConfig, from_yaml

ALL = pytest.mark.parametrize("target", sorted(TARGETS), ids=target_id)


def _config(objs: list[Obj]) -> TrainConfig:
    return from_yaml(train_config_text(objs), source="motionnft-train-config/train.yaml")


def _groups(job: Obj) -> dict[str, Obj]:
    return {g["groupName"]: g for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]}


def _mounts(template: Obj) -> dict[str, Obj]:
    (container,) = template["spec"]["containers"]
    return {m["mountPath"]: m for m in container["volumeMounts"]}


def _claim(template: Obj, volume: str) -> str | None:
    for v in template["spec"]["volumes"]:
        if v["name"] == volume:
            return v.get("persistentVolumeClaim", {}).get("claimName")
    return None


@ALL
def test_ray_version_is_the_installed_one(target: str) -> None:
    assert rayjob(render(target))["spec"]["rayClusterSpec"]["rayVersion"] == ray.__version__


@ALL
def test_entrypoint_runs_the_trainer_on_the_mounted_config(target: str) -> None:
    objs = render(target)
    job = rayjob(objs)
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:3] == ["python", "-m", "trainer"] and argv[3] == "--config" and len(argv) == 5
    assert importlib.util.find_spec("trainer.__main__") is not None
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    config_volume = next(v for v in head["spec"]["volumes"] if "configMap" in v)
    (item,) = config_volume["configMap"]["items"]
    mount = next(m for m in _mounts(head).values() if m["name"] == config_volume["name"])
    assert argv[4] == posixpath.join(mount["mountPath"], item["path"])
    one(objs, "ConfigMap", config_volume["configMap"]["name"])["data"][item["key"]]  # exists


@ALL
def test_the_train_config_validates_for_the_cluster(target: str) -> None:
    config = _config(render(target))
    assert config.ray.address == "auto"
    assert config.ray.rollout_resources == {"rollout": 1}
    assert config.ray.learner_resources == {"learner": 1}


@ALL
def test_worker_groups_declare_the_resources_the_actors_ask_for(target: str) -> None:
    objs = render(target)
    config, job = _config(objs), rayjob(objs)
    groups = _groups(job)
    assert set(groups) == {"rollout", "learner"}
    head = job["spec"]["rayClusterSpec"]["headGroupSpec"]
    assert not head.get("resources") and head["rayStartParams"]["num-cpus"] == "0", "no actor on the head"
    for role, asked, actors in [
        ("rollout", config.ray.rollout_resources, config.ray.num_rollout_actors),
        ("learner", config.ray.learner_resources, config.ray.num_learners),
    ]:
        group = groups[role]
        declared = {k: float(v) for k, v in group.get("resources", {}).items()}
        assert group["replicas"] == group["minReplicas"] == group["maxReplicas"]
        for resource, amount in asked.items():
            per_pod = declared.get(resource, 0)
            assert per_pod >= amount, f"{role} pods declare {declared}, the actors ask for {asked}"
            assert per_pod * group["replicas"] >= amount * actors, f"{role}: room for fewer than {actors} actors"
            # Only this group offers it: the other role cannot land here by accident.
            other = [g for name, g in groups.items() if name != role and resource in g.get("resources", {})]
            assert not other, f"{resource} also declared by {[g['groupName'] for g in other]}"
        (container,) = group["template"]["spec"]["containers"]
        gpus = int(container["resources"].get("limits", {}).get("nvidia.com/gpu", 0))
        device = config.policy.device if role == "rollout" else config.ray.learner_device
        assert (gpus >= 1) == device.startswith("cuda"), f"{role}: {gpus} GPUs for device {device}"


@ALL
def test_urls_are_the_services_in_cluster_dns(target: str) -> None:
    objs = render(target)
    reward = _config(objs).reward
    for url, service in [(reward.reward_url, "reward-api"), (reward.judge_url, "mllm-judge")]:
        parts = urlsplit(url)
        (port,) = one(objs, "Service", service)["spec"]["ports"]
        assert parts.hostname == f"{service}.{NAMESPACE}.svc.cluster.local" and parts.port == port["port"], url


@ALL
def test_tokens_reach_every_ray_node_from_the_secret(target: str) -> None:
    objs = render(target)
    reward = _config(objs).reward
    wanted = {reward.reward_token_env: "reward-token", reward.judge_token_env: "judge-token"}
    cluster = rayjob(objs)["spec"]["rayClusterSpec"]
    for template in [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]:
        (container,) = template["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        for name, key in wanted.items():
            assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "motionnft-tokens", "key": key}


@ALL
def test_a_failed_job_reruns_and_resumes_from_the_checkpoints_volume(target: str) -> None:
    objs = render(target)
    job, config = rayjob(objs), _config(objs)
    spec: dict[str, Any] = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    assert spec["backoffLimit"] >= 1
    out_dir = str(config.run.out_dir)
    cluster = spec["rayClusterSpec"]
    # The driver (head) and the learner write the run; both mount the same claim there.
    for template in [cluster["headGroupSpec"]["template"], _groups(job)["learner"]["template"]]:
        mount = next((m for path, m in _mounts(template).items() if out_dir.startswith(path + "/")), None)
        assert mount is not None and not mount.get("readOnly"), f"{out_dir} is not on a writable volume"
        assert _claim(template, mount["name"]) == "motionnft-checkpoints"
    one(objs, "PersistentVolumeClaim", "motionnft-checkpoints")


@ALL
def test_models_are_read_only_where_the_policy_loads(target: str) -> None:
    objs = render(target)
    config, job = _config(objs), rayjob(objs)
    assert config.policy.pretrained.startswith("/models/")
    for group in _groups(job).values():
        mount = _mounts(group["template"])["/models"]
        assert mount["readOnly"] and _claim(group["template"], mount["name"]) == "motionnft-models"
