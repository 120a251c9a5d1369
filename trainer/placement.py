"""Where a run's actors are, and what losing one means: `Placement` and `ActorLost`.

Plain Python (no Ray): the loop catches `ActorLost`, `trainer.actors` and `trainer.learner_group`
raise it, and `placement.json` is a list of `Placement.to_json()`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


class ActorLost(RuntimeError):
    """An actor died, could not be placed, or did not answer in time.

    `role` is "rollout" or "learner": a lost rollout actor leaves the learner's state intact (the
    loop checkpoints it before stopping), a lost learner only when another rank rolled back its update.
    """

    def __init__(self, role: str, message: str) -> None:
        super().__init__(message)
        self.role = role
        # Set when the learners are known to hold the last finished epoch's state: by the loop for a
        # rollout actor lost while sampling, by the learner group after a survivor rolled back.
        self.learner_intact = False


@dataclass(frozen=True)
class Placement:
    """Where one actor runs: its role, index (a learner's rank), Ray node and the resources it asked for."""

    role: str
    index: int
    node_id: str
    node_ip: str
    resources: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def where(self) -> str:
        """'learner 1 on node 127.0.0.4 ab12cd34ef56'."""
        return f"{self.role} {self.index} on node {self.node_ip} {self.node_id[:12]}"


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (Ray's carry tracebacks after it)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0].rstrip(".") if lines else type(exc).__name__


def ray_ask(device: str, resources: dict[str, float]) -> dict[str, float]:
    """What one actor on `device` asks Ray for: a CPU, a GPU when `device` is CUDA, its custom resources."""
    return {"CPU": 1.0, **({"GPU": 1.0} if device.startswith("cuda") else {}), **resources}


def ray_options(ask: dict[str, float]) -> dict[str, Any]:
    """`ray.remote` options for `ask` (CPU and GPU are options of their own, the rest custom resources)."""
    custom = {k: v for k, v in ask.items() if k not in ("CPU", "GPU")}
    return {"num_cpus": ask["CPU"], "num_gpus": ask.get("GPU", 0.0), "resources": custom}


def plain_resources(resources: dict[str, float]) -> dict[str, float]:
    """Resources without Ray's per-node and zero entries, for error messages."""
    return {k: v for k, v in resources.items() if v and not k.startswith("node:")}
