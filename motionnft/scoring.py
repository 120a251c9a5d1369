"""The motion scorer used by the CLI and the reward service: decoded groups in, rewards out.

Conventions: images are uint8 RGB (H, W, 3); flows are float32 (2, H, W) in pixels, source to image,
on the estimator's device.

Per group (docs/method.md section 2): the source and target are resized to each edit's size as the
reference does (bilinear, align_corners=False, no antialias), the target flow V_g = F(I0, Ig) is
computed once and cached by content hash (it is the same for every sample of a prompt and every
epoch), every edit flow V_e = F(I0, Ie) goes through the estimator in batches, and
`motion_alignment` turns the pair of flows into the reward. The reference recomputes V_g for every
edit; caching it is where most of the speed-up comes from.

Rewards are computed at most `max_side` pixels on the long side (default 512, the size the reference
trains and scores at): every larger image is first shrunk to fit (`fit_within`, area interpolation,
aspect kept), then source and target are resized to the edit as above. Flows are normalised by the
image diagonal, so the reward barely depends on the size, while a 4096^2 edit would cost 64 times
as much as a 512^2 one.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from motionnft.caching import LRUCache
from motionnft.contracts.images import DecodedImage
from motionnft.flow import FlowEstimator
from motionnft.motion import MASParams, MotionReward, MotionRewardParams, motion_alignment, motion_alignment_score
from motionnft.resizing import shrink_to_fit

Size = tuple[int, int]  # (H, W) pixels
CacheKey = tuple[str, str, int, int]  # (source digest, target digest, H, W)
# Pixels per reward call on a CPU: 2 edits at 512x512 keep the float32 temporaries in cache.
CPU_REWARD_PIXELS = 2 * 512 * 512
DEFAULT_MAX_SIDE = 512


@dataclass(frozen=True)
class ScoringGroup:
    """One prompt's group, decoded: the input image, the target and K edits."""

    source: DecodedImage
    target: DecodedImage
    edits: Sequence[DecodedImage]
    id: str | None = None


@dataclass(frozen=True)
class EditReward:
    """One edit: six-level `reward`, `reward_continuous` in [0, 1], the terms, and MotionEdit-Bench's
    Motion Alignment Score `mas` in [0, 100] from the very same flows."""

    reward: float
    reward_continuous: float
    terms: dict[str, float]
    mas: float


@dataclass(frozen=True)
class GroupFlows:
    """Flows of one group: per edit, the target flow at that edit's size and the edit's own flow."""

    target: list[torch.Tensor]  # K x (2, H_k, W_k)
    edits: list[torch.Tensor]  # K x (2, H_k, W_k)


# Target flows keyed by content hash and size, shared by every request of a scorer.
TargetFlowCache = LRUCache[CacheKey, torch.Tensor]


