"""Two data-parallel learners (real Ray actors, real gloo) on the tiny policy: they train exactly as one
learner does and hold the same weights; one killed mid-update stops the update within the collective
timeout, naming the rank, and the surviving rank's rollback lets the run checkpoint its last epoch."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
import torch

from tests.workers.tiny_policy import edit_inputs
from trainer.actors import ActorLost, RunActors, start_actors
from trainer.checkpoints import TrainerState, load_checkpoint
from trainer.config import ConfigError, TrainConfig, load_config
from trainer.learner import Learner
from trainer.loop import _stopped_at
from workers.local_ray import local_ray_environment
from workers.policies.base import TRAINABLE
from workers.policies.factory import TINY_CHECKPOINT, build_policy
from workers.rewards import GroupRewards
from workers.tasks import EditTask, RolloutGroup

pytestmark = pytest.mark.skipif(not TINY_CHECKPOINT.exists(), reason="run `motionnft pretrain-tiny` first")
CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo_cpu.yaml"
K, GROUPS, EPOCHS = 4, 3, 2
TIMEOUT_S = 3.0  # ray.collective_timeout_s


@pytest.fixture(scope="module")
def config() -> TrainConfig:
    # On-policy, as the reference (the demo's config pipelines its epochs).
    overrides = ["ray.num_learners=2", "optim.grad_accum=2", "optim.timesteps_per_sample=2", "policy.sampling_steps=3",
                 f"data.samples_per_prompt={K}", f"ray.collective_timeout_s={TIMEOUT_S}", "ray.placement_timeout_s=180",
                 "ray.rollout_resources={}", "run.pipeline=false"]  # fmt: skip
    return load_config(CONFIG, overrides)


@pytest.fixture(scope="module")
def actors(config: TrainConfig) -> Iterator[RunActors]:
    """A local Ray with room for two learners and the rollout actor, and the run's actors on it."""
    local_ray_environment()
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    started = start_actors(config)
    try:
        yield started
    finally:
        started.close()
        ray.shutdown()


@pytest.fixture(scope="module")
def groups(config: TrainConfig) -> list[RolloutGroup]:
    """GROUPS groups of K samples drawn by the tiny policy, with optimality weights in `rewards.judge`."""
    policy = build_policy(config.policy, size=config.data.size)
    prompts, images = edit_inputs(GROUPS)
    weights = torch.rand(GROUPS, K, generator=torch.Generator().manual_seed(0))
    out = []
    for i in range(GROUPS):
        conditions = policy.encode_conditions([prompts[i]], images[i : i + 1]).cpu()
        latents = policy.sample(conditions, [10 * i + k for k in range(K)], steps=3, guidance=2.5).cpu()
        task = EditTask(f"p{i}", prompts[i], images[i], images[i])
        rewards = GroupRewards(motion=[0.0] * K, motion_continuous=[0.0] * K, judge=weights[i].tolist(), mas=[0.0] * K)
        out.append(RolloutGroup(task, list(range(K)), latents, conditions, rewards, 0))
    return out


def weights_of(groups: list[RolloutGroup]) -> tuple[torch.Tensor, torch.Tensor]:
    weights = torch.tensor([g.rewards.judge for g in groups])
    return weights, torch.tensor([i != 1 for i in range(len(groups))])  # one banned group trains nothing


def rank_states(actors: RunActors) -> list[dict]:
    return ray.get([h.state_dict.remote() for h in actors.learners.handles], timeout=60)


def test_two_learners_train_exactly_as_one_and_hold_the_same_weights(
    config: TrainConfig, actors: RunActors, groups: list[RolloutGroup]
) -> None:
    assert sorted((p.role, p.index) for p in actors.placements) == [("learner", 0), ("learner", 1), ("rollout", 0)]
    one = Learner(config.policy, config.optim, config.nft, size=config.data.size, seed=config.run.seed)
    weights, valid = weights_of(groups)
    initial = one.policy.adapter_state(TRAINABLE)
    for epoch in range(EPOCHS):
        reference = one.train_epoch([g.for_learner() for g in groups], weights, valid, epoch=epoch)
        one.advance_old()
        metrics = actors.train_epoch(groups, weights, valid, epoch)
        actors.sync()
        assert metrics["optimizer_steps"] == reference["optimizer_steps"] == 3 * (epoch + 1)
        assert metrics["loss"] == pytest.approx(reference["loss"], rel=1e-5)
    first, second = rank_states(actors)
    for name in (TRAINABLE, "old"):
        assert all(torch.equal(first[name][k], second[name][k]) for k in first[name])  # bitwise, both ranks
    alone = one.policy.adapter_state(TRAINABLE)
    assert any(not torch.equal(alone[k], initial[k]) for k in alone)  # it trained
    gap = max(float((first[TRAINABLE][k] - alone[k]).abs().max()) for k in alone)
    assert gap <= 1e-5, gap
    print(f"\n1 vs 2 learners after {EPOCHS} epochs: max |diff| of `default` = {gap:.2e}")


def test_a_learner_killed_mid_update_stops_it_naming_the_rank_and_the_run_checkpoints(
    config: TrainConfig, actors: RunActors, groups: list[RolloutGroup], tmp_path: Path
) -> None:
    before = rank_states(actors)[0]
    weights, valid = weights_of(groups * 3)  # a longer epoch, so the kill lands inside it
    victim = actors.learners.handles[1]
    killed_at: list[float] = []

    def kill() -> None:
        killed_at.append(time.monotonic())
        ray.kill(victim)

    timer = threading.Timer(1.0, kill)
    timer.start()
    with pytest.raises(ActorLost) as lost:
        actors.train_epoch(groups * 3, weights, valid, EPOCHS)
    stopped_after_s = time.monotonic() - killed_at[0]
    message = str(lost.value)
    assert message.startswith("learner rank 1 (on node 127.0.0.1 ") and "died during the update" in message
    assert "; learner rank 0 failed the update: learner rank 0: the " in message, message  # its collective
    assert stopped_after_s < TIMEOUT_S + 5.0, stopped_after_s
    assert lost.value.learner_intact  # rank 0 rolled back to the state from before this update

    stopped = _stopped_at(lost.value, tmp_path, TrainerState(epoch=EPOCHS), actors, config)
    assert stopped.endswith(f"stopped after epoch {EPOCHS} (run again to resume from checkpoint-0000{EPOCHS}.pt)")
    saved = load_checkpoint(tmp_path / f"checkpoint-0000{EPOCHS}.pt")[1]
    assert saved["step"] == before["step"] and saved["version"] == before["version"] == EPOCHS
    assert all(torch.equal(saved[TRAINABLE][k], v) for k, v in before[TRAINABLE].items())
    print(f"\nkilled learner rank 1: the update stopped {stopped_after_s:.2f} s later: {message[:160]}...")


def test_every_step_must_split_evenly_over_the_learners() -> None:
    with pytest.raises(ConfigError, match=r"optim.grad_accum \(3\) must be a multiple of ray.num_learners \(2\)"):
        load_config(CONFIG, ["ray.num_learners=2", "optim.grad_accum=3"])
    assert load_config(CONFIG, ["ray.num_learners=2", "optim.grad_accum=4"]).ray.collective_timeout_s == 600.0
