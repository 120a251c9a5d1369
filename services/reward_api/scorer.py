"""The reward service's scorer: request checks, decoding off the event loop, micro-batched scoring.

Groups from concurrent requests are coalesced by one MicroBatcher into calls of
`MotionScorer.score_groups`, so the flow estimator sees large batches and the target-flow cache is
shared by every request.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from motionnft.contracts.motion import EditScore, GroupScores, MotionScoreRequest, MotionScoreResponse, MotionTerms
from motionnft.contracts.problems import FieldProblem
from motionnft.flow import FlowEstimator, build_flow_estimator
from motionnft.motion import MotionRewardParams
from motionnft.scoring import EditReward, MotionScorer, ScoringGroup, fit_within
from services.reward_api.settings import RewardApiSettings
from services.serving.batching import MicroBatcher, Overloaded
from services.serving.images import decode_named, limit_problem
from services.serving.metrics import LATENCY_BUCKETS, ServiceMetrics
from services.serving.problems import ProblemError

log = logging.getLogger(__name__)


def build_estimator(settings: RewardApiSettings) -> FlowEstimator:
    """The flow estimator the settings ask for (loads weights: call once, at startup)."""
    if settings.flow_backend == "dis":
        return build_flow_estimator(
            "dis", settings.device, preset=settings.dis_preset, num_threads=settings.flow_threads
        )
    return build_flow_estimator(
        settings.flow_backend,
        settings.device,
        checkpoint=settings.raft_checkpoint,
        allow_random_weights=settings.raft_allow_random_weights,
    )


class RewardScorer:
    """Loads the estimator once, then scores requests through a shared micro-batcher."""

    def __init__(self, settings: RewardApiSettings, metrics: ServiceMetrics) -> None:
        self.settings = settings
        self.params = MotionRewardParams()
        self.motion: MotionScorer | None = None
        self.batcher: MicroBatcher[ScoringGroup, list[EditReward]] | None = None
        ns, reg = metrics.namespace, metrics.registry
        self.cache_hits = Counter(
            "target_flow_cache_hits", "Target flows served from cache", namespace=ns, registry=reg
        )
        self.cache_misses = Counter("target_flow_cache_misses", "Target flows computed", namespace=ns, registry=reg)
        self.flow_seconds = Histogram(
            "flow_batch_seconds", "Seconds per flow-estimator call", buckets=LATENCY_BUCKETS, namespace=ns, registry=reg
        )
        self.flow_pairs = Counter("flow_pairs", "Image pairs through the flow estimator", namespace=ns, registry=reg)
        cache_bytes = Gauge("target_flow_cache_bytes", "Bytes held by cached target flows", namespace=ns, registry=reg)
        cache_bytes.set_function(lambda: self.motion.cache.bytes if self.motion else 0)
        cache_entries = Gauge("target_flow_cache_entries", "Target flows cached", namespace=ns, registry=reg)
        cache_entries.set_function(lambda: len(self.motion.cache) if self.motion else 0)
        limit = Gauge(
            "target_flow_cache_limit_bytes", "Byte budget of the target-flow cache", namespace=ns, registry=reg
        )
        limit.set(int(settings.cache_mb * 2**20))
        # Known before the batcher exists (it starts after the model loads): alerts see the limit at once.
        metrics.queue_limit_items.set(settings.max_queue)
        self.metrics = metrics

    @property
    def flow_backend(self) -> str:
        return self.motion.estimator.name if self.motion else self.settings.flow_backend

    def load(self) -> None:
        """Build the estimator and warm it up with one small pair (blocking; run off the event loop)."""
        estimator = build_estimator(self.settings)
        self.motion = MotionScorer(
            estimator,
            self.params,
            cache_bytes=int(self.settings.cache_mb * 2**20),
            max_side=self.settings.max_side,
            batch_size=self.settings.flow_batch_size,
            on_flow_batch=self._observe_flow,
        )
        rng = np.random.default_rng(0)
        warm = rng.integers(0, 256, size=(1, 64, 64, 3), dtype=np.uint8)
        estimator.estimate(warm, np.roll(warm, 2, axis=2))
        log.info("flow estimator %s ready on %s", estimator.name, estimator.device)

    def start(self) -> None:
        """Start the micro-batcher (after `load`, inside the event loop)."""
        self.batcher = MicroBatcher(
            self._score_batch,
            max_batch_cost=self.settings.max_batch,
            max_wait_s=self.settings.max_wait_ms / 1000,
            max_queue_cost=self.settings.max_queue,
            cost=lambda group: len(group.edits) + 1,
            metrics=self.metrics,
            name="motion-scorer",
        )
        self.batcher.start()

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()

    async def score(self, request: MotionScoreRequest) -> MotionScoreResponse:
        """Check limits, decode every image off the loop, score all groups concurrently."""
        self._check_limits(request)
        groups = await asyncio.to_thread(self._decode, request)
        assert self.batcher is not None
        try:
            results = await asyncio.gather(*(self.batcher.submit(group) for group in groups))
        except Overloaded as exc:
            raise ProblemError(
                503, "overloaded", "Scoring queue is full", str(exc),
                headers={"Retry-After": str(self.settings.retry_after_s)},
            ) from None  # fmt: skip
        return MotionScoreResponse(
            groups=[
                GroupScores(id=group.id, scores=[_to_wire(r) for r in rewards])
                for group, rewards in zip(groups, results, strict=True)
            ],
            flow_backend=self.flow_backend,
            reward_version=self.params.version,
        )

    def _check_limits(self, request: MotionScoreRequest) -> None:
        problems: list[FieldProblem] = []
        s = self.settings
        if not request.groups:
            problems.append(FieldProblem(loc="groups", msg="at least one group is required"))
        if len(request.groups) > s.max_groups:
            problems.append(FieldProblem(loc="groups", msg=f"{len(request.groups)} groups; at most {s.max_groups}"))
        for g, group in enumerate(request.groups):
            if not group.edits:
                problems.append(FieldProblem(loc=f"groups[{g}].edits", msg="at least one edit is required"))
            elif len(group.edits) > s.max_edits_per_group:
                msg = f"{len(group.edits)} edits; at most {s.max_edits_per_group}"
                problems.append(FieldProblem(loc=f"groups[{g}].edits", msg=msg))
        if problems:
            raise limit_problem(problems)

    def _decode(self, request: MotionScoreRequest) -> list[ScoringGroup]:
        named: list[tuple[str, str]] = []
        for g, wire in enumerate(request.groups):
            named += [(f"groups[{g}].source", wire.source), (f"groups[{g}].target", wire.target)]
            named += [(f"groups[{g}].edits[{k}]", edit) for k, edit in enumerate(wire.edits)]
        assert self.motion is not None
        # Shrunk to the scoring size as each is decoded: the request holds only what is scored.
        s = self.settings
        images = iter(decode_named(named, s.image_limits, max_request_pixels=s.max_request_pixels,
                                   fit=lambda image: fit_within(image, s.max_side)))  # fmt: skip
        groups = []
        for wire in request.groups:
            source, target = next(images), next(images)
            groups.append(ScoringGroup(source, target, [next(images) for _ in wire.edits], wire.id))
        return groups

    def _score_batch(self, groups: Sequence[ScoringGroup]) -> list[list[EditReward]]:
        assert self.motion is not None
        cache = self.motion.cache
        hits, misses = cache.hits, cache.misses
        results = self.motion.score_groups(groups)
        self.cache_hits.inc(cache.hits - hits)
        self.cache_misses.inc(cache.misses - misses)
        return results

    def _observe_flow(self, pairs: int, seconds: float) -> None:
        self.flow_seconds.observe(seconds)
        self.flow_pairs.inc(pairs)


def _to_wire(reward: EditReward) -> EditScore:
    return EditScore(
        reward=reward.reward,
        reward_continuous=reward.reward_continuous,
        terms=MotionTerms(**reward.terms),
        mas=reward.mas,
    )
