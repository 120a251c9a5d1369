"""The Ray side of a run: where its actors run, and what crosses to them.

`RunActors` hides the Ray calls behind named operations so `trainer.loop` reads as the method does:
start_rollout and collect (apart, so a rollout can run during an update), train_epoch, sync.
Weights never detour through the driver: the learner's new sampling adapter (and the EMA weights
evaluation samples with) are objects in Ray's store, handed to every rollout actor by reference;
only checkpoints bring the learner's state to the driver. What goes to the learner is what it
trains on (latents, conditions, weights, ids), not the groups' images.

Every wait is bounded (`ray.placement_timeout_s` for the actors to be placed and loaded,
`ray.call_timeout_s` for each call), and an actor that dies or stops answering becomes `ActorLost`,
naming the role, the node and the cause: a lost node ends the run with a clear error, never a hang.

The learners are `ray.num_learners` data-parallel ranks (`trainer.learner_group.LearnerGroup`: every
call goes to all of them, and a lost rank is named); rank 0's weights are everyone's.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import ray
import torch
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.metrics import Counter

from trainer.config import TrainConfig
from trainer.distributed import RanksDiverged
from trainer.learner import Learner
from trainer.learner_group import LearnerGroup
from trainer.placement import ActorLost, Placement, first_line, plain_resources, ray_ask, ray_options
from workers.local_ray import local_ray_environment
from workers.rollout import Rollout
from workers.tasks import EditTask, RolloutBatch, RolloutGroup

# (version, weights) of a sampling adapter, in Ray's object store.
WeightsRef = ray.ObjectRef
__all__ = ["ActorLost", "Placement", "RolloutInFlight", "RunActors", "start_actors"]


@dataclass(frozen=True)
class RolloutInFlight:
    """A rollout sent to the actors and not yet collected (`RunActors.start_rollout`)."""

    epoch: int
    hand_overs: list[ray.ObjectRef]  # set_sampling_weights calls sent just before it ([]: already held)
    calls: list[ray.ObjectRef]  # one rollout call per actor that got tasks
    weights: WeightsRef  # what it samples with
    version: int | None  # their learner version (None: not the learner's, e.g. evaluation's EMA)


class RunActors:
    """The rollout actors and the learner actors (ranks 0..N-1) of one run."""

    def __init__(
        self, rollouts: list[Any], learners: list[Any], *, call_timeout_s: float = 3600.0,
        collective_timeout_s: float = 600.0,
    ) -> None:  # fmt: skip
        self.rollouts = rollouts
        self.learners = LearnerGroup(learners, call_timeout_s=call_timeout_s, collective_timeout_s=collective_timeout_s)
        self.call_timeout_s = call_timeout_s
        self.placements: list[Placement] = []
        # The learner's newest sampling weights (what a training rollout samples with) and their
        # version; `_held`: the version the rollout actors hold once every call sent to them has run
        # (Ray runs one call at a time per actor, in the order sent; None: not a learner version).
        self.sampling: WeightsRef | None = None
        self.version = 0
        self._held: int | None = None
        self._groups = Counter("motionnft_groups", "Rollout groups sampled (each K edits of one prompt)")
        self._dropped = Counter("motionnft_groups_dropped", "Rollout groups that lost their rewards")

    def start_rollout(
        self, tasks: list[EditTask], epoch: int, keep_images: bool = False, *,
        weights: WeightsRef | None = None, version: int | None = None, samples: int | None = None,
    ) -> RolloutInFlight:  # fmt: skip
        """Send `tasks`, spread round-robin over the rollout actors, and return at once.

        Each task gets `samples` edits (default: the run's samples per prompt).

        They sample with `weights` (of learner version `version`; None: not the learner's, e.g. the
        EMA), by default with the learner's newest sampling weights. Weights the actors do not hold
        yet are sent first, so they reach each actor after any rollout already in flight there
        (which keeps the weights it started with).
        """
        if weights is None:
            if self.sampling is None:
                raise RuntimeError("no sampling weights yet: start_actors hands the learner's over first")
            weights, version = self.sampling, self.version
        handed = None if version is not None and self._held == version else weights
        hand_overs = [a.set_sampling_weights.remote(handed) for a in self.rollouts] if handed is not None else []
        self._held = version
        chunks = [tasks[i :: len(self.rollouts)] for i in range(len(self.rollouts))]
        calls = [a.rollout.remote(c, epoch, keep_images, samples) for a, c in zip(self.rollouts, chunks, strict=True)
                 if c]  # fmt: skip
        return RolloutInFlight(epoch, hand_overs, calls, weights, version)

    def collect(self, rollout: RolloutInFlight) -> list[RolloutBatch]:
        """A sent rollout's batches, in actor order, waiting at most `ray.call_timeout_s` from now."""
        answers = self._get([*rollout.hand_overs, *rollout.calls], "rollout", f"rollout of epoch {rollout.epoch + 1}")
        batches: list[RolloutBatch] = list(answers[len(rollout.hand_overs) :])
        wrong = {b.policy_version for b in batches} - {rollout.version}
        if rollout.version is not None and wrong:  # the learner would compare against the wrong `old`
            raise RuntimeError(f"epoch {rollout.epoch + 1} was sampled with version(s) {sorted(wrong)}, "
                               f"not {rollout.version}")  # fmt: skip
        return batches

    def weights(self, rollout: RolloutInFlight) -> tuple[int, dict[str, torch.Tensor]]:
        """The (version, weights) `rollout` samples with, to the driver (for a checkpoint)."""
        version, state = self._get(rollout.weights, "learner", "sampling weights of the rollout in flight")
        return int(version), state

    def put(self, sampling: tuple[int, dict[str, torch.Tensor]]) -> WeightsRef:
        """(version, weights) from a checkpoint, into Ray's store for `start_rollout`."""
        return ray.put(sampling)

    @contextmanager
    def old_that_sampled(self, rollout: RolloutInFlight) -> Iterator[int]:
        """Inside, every learner's `old` adapter holds the weights `rollout` was sampled with; yields
        their version.

        Only a rollout sampled ahead (`run.pipeline`) has weights older than the learner's newest
        `old`; those are loaded for its update and the newest put back after (before the next
        `sync` blends it), so the loss's old prediction is that of the policy that drew the samples.
        """
        newest = self.sampling
        if rollout.version is None or rollout.version == self.version or newest is None:
            yield self.version
            return
        loaded = self.learners.call("load_old", rollout.weights, what="loading the `old` that sampled")
        if set(loaded) != {rollout.version}:  # the weights carry their own version: a wrong object is caught
            raise RuntimeError(f"loaded `old` version(s) {loaded} for a batch sampled with {rollout.version}")
        try:
            yield rollout.version
        except ActorLost as lost:
            if lost.learner_intact:  # a survivor rolled back to its pre-update state, the older `old` in it
                try:
                    self.learners.call_lead("load_old", newest, what="restoring the newest `old`")
                except ActorLost:
                    lost.learner_intact = False
            raise
        self.learners.call("load_old", newest, what="restoring the newest `old`")

    @property
    def learner(self) -> Any:
        """The learner whose weights the rollouts, evaluation and checkpoints take (rank 0)."""
        return self.learners.lead_handle

    def train_epoch(
        self, groups: list[RolloutGroup], weights: torch.Tensor, valid: torch.Tensor, epoch: int
    ) -> dict[str, float]:
        """Every learner trains its share of the epoch's `groups`; the metrics (the same on every rank)."""
        if not groups:
            return {}
        training = ray.put([g.for_learner() for g in groups])  # once in the store, read by every rank
        answers = self.learners.call("train_epoch", training, weights, valid, epoch=epoch, what="update",
                                     roll_back=True)  # fmt: skip
        return dict(answers[self.learners.lead])

    def sync(self, *, hand_over: bool = True) -> None:
        """Every learner's `old` update; the new sampling weights go to every actor by reference
        (with `hand_over` False, just before the next rollout: one in flight is not waited for)."""
        versions = self.learners.call("advance_old", what="old update", roll_back=True)
        if len(set(versions)) != 1:
            raise RanksDiverged(f"the learners disagree on the sampling-weights version: {versions}")
        newest = self.learner.sampling_weights.remote()
        if hand_over:
            self._broadcast(newest)
        else:
            self.sampling, self.version = newest, int(versions[0])

    def ema_weights(self) -> WeightsRef:
        """(version -1, the EMA of the trained adapter), left in the object store."""
        return self.learner.ema_sampling.remote()

    def sample_with(
        self, weights: WeightsRef, tasks: list[EditTask], epoch: int, samples: int | None = None
    ) -> list[RolloutGroup]:
        """Roll out `tasks` (`samples` edits each, default the run's) with `weights` as the sampling
        adapter (after any rollout in flight), then restore the learner's `old`."""
        try:
            rollout = self.start_rollout(tasks, epoch, keep_images=True, weights=weights, samples=samples)
            batches = self.collect(rollout)
        finally:
            self._broadcast(self.learner.sampling_weights.remote())
        order = {t.prompt_id: i for i, t in enumerate(tasks)}
        return sorted((g for b in batches for g in b.groups), key=lambda g: order[g.task.prompt_id])

    def learner_state(self) -> dict[str, Any]:
        """Everything a checkpoint holds of the learner (to the driver: it writes the file); rank 0's."""
        return dict(self.learners.call_lead("state_dict", what="state for a checkpoint"))

    def load_learner_state(self, state: dict[str, Any]) -> None:
        """Every learner loads `state` (one copy in the store); then the rollouts take its `old`."""
        self.learners.call("load_state_dict", ray.put(state), what="loading a checkpoint")
        self._broadcast(self.learner.sampling_weights.remote())

    def count_groups(self, sampled: int, dropped: int) -> None:
        """Add an epoch's groups to the run's Ray metrics (scraped from each node's metrics agent)."""
        self._groups.inc(sampled + dropped)
        if dropped:
            self._dropped.inc(dropped)

    def close(self) -> None:
        """Stop the run's actors (Ray itself stays up for whoever started it)."""
        for actor in self.rollouts:
            ray.kill(actor)
        self.learners.kill()

    def _broadcast(self, weights: WeightsRef) -> int:
        """Every rollout actor takes `weights` now; their version. A learner version (>= 0, not the
        EMA's -1) becomes the newest, what training rollouts sample with."""
        # A top-level ObjectRef argument reaches each actor as its value, fetched from the store.
        versions = self._get([a.set_sampling_weights.remote(weights) for a in self.rollouts], "rollout", "weight sync")
        version = int(versions[0])
        if version >= 0:
            self.sampling, self.version = weights, version
        self._held = version if version >= 0 else None
        return version

    def _get(self, refs: Any, role: str, what: str, timeout_s: float | None = None) -> Any:
        """`ray.get` bounded in time; a dead or silent actor becomes `ActorLost` naming where it ran."""
        timeout_s = self.call_timeout_s if timeout_s is None else timeout_s
        try:
            return ray.get(refs, timeout=timeout_s)
        except GetTimeoutError as exc:
            raise ActorLost(role, f"{role} actor(s) did not finish the {what} within {timeout_s:g} s") from exc
        except RayActorError as exc:
            where = self._where(getattr(exc, "actor_id", None))
            raise ActorLost(role, f"a {role} actor{where} died during the {what}: {first_line(exc)}") from exc

    def _where(self, actor_id: str | None) -> str:
        """' (rollout 1 on node 127.0.0.3 ab12...)' for a placed actor's id, else ''."""
        for placement in self.placements:
            actor = (self.learners.handles if placement.role == "learner" else self.rollouts)[placement.index]
            if actor_id is not None and actor._actor_id.hex() == actor_id:
                return f" ({placement.where()})"
        return ""


def start_actors(config: TrainConfig) -> RunActors:
    """A local Ray (unless `ray.address` names a cluster), the rollout actors and the learners, placed
    (and, for `ray.num_learners` > 1, joined in one process group).

    Every actor builds its own policy from `config.policy`; the rollout actors then take the
    learner's sampling adapter by reference, so all start from the same weights. Returns once every
    actor is placed and loaded, or raises `ActorLost` after `ray.placement_timeout_s`, naming the
    resources no node offered.
    """
    local_ray_environment()
    rc = config.ray
    if not ray.is_initialized():
        # A local Ray on loopback (see local_ray_environment); a cluster address brings its own node address.
        node_ip = "127.0.0.1" if rc.address is None else None
        ray.init(address=rc.address, num_cpus=rc.num_cpus, include_dashboard=False, _node_ip_address=node_ip)
    size, seed = config.data.size, config.run.seed
    asks = {
        "rollout": ray_ask(config.policy.device, rc.rollout_resources),
        "learner": ray_ask(rc.learner_device, rc.learner_resources),
    }
    rollout_actor = ray.remote(**ray_options(asks["rollout"]))(Rollout)
    k = config.data.samples_per_prompt
    rollouts = [
        rollout_actor.remote(config.policy, config.reward, size=size, samples_per_prompt=k, run_seed=seed)
        for _ in range(rc.num_rollout_actors)
    ]
    learner_actor = ray.remote(**ray_options(asks["learner"]))(Learner)
    learners: list[Any] = [
        learner_actor.remote(config.policy, config.optim, config.nft, size=size, seed=seed, device=rc.learner_device)
        for _ in range(rc.num_learners)
    ]
    actors = RunActors(rollouts, learners, call_timeout_s=rc.call_timeout_s,
                       collective_timeout_s=rc.collective_timeout_s)  # fmt: skip
    handles = [("learner", i, a) for i, a in enumerate(learners)] + [("rollout", i, a) for i, a in enumerate(rollouts)]
    try:
        where = actors._get([h.__ray_call__.remote(_node_of) for _, _, h in handles], "rollout or learner",
                            "placement and model load", timeout_s=rc.placement_timeout_s)  # fmt: skip
    except ActorLost as exc:
        actors.close()
        offered = plain_resources(ray.cluster_resources())
        asked = f"rollout {plain_resources(asks['rollout'])}, learner {plain_resources(asks['learner'])}"
        raise ActorLost(exc.role, f"{exc} (asked: {asked}; the cluster has {offered})") from exc
    node_ips = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}  # the address each node uses
    actors.placements = [
        Placement(role, index, node_id, node_ips.get(node_id, "?"), asks[role])
        for (role, index, _), node_id in zip(handles, where, strict=True)
    ]
    actors.learners.placements = [p for p in actors.placements if p.role == "learner"]
    if len(learners) > 1:
        try:  # rank 0's node hosts the rendezvous, at the address Ray's nodes reach it by
            actors.learners.join(actors.learners.placements[0].node_ip, rc.placement_timeout_s)
        except BaseException:
            actors.close()
            raise
    actors._broadcast(actors.learner.sampling_weights.remote())
    return actors


def _node_of(_actor: object) -> str:
    """The Ray node id of the process this runs in (called inside an actor via `__ray_call__`)."""
    return ray.get_runtime_context().get_node_id()
