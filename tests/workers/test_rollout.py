"""The rollout actor's logic without Ray: a tiny policy and fake clients that speak the contract (and, for
the tokens, the real reward API in a thread)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
import torch

from motionnft.contracts.images import encode_image
from motionnft.contracts.judge import JudgeGroupScores, JudgeScoreRequest, JudgeScoreResponse, RubricScore
from motionnft.contracts.motion import EditScore, GroupScores, MotionScoreRequest, MotionScoreResponse, MotionTerms
from motionnft.contracts.problems import ServiceError
from services.reward_api.app import create_app
from services.reward_api.settings import RewardApiSettings
from tests.services.harness import in_thread
from tests.workers.tiny_policy import SIZE, edit_inputs, tiny_policy
from workers.policies.base import SAMPLING, sample_seed
from workers.policies.factory import PolicySpec
from workers.rollout import RewardEndpoints, Rollout
from workers.tasks import EditTask

TERMS = MotionTerms(vector=0.1, direction=0.2, movement=0.0, distance=0.3)


class FakeReward:
    """Answers every edit with reward 0.8 and MAS 40 + its index; records the request ids."""

    def __init__(self, fail_for: str | None = None) -> None:
        self.request_ids: list[str | None] = []
        self.fail_for = fail_for

    async def score(self, request: MotionScoreRequest, request_id: str | None = None) -> MotionScoreResponse:
        self.request_ids.append(request_id)
        group = request.groups[0]
        if self.fail_for and self.fail_for in (group.id or ""):
            raise ServiceError(503, None, "reward API down")
        scores = [
            EditScore(reward=0.8, reward_continuous=0.81, terms=TERMS, mas=40.0 + k) for k in range(len(group.edits))
        ]
        return MotionScoreResponse(groups=[GroupScores(id=group.id, scores=scores)], flow_backend="fake",
                                   reward_version="fake/1")  # fmt: skip


class FakeJudge:
    async def score(self, request: JudgeScoreRequest, request_id: str | None = None) -> JudgeScoreResponse:
        group = request.groups[0]
        rating = RubricScore(score=0.6, raw=3.0, levels=[0, 0, 0, 1.0, 0, 0])
        scores: list[dict[str, RubricScore]] = [{"edit": rating} for _ in group.edits]
        return JudgeScoreResponse(groups=[JudgeGroupScores(id=group.id, scores=scores)], backend="fake", model="fake",
                                  is_language_model=False, rubrics={"edit": "edit/1"})  # fmt: skip


class FakeRollout(Rollout):
    def __init__(self, reward: FakeReward, policy: PolicySpec | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("policy_factory", tiny_policy)
        super().__init__(policy or PolicySpec(), RewardEndpoints(), size=SIZE, samples_per_prompt=3, run_seed=7,
                         **kwargs)  # fmt: skip
        self.fake_reward = reward

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[tuple[Any, Any]]:
        yield self.fake_reward, FakeJudge()


def tasks(n: int = 2) -> list[EditTask]:
    prompts, images = edit_inputs(n)
    return [EditTask(f"p{i}", prompts[i], images[i], images[(i + 1) % n]) for i in range(n)]


def test_a_rollout_samples_k_edits_per_prompt_with_their_rewards_and_seeds() -> None:
    reward = FakeReward()
    rollout = FakeRollout(reward)
    batch = rollout.rollout(tasks(), epoch=4, keep_images=True)
    assert [g.task.prompt_id for g in batch.groups] == ["p0", "p1"] and not batch.dropped
    first = batch.groups[0]
    assert first.seeds == [sample_seed(7, 4, "p0", k) for k in range(3)]
    assert first.latents.shape[0] == 3 and first.images is not None and first.images.shape == (3, SIZE, SIZE, 3)
    assert first.rewards.motion == [0.8] * 3 and first.rewards.judge == [0.6] * 3
    assert first.rewards.mas == [40.0, 41.0, 42.0]
    assert reward.request_ids == ["e4-p0-v0-motion", "e4-p1-v0-motion"]  # traceable to epoch, prompt, version
    assert batch.sample_s > 0 and batch.total_s >= batch.sample_s
    learner_view = first.for_learner()
    assert learner_view.prompt_id == "p0" and not hasattr(learner_view, "images")


def test_evaluation_asks_for_one_sample_per_task_and_gets_the_first_seed() -> None:
    rollout = FakeRollout(FakeReward())
    full = rollout.rollout(tasks(1), epoch=4).groups[0]
    one = rollout.rollout(tasks(1), epoch=4, samples=1).groups[0]
    assert one.seeds == full.seeds[:1] and one.latents.shape[0] == 1 and len(one.rewards.motion) == 1
    torch.testing.assert_close(one.latents[0], full.latents[0], atol=1e-4, rtol=1e-4)  # the same draw, batch 1


def test_a_group_without_rewards_is_dropped_never_scored() -> None:
    batch = FakeRollout(FakeReward(fail_for="p1")).rollout(tasks(), epoch=0)
    assert [g.task.prompt_id for g in batch.groups] == ["p0"]
    assert [d.prompt_id for d in batch.dropped] == ["p1"] and "reward API down" in batch.dropped[0].reason
    assert batch.groups[0].images is None  # kept only when asked


def test_new_sampling_weights_change_the_samples_and_the_version() -> None:
    rollout = FakeRollout(FakeReward())
    before = rollout.rollout(tasks(1), epoch=0).groups[0].latents
    state = {k: v + 0.05 * torch.randn_like(v) for k, v in rollout.policy.adapter_state(SAMPLING).items()}
    assert rollout.set_sampling_weights((3, state)) == 3
    after = rollout.rollout(tasks(1), epoch=0).groups[0]
    assert after.policy_version == 3 and not torch.equal(before, after.latents)
    assert np.isfinite(after.latents.numpy()).all()


def test_the_actor_sends_the_services_tokens_from_its_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tokens come from the environment a cluster fills from a Secret, never from the (logged) config."""
    picture = np.zeros((32, 32, 3), np.uint8)
    picture[8:16, 8:16] = 255
    moved = np.roll(picture, 4, axis=1)
    image, target = encode_image(picture), encode_image(moved)

    async def score(rollout: Rollout) -> GroupScores:
        async with rollout.connect() as (reward, _judge):
            return await reward.score_group(image, target, [target])

    with in_thread(create_app(RewardApiSettings(auth_token="s3cret", flow_threads=1))) as url:
        endpoints = RewardEndpoints(reward_url=url, max_attempts=1, reward_token_env="TEST_REWARD_TOKEN")
        rollout = Rollout(PolicySpec(), endpoints, size=SIZE, samples_per_prompt=2, run_seed=0,
                          policy_factory=tiny_policy)  # fmt: skip
        monkeypatch.delenv("TEST_REWARD_TOKEN", raising=False)
        with pytest.raises(ServiceError) as refused:
            asyncio.run(score(rollout))
        assert refused.value.status == 401
        monkeypatch.setenv("TEST_REWARD_TOKEN", "s3cret")
        assert asyncio.run(score(rollout)).scores[0].reward > 0