def resize_like_reference(pixels: np.ndarray, size: Size) -> np.ndarray:
    """uint8 (H, W, 3) to uint8 (size[0], size[1], 3), bilinear without antialias as the reference does."""
    if pixels.shape[:2] == size:
        return pixels
    # Decoded images are read-only arrays; torch wants writable memory even for a read.
    writable = pixels if pixels.flags.writeable else pixels.copy()
    tensor = torch.from_numpy(writable).permute(2, 0, 1).unsqueeze(0).float()
    resized = F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)
    return resized[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def fit_within(image: DecodedImage, max_side: int) -> DecodedImage:
    """The image shrunk (area interpolation, aspect kept) so its long side is at most `max_side`.

    Returns `image` itself when it already fits, so applying it twice changes nothing.
    """
    pixels = shrink_to_fit(image.pixels, max_side)
    return image if pixels is image.pixels else replace(image, pixels=pixels)


def target_flow_bytes(key: CacheKey, flow: torch.Tensor) -> int:
    """What a cached target flow costs: its tensor bytes plus the key (~200 bytes)."""
    return flow.numel() * flow.element_size() + 200


class MotionScorer:
    """Scores groups of edits with one flow estimator, batching flows and caching target flows."""

    def __init__(
        self,
        estimator: FlowEstimator,
        params: MotionRewardParams = MotionRewardParams(),
        *,
        mas_params: MASParams = MASParams(),
        cache_bytes: int = 256 * 2**20,
        max_side: int = DEFAULT_MAX_SIDE,
        batch_size: int = 16,
        on_flow_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.estimator = estimator
        self.params = params
        self.mas_params = mas_params
        self.cache = TargetFlowCache(cache_bytes, target_flow_bytes)
        self.max_side = max_side
        self.batch_size = batch_size
        self.on_flow_batch = on_flow_batch  # (pairs, seconds) per estimator call, for metrics

    def score_groups(self, groups: Sequence[ScoringGroup]) -> list[list[EditReward]]:
        """One list of EditReward per group, one per edit, in order."""
        return [self.rewards(flows) for flows in self.compute_flows(groups)]

    def rewards(self, flows: GroupFlows) -> list[EditReward]:
        """Apply the reward to one group's flows (edits of different sizes are scored per size)."""
        by_size: dict[Size, list[int]] = defaultdict(list)
        for k, flow in enumerate(flows.edits):
            by_size[(flow.shape[-2], flow.shape[-1])].append(k)
        out: list[EditReward | None] = [None] * len(flows.edits)
        for (height, width), indices in by_size.items():
            for chunk in _chunks(indices, self._reward_chunk(height * width)):
                edits = torch.stack([flows.edits[k] for k in chunk])
                targets = torch.stack([flows.target[k] for k in chunk])
                result = motion_alignment(edits, targets, self.params)
                mas = motion_alignment_score(edits, targets, self.mas_params)
                for row, k in enumerate(chunk):
                    out[k] = _edit_reward(result, row, self.params.levels, float(mas[row]))
        return [r for r in out if r is not None]

    def _reward_chunk(self, pixels: int) -> int:
        """Edits per motion_alignment call: on a CPU, a working set past the cache (more than
        CPU_REWARD_PIXELS per call) runs about 3x slower per edit; a GPU takes the whole group."""
        if self.estimator.device.type != "cpu":
            return 1 << 30
        return max(1, CPU_REWARD_PIXELS // pixels)

    def compute_flows(self, groups: Sequence[ScoringGroup]) -> list[GroupFlows]:
        """Every target flow (from cache where possible) and every edit flow, batched across groups."""
        resized: dict[tuple[int, Size], tuple[np.ndarray, np.ndarray]] = {}
        target_keys: dict[CacheKey, tuple[np.ndarray, np.ndarray]] = {}
        target_flows: dict[CacheKey, torch.Tensor] = {}
        edit_pairs: list[tuple[np.ndarray, np.ndarray]] = []
        groups = [self.fit_group(group) for group in groups]
        for g, group in enumerate(groups):
            for edit in group.edits:
                size = edit.size
                if (g, size) not in resized:
                    resized[(g, size)] = (
                        resize_like_reference(group.source.pixels, size),
                        resize_like_reference(group.target.pixels, size),
                    )
                source, target = resized[(g, size)]
                key = (group.source.digest, group.target.digest, *size)
                if key not in target_flows and key not in target_keys:
                    cached = self.cache.get(key)
                    if cached is None:
                        target_keys[key] = (source, target)
                    else:
                        target_flows[key] = cached
                edit_pairs.append((source, edit.pixels))
        fresh = self.estimate_pairs(list(target_keys.values()))
        for key, flow in zip(target_keys, fresh, strict=True):
            self.cache.put(key, flow)
            target_flows[key] = flow
        edit_flows = iter(self.estimate_pairs(edit_pairs))
        return [
            GroupFlows(
                target=[target_flows[(grp.source.digest, grp.target.digest, *e.size)] for e in grp.edits],
                edits=[next(edit_flows) for _ in grp.edits],
            )
            for grp in groups
        ]

    def fit_group(self, group: ScoringGroup) -> ScoringGroup:
        """Every image of the group shrunk to fit `max_side` (a no-op for images that fit)."""
        fit = self.max_side
        return replace(group, source=fit_within(group.source, fit), target=fit_within(group.target, fit),
                       edits=[fit_within(edit, fit) for edit in group.edits])  # fmt: skip

    def estimate_pairs(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[torch.Tensor]:
        """Flows (2, H, W) for (source, image) uint8 pairs; same-size pairs share estimator batches."""
        by_size: dict[Size, list[int]] = defaultdict(list)
        for i, (source, _) in enumerate(pairs):
            by_size[source.shape[:2]].append(i)
        flows: list[torch.Tensor | None] = [None] * len(pairs)
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                started = time.perf_counter()
                batch = self.estimator.estimate(
                    np.stack([pairs[i][0] for i in chunk]), np.stack([pairs[i][1] for i in chunk])
                )
                if self.on_flow_batch is not None:
                    self.on_flow_batch(len(chunk), time.perf_counter() - started)
                for row, i in enumerate(chunk):
                    flows[i] = batch[row]
        return [f for f in flows if f is not None]


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _edit_reward(result: MotionReward, row: int, levels: int, mas: float) -> EditReward:
    # The six-level reward is k / (levels - 1) exactly: rebuild it in float64 so 0.8 is 0.8 on the wire.
    steps = levels - 1
    return EditReward(
        reward=round(float(result.reward[row]) * steps) / steps,
        reward_continuous=float(result.reward_continuous[row]),
        terms=result.terms(row),
        mas=mas,
    )
