"""Evaluation's MAS is the reward service's MAS: same flows as the training reward, whatever the backend."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch

from motionnft.contracts.client import JudgeClient, RewardClient
from motionnft.contracts.images import DecodedImage, encode_image
from motionnft.contracts.motion import MotionGroup, MotionScoreRequest
from motionnft.flow import build_flow_estimator
from motionnft.motion import motion_alignment_score
from motionnft.scoring import MotionScorer, ScoringGroup
from services.mllm_judge.app import create_app as create_judge
from services.mllm_judge.settings import MllmJudgeSettings
from services.reward_api.app import create_app as create_reward
from services.reward_api.settings import RewardApiSettings
from tests.motionnft.flow.known_motion import gaussian_bump
from tests.services.harness import in_thread
from trainer.evaluation import evaluate
from workers.rewards import fetch_group_rewards
from workers.tasks import EditTask, RolloutGroup


@pytest.fixture(scope="module")
def urls() -> Iterator[tuple[str, str]]:
    reward = create_reward(RewardApiSettings(max_wait_ms=1.0, flow_threads=1))
    with in_thread(reward) as reward_url, in_thread(create_judge(MllmJudgeSettings())) as judge_url:
        yield reward_url, judge_url


class ServiceScoredActors:
    """Stands in for RunActors.sample_with: the 'edit' of each task is half its motion, scored for real."""

    def __init__(self, urls: tuple[str, str]) -> None:
        self.urls = urls

    def sample_with(
        self, weights: Any, tasks: list[EditTask], epoch: int, samples: int | None = None
    ) -> list[RolloutGroup]:
        assert samples == 1  # one edit per pair, as the bench scores it
        return asyncio.run(self._score(tasks))

    async def _score(self, tasks: list[EditTask]) -> list[RolloutGroup]:
        groups = []
        async with RewardClient(self.urls[0]) as reward, JudgeClient(self.urls[1]) as judge:
            for task in tasks:
                edit = half_motion(task.prompt_id)
                rewards = await fetch_group_rewards(
                    reward, judge, group_id=task.prompt_id, instruction=task.prompt,
                    source=task.input_image, target=task.target_image, edits=[edit],
                )  # fmt: skip
                groups.append(RolloutGroup(task, [0], torch.zeros(1, 4, 4), None, rewards, 0, edit[None]))  # type: ignore[arg-type]
        return groups


AMPLITUDES = {"a": (6.0, -4.0), "b": (-5.0, 3.0)}


def half_motion(prompt_id: str) -> np.ndarray:
    x, y = AMPLITUDES[prompt_id]
    return gaussian_bump(amplitude=(x / 2, y / 2), size=96, margin=8).target


def test_evaluation_mas_equals_the_service_mas_on_the_same_images(urls: tuple[str, str]) -> None:
    scenes = {pid: gaussian_bump(amplitude=amp, size=96, margin=8) for pid, amp in AMPLITUDES.items()}
    tasks = [EditTask(pid, "Move the bump", s.source, s.target) for pid, s in scenes.items()]
    result = evaluate(ServiceScoredActors(urls), tasks, weights=None)  # type: ignore[arg-type]
    by_id = {item["id"]: item["mas"] for item in result["items"]}

    async def service_mas() -> dict[str, float]:
        async with RewardClient(urls[0]) as client:
            groups = [MotionGroup(id=pid, source=encode_image(s.source), target=encode_image(s.target),
                                  edits=[encode_image(half_motion(pid))]) for pid, s in scenes.items()]  # fmt: skip
            answer = await client.score(MotionScoreRequest(groups=groups))
        return {g.id or "": g.scores[0].mas for g in answer.groups}

    assert by_id == asyncio.run(service_mas())
    # ...and that is MotionEdit-Bench's MAS of the flows the reward itself uses (DIS, the service default).
    scorer = MotionScorer(build_flow_estimator("dis", num_threads=1))
    for pid, scene in scenes.items():
        group = ScoringGroup(_decoded(scene.source), _decoded(scene.target), [_decoded(half_motion(pid))])
        flows = scorer.compute_flows([group])[0]
        expected = float(motion_alignment_score(flows.edits[0][None], flows.target[0][None])[0])
        assert by_id[pid] == pytest.approx(expected, abs=1e-4)
    assert 0 < result["mas"] < 100


def _decoded(pixels: np.ndarray) -> DecodedImage:
    return DecodedImage(pixels, str(hash(pixels.tobytes())))
