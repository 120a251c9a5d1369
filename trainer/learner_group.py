"""The learner actors of one run, ranks 0..N-1 (`ray.num_learners`), called together and bounded.

Each call goes to every rank and waits for all of them (`call`). Once one rank fails (its actor
died, it raised, or a collective failed), the others, waiting on it in a collective, fail within
`ray.collective_timeout_s` (trainer.distributed bounds every one): the group waits that long plus
`GRACE_S`, then names the ranks still silent as hung. Any death or broken collective becomes
`ActorLost("learner")` naming each rank, its node and its cause; for an update, a surviving rank
first rolls back to its state from before the epoch's update, so the run can still checkpoint its
last finished epoch (`ActorLost.learner_intact`). A rank's own error (an exception in the learner
code, no peer involved) is raised as it is, as one learner's would be.

Rank 0 (`lead`, or the survivor that rolled back) holds everyone's weights: the rollouts,
evaluation and checkpoints read them from it alone.
"""

from __future__ import annotations

import time
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from trainer.distributed import CollectiveFailed, RanksDiverged
from trainer.placement import ActorLost, Placement, first_line

GRACE_S = 5.0  # beyond the collective timeout, for the failed ranks' answers to reach the driver


class LearnerGroup:
    """N learner actor handles (rank = index) and how to call them."""

    def __init__(self, handles: list[Any], *, call_timeout_s: float, collective_timeout_s: float) -> None:
        self.handles = handles
        self.call_timeout_s, self.collective_timeout_s = call_timeout_s, collective_timeout_s
        self.placements: list[Placement] = []  # set once the ranks are placed
        self.lead = 0  # the rank whose state is read: 0, or a survivor that rolled back after a loss

    @property
    def lead_handle(self) -> Any:
        return self.handles[self.lead]

    def call(
        self, method: str, *args: Any, what: str, roll_back: bool = False, timeout_s: float | None = None,
        **kwargs: Any,
    ) -> list[Any]:  # fmt: skip
        """`method(*args, **kwargs)` on every rank; the answers in rank order (see the module docstring).

        `roll_back`: on a loss, a survivor restores its state from before this epoch's update.
        """
        calls = [getattr(handle, method).remote(*args, **kwargs) for handle in self.handles]
        rank_of = {ref: rank for rank, ref in enumerate(calls)}
        answers: dict[int, Any] = {}
        failed: dict[int, BaseException] = {}
        deadline = time.monotonic() + (self.call_timeout_s if timeout_s is None else timeout_s)
        pending = list(calls)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            rank = rank_of[ready[0]]
            try:
                answers[rank] = ray.get(ready[0])
            except (RayActorError, RayTaskError) as exc:
                if not failed:  # the others fail within one collective timeout of this
                    deadline = min(deadline, time.monotonic() + self.collective_timeout_s + GRACE_S)
                failed[rank] = exc
        silent = sorted(rank_of[ref] for ref in pending)
        if not failed and not silent:
            return [answers[rank] for rank in range(len(calls))]
        if not silent and not any(_breaks_group(exc) for exc in failed.values()):
            raise next(iter(failed.values()))
        lost = ActorLost("learner", self._describe(what, failed, silent))
        survivors = [r for r in range(len(calls)) if r in answers or (r in failed and not _died(failed[r]))]
        if roll_back and survivors:
            lost.learner_intact = self._roll_back(survivors[0])
        raise lost

    def call_lead(self, method: str, *args: Any, what: str, timeout_s: float | None = None) -> Any:
        """`method(*args)` on the lead rank alone, bounded; a dead or silent lead becomes `ActorLost`."""
        timeout_s = self.call_timeout_s if timeout_s is None else timeout_s
        try:
            return ray.get(getattr(self.lead_handle, method).remote(*args), timeout=timeout_s)
        except GetTimeoutError as exc:
            raise ActorLost("learner", f"learner rank {self.lead} did not finish the {what} within "
                                       f"{timeout_s:g} s{self._node(self.lead)}") from exc  # fmt: skip
        except RayActorError as exc:
            message = f"learner rank {self.lead}{self._node(self.lead)} died during the {what}: {first_line(exc)}"
            raise ActorLost("learner", message) from exc

    def join(self, host: str, rendezvous_timeout_s: float) -> None:
        """Form the ranks' process group: rank 0 opens the rendezvous on `host` (its node), every rank joins."""
        port = self.call_lead("open_rendezvous", host, rendezvous_timeout_s, what="rendezvous",
                              timeout_s=rendezvous_timeout_s)  # fmt: skip
        world = len(self.handles)
        calls = [h.join_data_parallel.remote(rank, world, host, port, timeout_s=self.collective_timeout_s,
                                             rendezvous_timeout_s=rendezvous_timeout_s)
                 for rank, h in enumerate(self.handles)]  # fmt: skip
        try:
            ray.get(calls, timeout=rendezvous_timeout_s)
        except (GetTimeoutError, RayActorError, RayTaskError) as exc:
            raise ActorLost("learner", f"the {world} learners did not form their process group at {host}:{port} "
                                       f"within {rendezvous_timeout_s:g} s: {first_line(exc)}") from exc  # fmt: skip

    def kill(self) -> None:
        for handle in self.handles:
            ray.kill(handle)

    def _describe(self, what: str, failed: dict[int, BaseException], silent: list[int]) -> str:
        """'learner rank 1 (on node ...) died during the update: ...; learner rank 0 failed ...' (deaths first)."""
        after = f"within {self.collective_timeout_s + GRACE_S:g} s of the first failure" if failed else "in time"
        parts = [f"learner rank {r}{self._node(r)} died during the {what}: {first_line(e)}"
                 for r, e in sorted(failed.items()) if _died(e)]  # fmt: skip
        parts += [f"learner rank {r}{self._node(r)} did not finish the {what} {after} (hung)" for r in silent]
        parts += [f"learner rank {r} failed the {what}: {first_line(_cause(e))}"
                  for r, e in sorted(failed.items()) if not _died(e)]  # fmt: skip
        return "; ".join(parts)

    def _node(self, rank: int) -> str:
        """' (on node 127.0.0.4 ab12cd34ef56)' for a placed rank, else ''."""
        placed = [p for p in self.placements if p.index == rank]
        return f" (on node {placed[0].node_ip} {placed[0].node_id[:12]})" if placed else ""

    def _roll_back(self, rank: int) -> bool:
        """Rank `rank` restores its state from before this epoch's update; it becomes the lead if it did."""
        try:
            done = ray.get(self.handles[rank].roll_back.remote(), timeout=self.collective_timeout_s + GRACE_S)
        except (GetTimeoutError, RayActorError, RayTaskError):
            return False
        if done:
            self.lead = rank
        return bool(done)


def _died(exc: BaseException) -> bool:
    return isinstance(exc, RayActorError)


def _cause(exc: BaseException) -> BaseException:
    """The exception an actor raised, out of Ray's RayTaskError wrapper."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, BaseException) else exc


def _breaks_group(exc: BaseException) -> bool:
    """A rank died or could not reach its peers: the group is broken (not one rank's own error)."""
    return _died(exc) or isinstance(_cause(exc), CollectiveFailed | RanksDiverged)
