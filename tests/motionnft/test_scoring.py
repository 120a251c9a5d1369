"""MotionScorer on real photographs with known local motion, the target-flow cache, and resizing."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest
import torch

from motionnft.contracts.images import DecodedImage, decode_image_bytes, encode_image_bytes
from motionnft.flow import build_flow_estimator
from motionnft.motion import motion_alignment
from motionnft.scoring import MotionScorer, ScoringGroup, TargetFlowCache, resize_like_reference, target_flow_bytes
from tests.motionnft.flow.known_motion import KnownMotion, gaussian_bump

EDITS = ("exact", "jpeg", "half", "none", "opposite")


def decoded(pixels: np.ndarray) -> DecodedImage:
    return DecodedImage(pixels, hashlib.blake2b(pixels.tobytes(), digest_size=16).hexdigest())


def ranking_group(photo: str, amplitude: tuple[float, float], size: int = 256) -> ScoringGroup:
    full = gaussian_bump(amplitude=amplitude, size=size, photo=photo)  # type: ignore[arg-type]
    half = gaussian_bump(amplitude=(amplitude[0] / 2, amplitude[1] / 2), size=size, photo=photo)  # type: ignore[arg-type]
    opposite = gaussian_bump(amplitude=(-amplitude[0], -amplitude[1]), size=size, photo=photo)  # type: ignore[arg-type]
    jpeg = decode_image_bytes(encode_image_bytes(full.target, "JPEG", quality=90)).pixels
    edits = {"exact": full.target, "jpeg": jpeg, "half": half.target, "none": full.source, "opposite": opposite.target}
    return ScoringGroup(decoded(full.source), decoded(full.target), [decoded(edits[name]) for name in EDITS])


@pytest.fixture(scope="module")
def scorer() -> MotionScorer:
    return MotionScorer(build_flow_estimator("dis"))  # the CPU default


@pytest.mark.parametrize(
    ("photo", "amplitude"), [("astronaut", (8.0, -6.0)), ("coffee", (-7.0, 5.0)), ("astronaut", (0.0, 10.0))]
)
def test_cpu_default_ranks_edits_on_real_photographs(scorer: MotionScorer, photo: str, amplitude) -> None:
    rewards = scorer.score_groups([ranking_group(photo, amplitude)])[0]
    r = {name: reward.reward_continuous for name, reward in zip(EDITS, rewards, strict=True)}
    assert r["exact"] >= r["jpeg"] > r["half"] > r["none"] > r["opposite"], r
    assert r["exact"] - r["jpeg"] < 0.05, r  # a JPEG copy scores nearly as high
    assert rewards[0].reward >= rewards[2].reward >= rewards[3].reward >= rewards[4].reward


def test_batched_scores_equal_one_at_a_time(scorer: MotionScorer) -> None:
    group = ranking_group("coffee", (6.0, 4.0), size=128)
    together = scorer.score_groups([group, group])
    alone = [scorer.score_groups([ScoringGroup(group.source, group.target, [e])])[0][0] for e in group.edits]
    assert together[0] == together[1]
    for a, b in zip(together[0], alone, strict=True):
        assert a.reward == b.reward
        assert a.reward_continuous == pytest.approx(b.reward_continuous, abs=1e-6)


def test_target_flow_is_computed_once_per_group(scorer: MotionScorer) -> None:
    calls: list[int] = []
    counting = MotionScorer(scorer.estimator, on_flow_batch=lambda pairs, _: calls.append(pairs), batch_size=4)
    group = ranking_group("astronaut", (5.0, 5.0), size=96)
    counting.score_groups([group])
    assert sum(calls) == 1 + len(group.edits)  # reference loop: 2 per edit
    assert max(calls) <= 4  # batch size respected
    calls.clear()
    counting.score_groups([group])
    assert sum(calls) == len(group.edits)  # target flow from the cache
    assert counting.cache.hits == 1 and counting.cache.misses == 1


def test_edits_of_another_size_get_resized_source_and_target(scorer: MotionScorer) -> None:
    group = ranking_group("coffee", (6.0, -4.0), size=128)
    small = resize_like_reference(group.edits[0].pixels, (96, 96))
    mixed = ScoringGroup(group.source, group.target, [group.edits[0], decoded(small)])
    rewards = scorer.score_groups([mixed])[0]
    assert rewards[0].reward_continuous > 0.8 and rewards[1].reward_continuous > 0.7
    flows = scorer.compute_flows([mixed])[0]
    assert flows.edits[1].shape == (2, 96, 96) and flows.target[1].shape == (2, 96, 96)


def test_scorer_matches_motion_alignment_on_its_own_flows(scorer: MotionScorer) -> None:
    group = ranking_group("astronaut", (4.0, 3.0), size=96)
    flows = scorer.compute_flows([group])[0]
    direct = motion_alignment(torch.stack(flows.edits), torch.stack(flows.target))
    rewards = scorer.rewards(flows)
    assert [r.reward_continuous for r in rewards] == pytest.approx(direct.reward_continuous.tolist(), abs=1e-7)
    assert [r.reward for r in rewards] == pytest.approx(direct.reward.tolist(), abs=1e-7)
    assert {r.reward for r in rewards} <= {0.0, 0.2, 0.4, 0.6, 0.8, 1.0}  # exact decimals on the wire


def test_resize_like_reference_matches_torch_bilinear() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert resize_like_reference(image, (40, 60)) is image
    out = resize_like_reference(image, (20, 30))
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(image).permute(2, 0, 1)[None].float(), size=(20, 30), mode="bilinear", align_corners=False
    )[0].permute(1, 2, 0)
    assert np.abs(out.astype(float) - expected.numpy()).max() <= 0.5


def test_cache_is_bounded_lru_by_bytes() -> None:
    flows = [torch.full((2, 4, 4), float(i)) for i in range(3)]
    entry = target_flow_bytes(("0", "t", 4, 4), flows[0])  # 128 tensor bytes + the key
    cache = TargetFlowCache(2 * entry, target_flow_bytes)
    for i, flow in enumerate(flows):
        cache.put((str(i), "t", 4, 4), flow)
    assert len(cache) == 2 and cache.bytes == 2 * entry
    assert cache.get(("0", "t", 4, 4)) is None  # evicted first
    assert cache.get(("2", "t", 4, 4)) is flows[2]
    cache.get(("1", "t", 4, 4))
    cache.put(("3", "t", 4, 4), flows[0])
    assert cache.get(("2", "t", 4, 4)) is None  # least recently used went
    assert (cache.hits, cache.misses) == (2, 2)
    cache.put(("big", "t", 64, 64), torch.zeros(2, 64, 64))  # larger than the whole budget: not kept
    assert len(cache) == 2 and cache.bytes == 2 * entry
    disabled = TargetFlowCache(0, target_flow_bytes)
    disabled.put(("x", "y", 1, 1), flows[0])  # size 0 disables caching
    assert len(disabled) == 0


def test_large_images_are_scored_at_the_maximum_side() -> None:
    """A 1024^2 group scores like the same group shrunk to 512^2 first, and its flows are 512^2."""
    motion = gaussian_bump(size=256)
    big = [cv2.resize(a, (1024, 1024), interpolation=cv2.INTER_CUBIC) for a in (motion.source, motion.target)]
    group = ScoringGroup(decoded(big[0]), decoded(big[1]), [decoded(big[1]), decoded(big[0])])
    scorer = MotionScorer(build_flow_estimator("dis", "cpu"), max_side=512)
    flows = scorer.compute_flows([group])[0]
    assert tuple(flows.edits[0].shape) == tuple(flows.target[0].shape) == (2, 512, 512)
    small = scorer.fit_group(group)
    assert small.source.size == (512, 512) and scorer.fit_group(small) == small  # idempotent
    assert scorer.score_groups([group]) == scorer.score_groups([small])
    assert scorer.score_groups([group])[0][0].reward > scorer.score_groups([group])[0][1].reward


def test_known_motion_fixture_is_consistent() -> None:
    motion: KnownMotion = gaussian_bump(size=64)
    assert motion.source.shape == motion.target.shape == (64, 64, 3)
    assert motion.flow.shape == (2, 64, 64)
