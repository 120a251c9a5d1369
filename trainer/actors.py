"""The Ray side of a run: where its actors run, and what crosses to them.

`RunActors` hides the Ray calls behind named operations so `trainer.loop` reads as the method does:
rollout, train_epoch, sync. Weights never detour through the driver: the learner's new sampling
adapter (and the EMA weights evaluation samples with) are objects in Ray's store, handed to every
rollout actor by reference; only checkpoints bring the learner's state to the driver. What goes to
the learner is what it trains on (latents, conditions, weights, ids), not the groups' images.

Every wait is bounded (`ray.placement_timeout_s` for the actors to be placed and loaded,
`ray.call_timeout_s` for each call), and an actor that dies or stops answering becomes `ActorLost`,
naming the role, the node and the cause: a lost node ends the run with a clear error, never a hang.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import ray
import torch
from ray.exceptions import GetTimeoutError, RayActorError
from ray.util.metrics import Counter

from trainer.config import TrainConfig
from trainer.learner import Learner
from workers.rollout import Rollout
from workers.tasks import EditTask, RolloutBatch, RolloutGroup

# (version, weights) of a sampling adapter, in Ray's object store.
WeightsRef = ray.ObjectRef


class ActorLost(RuntimeError):
    """An actor died, could not be placed, or did not answer in time.

    `role` is "rollout" or "learner": a lost rollout actor leaves the learner's state intact (the
    loop checkpoints it before stopping), a lost learner does not.
    """

    def __init__(self, role: str, message: str) -> None:
        super().__init__(message)
        self.role = role
        self.learner_intact = False  # set by the loop when the learner is known to be unchanged


@dataclass(frozen=True)
class Placement:
    """Where one actor runs: its role, index, Ray node and the resources it asked for."""

    role: str
    index: int
    node_id: str
    node_ip: str
    resources: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class RunActors:
    """The rollout actors and the learner actor of one run."""

    def __init__(self, rollouts: list[Any], learner: Any, *, call_timeout_s: float = 3600.0) -> None:
        self.rollouts, self.learner = rollouts, learner
        self.call_timeout_s = call_timeout_s
        self.placements: list[Placement] = []
        self._groups = Counter("motionnft_groups", "Rollout groups sampled (each K edits of one prompt)")
        self._dropped = Counter("motionnft_groups_dropped", "Rollout groups that lost their rewards")

    def rollout(self, tasks: list[EditTask], epoch: int, keep_images: bool = False) -> list[RolloutBatch]:
        """`tasks` spread round-robin over the rollout actors; their batches, in actor order."""
        chunks = [tasks[i :: len(self.rollouts)] for i in range(len(self.rollouts))]
        calls = [a.rollout.remote(c, epoch, keep_images) for a, c in zip(self.rollouts, chunks, strict=True) if c]
        return list(self._get(calls, "rollout", f"rollout of epoch {epoch + 1}"))

    def train_epoch(self, groups: list[RolloutGroup], weights: torch.Tensor, valid: torch.Tensor) -> dict[str, float]:
        if not groups:
            return {}
        training = [g.for_learner() for g in groups]
        return dict(self._get(self.learner.train_epoch.remote(training, weights, valid), "learner", "update"))

    def sync(self) -> None:
        """The learner's `old` update; its new sampling weights go to every actor by reference."""
        self._broadcast(self.learner.end_epoch.remote())

    def ema_weights(self) -> WeightsRef:
        """(version -1, the EMA of the trained adapter), left in the object store."""
        return self.learner.ema_sampling.remote()

    def sample_with(self, weights: WeightsRef, tasks: list[EditTask], epoch: int) -> list[RolloutGroup]:
        """Roll out `tasks` with `weights` as the sampling adapter, then restore the learner's `old`."""
        self._broadcast(weights)
        try:
            batches = self.rollout(tasks, epoch, keep_images=True)
        finally:
            self._broadcast(self.learner.sampling_weights.remote())
        order = {t.prompt_id: i for i, t in enumerate(tasks)}
        return sorted((g for b in batches for g in b.groups), key=lambda g: order[g.task.prompt_id])

    def learner_state(self) -> dict[str, Any]:
        """Everything a checkpoint holds of the learner (to the driver: it writes the file)."""
        return dict(self._get(self.learner.state_dict.remote(), "learner", "state for a checkpoint"))

    def load_learner_state(self, state: dict[str, Any]) -> None:
        self._get(self.learner.load_state_dict.remote(state), "learner", "loading a checkpoint")
        self._broadcast(self.learner.sampling_weights.remote())

    def count_groups(self, sampled: int, dropped: int) -> None:
        """Add an epoch's groups to the run's Ray metrics (scraped from each node's metrics agent)."""
        self._groups.inc(sampled + dropped)
        if dropped:
            self._dropped.inc(dropped)

    def close(self) -> None:
        """Stop the run's actors (Ray itself stays up for whoever started it)."""
        for actor in [*self.rollouts, self.learner]:
            ray.kill(actor)

    def _broadcast(self, weights: WeightsRef) -> None:
        # A top-level ObjectRef argument reaches each actor as its value, fetched from the store.
        self._get([a.set_sampling_weights.remote(weights) for a in self.rollouts], "rollout", "weight sync")

    def _get(self, refs: Any, role: str, what: str, timeout_s: float | None = None) -> Any:
        """`ray.get` bounded in time; a dead or silent actor becomes `ActorLost` naming where it ran."""
        timeout_s = self.call_timeout_s if timeout_s is None else timeout_s
        try:
            return ray.get(refs, timeout=timeout_s)
        except GetTimeoutError as exc:
            raise ActorLost(role, f"{role} actor(s) did not finish the {what} within {timeout_s:g} s") from exc
        except RayActorError as exc:
            where = self._where(getattr(exc, "actor_id", None))
            raise ActorLost(role, f"a {role} actor{where} died during the {what}: {_first_line(exc)}") from exc

    def _where(self, actor_id: str | None) -> str:
        """' (rollout 1 on node 127.0.0.3 ab12...)' for a placed actor's id, else ''."""
        for placement in self.placements:
            actor = self.learner if placement.role == "learner" else self.rollouts[placement.index]
            if actor_id is not None and actor._actor_id.hex() == actor_id:
                return f" ({placement.role} {placement.index} on node {placement.node_ip} {placement.node_id[:12]})"
        return ""


