"""Fixtures shared by the trainer's tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from trainer.actors import local_ray_environment


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """A local Ray on loopback for one test module (2 CPUs: a rollout actor and the learner)."""
    import ray

    local_ray_environment()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()
