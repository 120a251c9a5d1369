"""Pipelined epochs (`run.pipeline`): an epoch's rollout in flight, which epochs send the next one
ahead, what a checkpoint keeps of one, and the versions every epoch's record names.

With pipelining, epoch e sends epoch e+1's rollout after its advantages (so the next prompts skip
what epoch e banned) and before its update; the rollout actors sample it with the weights they hold
(version v) while the learner updates on epoch e and moves its `old` to v + 1. Epoch e+1's batch
is then one version stale, and its update compares against the `old` that drew it
(`RunActors.old_that_sampled`). The last epoch sends nothing ahead.

A checkpoint taken while a rollout is in flight also keeps that rollout's sampling weights (the
learner only holds the newer `old`): the resumed run samples the epoch again with them, the same
seeds and prompts, so it continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from trainer.actors import RolloutInFlight, RunActors
    from trainer.config import RunConfig
    from workers.tasks import EditTask, RolloutBatch

# The checkpoint's learner-section key for the (version, weights) of the rollout in flight.
AHEAD_SAMPLING = "ahead_sampling"


@dataclass(frozen=True)
class Sampling:
    """One epoch's rollout, sent and not yet collected."""

    tasks: list[EditTask]
    cursor: int  # the data cursor once these prompts are taken: the run state's only once collected
    rollout: RolloutInFlight
    ahead: bool  # sampled during the previous epoch's update, with the weights from before it


def samples_ahead(run: RunConfig, epoch: int) -> bool:
    """Whether epoch `epoch` (0-based) sends the next epoch's rollout before its own update."""
    return run.pipeline and epoch + 1 < run.epochs


def versions(batches: list[RolloutBatch], learner_version: int, ahead: bool) -> dict[str, Any]:
    """An epoch's record of versions: what its batch was sampled with, the learner's sampling-weights
    version as it updates on it, the staleness (learner - oldest sample: 0 on-policy, <= 1 pipelined)."""
    sampled = sorted({b.policy_version for b in batches})
    staleness = learner_version - min(sampled) if sampled else 0
    return {"sampled_versions": sampled, "learner_version": learner_version, "staleness": staleness,
            "sampled_ahead": ahead}  # fmt: skip


def learner_section(actors: RunActors, in_flight: Sampling | None) -> dict[str, Any]:
    """A checkpoint's learner section: the learner's state, plus the sampling weights of `in_flight`
    when they are older than the learner's newest (a rollout sent ahead)."""
    state = actors.learner_state()
    if in_flight is not None and in_flight.rollout.version not in (None, actors.version):
        state[AHEAD_SAMPLING] = actors.weights(in_flight.rollout)
    return state