def local_ray_environment() -> None:
    """A local Ray sends no usage stats and needs no token (on by default since Ray 2.60).

    `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` keeps a local Ray on 127.0.0.1, but Ray reads it when it is
    imported: set here it reaches the processes Ray starts, not this one's address, so the Makefile
    sets it before Python starts. A cluster node leaves it unset (multi-node needs it on).
    """
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def start_actors(config: TrainConfig) -> RunActors:
    """A local Ray (unless `ray.address` names a cluster), the rollout actors and the learner, placed.

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
        "rollout": _ask(config.policy.device, rc.rollout_resources),
        "learner": _ask(rc.learner_device, rc.learner_resources),
    }
    rollout_actor = ray.remote(**_options(asks["rollout"]))(Rollout)
    k = config.data.samples_per_prompt
    rollouts = [
        rollout_actor.remote(config.policy, config.reward, size=size, samples_per_prompt=k, run_seed=seed)
        for _ in range(rc.num_rollout_actors)
    ]
    learner: Any = ray.remote(**_options(asks["learner"]))(Learner).remote(
        config.policy, config.optim, config.nft, size=size, seed=seed, device=rc.learner_device
    )
    actors = RunActors(rollouts, learner, call_timeout_s=rc.call_timeout_s)
    handles = [("learner", 0, learner)] + [("rollout", i, a) for i, a in enumerate(rollouts)]
    try:
        where = actors._get([h.__ray_call__.remote(_node_of) for _, _, h in handles], "rollout or learner",
                            "placement and model load", timeout_s=rc.placement_timeout_s)  # fmt: skip
    except ActorLost as exc:
        actors.close()
        offered = _plain(ray.cluster_resources())
        asked = f"rollout {_plain(asks['rollout'])}, learner {_plain(asks['learner'])}"
        raise ActorLost(exc.role, f"{exc} (asked: {asked}; the cluster has {offered})") from exc
    node_ips = {n["NodeID"]: n["NodeManagerAddress"] for n in ray.nodes()}  # the address each node uses
    actors.placements = [
        Placement(role, index, node_id, node_ips.get(node_id, "?"), asks[role])
        for (role, index, _), node_id in zip(handles, where, strict=True)
    ]
    actors._broadcast(learner.sampling_weights.remote())
    return actors


def _ask(device: str, resources: dict[str, float]) -> dict[str, float]:
    """What one actor on `device` asks Ray for: a CPU, a GPU when `device` is CUDA, its custom resources."""
    return {"CPU": 1.0, **({"GPU": 1.0} if device.startswith("cuda") else {}), **resources}


def _options(ask: dict[str, float]) -> dict[str, Any]:
    """`ray.remote` options for `ask` (CPU and GPU are options of their own, the rest custom resources)."""
    custom = {k: v for k, v in ask.items() if k not in ("CPU", "GPU")}
    return {"num_cpus": ask["CPU"], "num_gpus": ask.get("GPU", 0.0), "resources": custom}


def _node_of(_actor: object) -> str:
    """The Ray node id of the process this runs in (called inside an actor via `__ray_call__`)."""
    return ray.get_runtime_context().get_node_id()


def _plain(resources: dict[str, float]) -> dict[str, float]:
    """Resources without Ray's per-node and zero entries, for error messages."""
    return {k: v for k, v in resources.items() if v and not k.startswith("node:")}


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else type(exc).__name__
