"""What the dev overlay deploys, read from its rendered manifests, so local runs start things the same way.

`service_env("reward-api")` is the environment the Deployment gives its container (ConfigMaps by
`envFrom`, literal `env` values, Secret references given one test token; the bind address left
out: the local launcher picks its own ports), and `job_config(path)` writes the RayJob's
train.yaml (the ConfigMap its entrypoint reads) to `path`. Rendering is tests/k8s/manifests.py's:
where `kubectl` is not installed the tests that use these skip, saying so.
"""

from __future__ import annotations

from pathlib import Path

from tests.k8s import manifests

BIND = ("_HOST", "_PORT")


def service_env(deployment: str, secret: str) -> dict[str, str]:
    """The environment the dev overlay's Deployment `deployment` gives its container, with `secret` as
    the value of every Secret reference (the bearer token) and without the bind address and port."""
    env = manifests.service_env(manifests.render("dev"), deployment)
    return {k: secret if v == "<secret>" else v for k, v in env.items() if not k.endswith(BIND)}


def job_config(path: Path) -> Path:
    """Write the train.yaml the dev overlay's RayJob entrypoint reads to `path`."""
    path.write_text(manifests.train_config_text(manifests.render("dev")))
    return path
