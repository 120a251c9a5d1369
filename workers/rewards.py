"""Rewards of one rollout group, from the two services over HTTP (the rollout actor's only I/O).

One request per group to each service, both at once: the reward API scores the K edits' motion
against the target, the judge rates them under the `edit` rubric. Whatever cannot be had after the
clients' bounded retries (a service down, a 4xx, a judge item with an error) makes the whole group
unavailable: the caller drops and counts it. A reward that could not be had never becomes a number.

Images are uint8 RGB (H, W, 3); rewards are floats in [0, 1].
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from motionnft.contracts.client import JudgeClient, RewardClient
from motionnft.contracts.images import encode_image_bytes
from motionnft.contracts.judge import JudgeGroup, JudgeScoreRequest
from motionnft.contracts.motion import MotionGroup, MotionScoreRequest
from motionnft.contracts.problems import ServiceError


@dataclass(frozen=True)
class GroupRewards:
    """Per sample of a group: the six-level motion reward, its continuous value, the judge score, and
    MotionEdit-Bench's MAS (0-100) from the reward service's own flows (for evaluation)."""

    motion: list[float]
    motion_continuous: list[float]
    judge: list[float]
    mas: list[float]
    request_ids: dict[str, str] = field(default_factory=dict)


class RewardUnavailable(Exception):
    """The group's rewards could not be had; it must be dropped, not scored."""

    def __init__(self, group_id: str, reason: str, request_ids: dict[str, str]) -> None:
        super().__init__(f"group {group_id}: {reason} (requests {request_ids})")
        self.group_id, self.reason, self.request_ids = group_id, reason, request_ids


def _b64(image: np.ndarray) -> str:
    # PNG keeps the pixels exact (the flow reward must see what the policy drew); level 1 because a
    # 512x512 image at the default level takes ~90 ms and a group has K + 2 of them.
    return base64.b64encode(encode_image_bytes(image, "PNG", png_compress_level=1)).decode("ascii")


async def fetch_group_rewards(
    reward: RewardClient,
    judge: JudgeClient,
    *,
    group_id: str,
    instruction: str,
    source: np.ndarray,
    target: np.ndarray,
    edits: Sequence[np.ndarray],
    rubric: str = "edit",
) -> GroupRewards:
    """Both rewards for one group's edits; raises RewardUnavailable instead of inventing a value."""
    # In a thread: encoding on the event loop would stall every other group's requests meanwhile.
    source_b64, target_b64, *edits_b64 = await asyncio.to_thread(lambda: [_b64(i) for i in (source, target, *edits)])
    ids = {"reward": f"{group_id}-motion", "judge": f"{group_id}-judge"}
    motion_request = MotionScoreRequest(
        groups=[MotionGroup(id=group_id, source=source_b64, target=target_b64, edits=edits_b64)]
    )
    judge_request = JudgeScoreRequest(
        groups=[
            JudgeGroup(id=group_id, instruction=instruction, source=source_b64, target=target_b64, edits=edits_b64)
        ],
        rubrics=[rubric],
    )
    try:
        motion, judged = await asyncio.gather(
            reward.score(motion_request, request_id=ids["reward"]),
            judge.score(judge_request, request_id=ids["judge"]),
        )
    except ServiceError as exc:
        raise RewardUnavailable(group_id, str(exc), ids) from exc
    scores = [entry[rubric] for entry in judged.groups[0].scores]
    failed = [s.error for s in scores if s.error is not None]
    if failed:
        raise RewardUnavailable(group_id, f"judge failed for {len(failed)} edits: {failed[0]}", ids)
    motion_scores = motion.groups[0].scores
    return GroupRewards(
        motion=[s.reward for s in motion_scores],
        motion_continuous=[s.reward_continuous for s in motion_scores],
        mas=[s.mas for s in motion_scores],
        judge=[float(s.score) for s in scores if s.score is not None],
        request_ids=ids,
    )
