"""The Ray side's bounded waits, on a local Ray: an actor no node can place is an error, not a hang."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from trainer.actors import ActorLost, start_actors
from trainer.config import load_config
from workers.policies.factory import TINY_CHECKPOINT

pytestmark = pytest.mark.skipif(not TINY_CHECKPOINT.exists(), reason="run `motionnft pretrain-tiny` first")
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo_cpu.yaml"


def test_actors_are_placed_by_their_resources_and_report_where(ray_session: None) -> None:
    import ray

    config = load_config(CONFIG, ["ray.rollout_resources={}", "ray.placement_timeout_s=120"])
    actors = start_actors(config)
    try:
        roles = sorted((p.role, p.index) for p in actors.placements)
        assert roles == [("learner", 0), ("rollout", 0)]
        node = ray.get_runtime_context().get_node_id()
        assert {p.node_id for p in actors.placements} == {node}
        address = next(n["NodeManagerAddress"] for n in ray.nodes() if n["NodeID"] == node)
        assert [(p.node_ip, p.resources) for p in actors.placements] == [(address, {"CPU": 1.0})] * 2
    finally:
        actors.close()


def test_a_resource_no_node_offers_fails_within_the_placement_timeout(ray_session: None) -> None:
    config = load_config(CONFIG, ["ray.rollout_resources={rollout: 1}", "ray.placement_timeout_s=3"])
    started = time.monotonic()
    with pytest.raises(ActorLost) as lost:
        start_actors(config)
    assert time.monotonic() - started < 60
    message = str(lost.value)
    assert "within 3 s" in message and "'rollout': 1.0" in message and "the cluster has" in message
