"""What crosses between the trainer and the rollout actors (docs/architecture.md, "What crosses each boundary").

Plain dataclasses of numpy arrays and CPU tensors: Ray ships them with its own serialiser, nothing
here is pickled by hand. Images are uint8 RGB (H, W, 3); latents are float32 CPU tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from workers.policies.base import Conditions
from workers.rewards import GroupRewards


@dataclass(frozen=True)
class EditTask:
    """One prompt to roll out: the instruction, its input image and the ground-truth target."""

    prompt_id: str
    prompt: str
    input_image: np.ndarray
    target_image: np.ndarray
    category: str | None = None


@dataclass
class RolloutGroup:
    """K samples of one prompt with everything the learner needs, and where they came from."""

    task: EditTask
    seeds: list[int]  # one per sample: sample_seed(run seed, epoch, prompt id, index)
    latents: torch.Tensor  # (K, N, C) clean packed latents x0
    conditions: Conditions  # opaque to the trainer: the policy family's own, B = 1, on the CPU
    rewards: GroupRewards
    # The learner's sampling-weights version the actor held (-1: evaluation's EMA weights); the
    # learner at version v updating on it is v - policy_version versions stale (run.pipeline: <= 1).
    policy_version: int
    images: np.ndarray | None = None  # (K, H, W, 3), kept only when asked (evaluation, pictures)

    def for_learner(self) -> TrainingGroup:
        """What the learner needs of this group: no images, no rewards (those became weights)."""
        return TrainingGroup(self.task.prompt_id, self.seeds, self.latents, self.conditions, self.policy_version)


@dataclass(frozen=True)
class TrainingGroup:
    """The learner's view of a group: clean latents, the prompt's conditions, and the ids to trace them."""

    prompt_id: str
    seeds: list[int]
    latents: torch.Tensor  # (K, N, C) clean packed latents x0
    conditions: Conditions  # opaque to the trainer: the policy family's own, B = 1, on the CPU
    policy_version: int


@dataclass(frozen=True)
class DroppedGroup:
    """A group whose rewards could not be had: counted and logged with its request ids, never scored."""

    prompt_id: str
    reason: str
    request_ids: dict[str, str]


@dataclass
class RolloutBatch:
    """One actor's answer to `rollout`: scored groups, dropped groups and where the time went (s)."""

    groups: list[RolloutGroup] = field(default_factory=list)
    dropped: list[DroppedGroup] = field(default_factory=list)
    policy_version: int = 0  # what every group of this call was sampled with (known even if all dropped)
    sample_s: float = 0.0  # generating (encode, sample, decode)
    encode_s: float = 0.0  # the share of sample_s spent encoding conditions not in the actor's cache
    conditions_reused: int = 0  # groups whose conditions came from the cache (each saved one encode)
    reward_wait_s: float = 0.0  # waiting for rewards after the last group was generated
    total_s: float = 0.0
