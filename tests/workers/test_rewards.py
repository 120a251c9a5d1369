"""Group rewards from the two real services on loopback; a failure drops the group, never scores 0."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from motionnft.contracts.client import JudgeClient, RetryPolicy, RewardClient
from services.mllm_judge.app import create_app as create_judge
from services.mllm_judge.settings import MllmJudgeSettings
from services.reward_api.app import create_app as create_reward
from services.reward_api.settings import RewardApiSettings
from tests.motionnft.flow.known_motion import gaussian_bump
from tests.services.harness import free_port, in_thread
from workers.rewards import RewardUnavailable, fetch_group_rewards

pytestmark = pytest.mark.anyio
FAST = RetryPolicy(max_attempts=2, backoff_base_s=0.01, backoff_max_s=0.02)


@pytest.fixture(scope="module")
def urls() -> Iterator[tuple[str, str]]:
    reward = create_reward(RewardApiSettings(max_wait_ms=1.0, flow_threads=1))
    judge = create_judge(MllmJudgeSettings())
    with in_thread(reward) as reward_url, in_thread(judge) as judge_url:
        yield reward_url, judge_url


async def test_both_rewards_for_a_group(urls: tuple[str, str]) -> None:
    scene = gaussian_bump(amplitude=(5.0, -3.0), size=64, margin=8)
    edits = [scene.target, scene.source]
    async with RewardClient(urls[0]) as reward, JudgeClient(urls[1]) as judge:
        rewards = await fetch_group_rewards(
            reward, judge, group_id="e0-p1", instruction="Move the middle up and right",
            source=scene.source, target=scene.target, edits=edits,
        )  # fmt: skip
    assert len(rewards.motion) == len(rewards.judge) == 2
    assert rewards.motion_continuous[0] > rewards.motion_continuous[1]
    assert rewards.judge[0] == pytest.approx(1.0) and rewards.judge[1] < 1.0
    assert rewards.request_ids == {"reward": "e0-p1-motion", "judge": "e0-p1-judge"}


async def test_a_service_that_is_down_makes_the_group_unavailable(urls: tuple[str, str]) -> None:
    scene = gaussian_bump(size=64, margin=8)
    dead = f"http://127.0.0.1:{free_port()}"
    async with RewardClient(urls[0], retry=FAST) as reward, JudgeClient(dead, retry=FAST, deadline_s=2) as judge:
        with pytest.raises(RewardUnavailable) as caught:
            await fetch_group_rewards(
                reward, judge, group_id="g", instruction="Move", source=scene.source, target=scene.target,
                edits=[scene.target],
            )  # fmt: skip
    assert caught.value.group_id == "g" and "g-judge" in str(caught.value)


async def test_a_rejected_request_is_unavailable_not_zero(urls: tuple[str, str]) -> None:
    tiny = np.zeros((8, 8, 3), dtype=np.uint8)  # below the services' minimum side: a 422
    async with RewardClient(urls[0], retry=FAST) as reward, JudgeClient(urls[1], retry=FAST) as judge:
        with pytest.raises(RewardUnavailable):
            await fetch_group_rewards(
                reward, judge, group_id="g", instruction="Move", source=tiny, target=tiny, edits=[tiny],
            )  # fmt: skip