def _counting_encodes(policy: Any) -> list[str]:
    """Record the prompts `policy` encodes (the real encoder still runs)."""
    prompts: list[str] = []
    encode = policy.encode_conditions

    def counted(batch: list[str], images: np.ndarray) -> Any:
        prompts.extend(batch)
        return encode(batch, images)

    policy.encode_conditions = counted
    return prompts


@pytest.mark.parametrize("family", ["flux_kontext", "qwen_image_edit"])
def test_a_tasks_conditions_are_encoded_once_across_samples_and_epochs(family: str) -> None:
    from tests.workers.tiny_qwen_policy import tiny_qwen_policy

    policy = tiny_policy() if family == "flux_kontext" else tiny_qwen_policy()
    encoded = _counting_encodes(policy)
    rollout = FakeRollout(FakeReward(), policy=PolicySpec(family=family), policy_factory=lambda: policy)
    cold, warm = (rollout.rollout(tasks(), epoch=epoch) for epoch in (0, 1))
    first, second = cold.groups, warm.groups
    assert encoded == [t.prompt for t in tasks()]  # once per task, not per sample or epoch
    # The batches say what the cache saved: the second epoch encoded nothing.
    assert (cold.conditions_reused, warm.conditions_reused) == (0, 2)
    assert 0 < cold.encode_s < cold.sample_s and warm.encode_s == 0.0
    for a, b in zip(first, second, strict=True):
        assert b.conditions is a.conditions and len(b.conditions) == 1
        assert not torch.equal(a.latents, b.latents)  # new seeds each epoch, same conditions
    assert (rollout.conditions.hits, rollout.conditions.misses) == (2, 2)

    # The same id with another image (an eval set numbered like the train set) is another task.
    prompts, images = edit_inputs(2)
    other = EditTask("p0", prompts[0], images[1], images[0])
    rollout.rollout([other], epoch=2)
    assert len(encoded) == 3


def test_a_zero_condition_cache_encodes_every_time() -> None:
    policy = tiny_policy()
    encoded = _counting_encodes(policy)
    rollout = FakeRollout(FakeReward(), policy=PolicySpec(condition_cache_mb=0), policy_factory=lambda: policy)
    for epoch in (0, 1):
        rollout.rollout(tasks(1), epoch=epoch)
    assert len(encoded) == 2 and len(rollout.conditions) == 0
