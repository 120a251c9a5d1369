"""Data-parallel learners: one torch.distributed process group, every collective bounded in time.

N learner processes (Ray actors) train the same `default` LoRA: each runs its share of an optimizer
step's micro-steps, the gradients are summed over the ranks (`all_reduce_gradients`), and every
rank then clips and steps identically, so the weights stay the same everywhere; `check_same`
proves it once per epoch. The backend is NCCL when the learners run on CUDA, gloo on the CPU.

Rendezvous: rank 0 opens a `TCPStore` on a port the OS picks (`open_rendezvous`; no window in which
another process could take a port chosen in advance) and the controller hands its address and
port to every rank (`DataParallel.join`). No collective may hang: the process group's timeout
(`ray.collective_timeout_s`) bounds each one; gloo honours it and a dead peer fails it at once
(connection reset), and on NCCL `TORCH_NCCL_BLOCKING_WAIT` makes the wait raise instead of
hanging. A failed collective becomes `CollectiveFailed`, naming the rank and the operation.

Shapes: gradients and weights are the LoRA parameters' own; checksums are float64 (2 P,) for P
parameters; metric sums float64 (M,).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


class CollectiveFailed(RuntimeError):
    """A collective did not complete on this rank: a peer died, hung or left; the step cannot go on.

    Only a message, so that it pickles back to the driver (Ray rebuilds it from its args).
    """


class RanksDiverged(RuntimeError):
    """The ranks hold different weights after the same steps: a bug or a broken device, never noise."""


def backend_for(device: str) -> str:
    """The backend for `device`: NCCL on CUDA, gloo otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def share(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """Rank `rank`'s share of `items`: every `world_size`-th one, starting at `rank` (balanced to one item)."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size}")
    return list(items[rank::world_size])


def open_rendezvous(host: str, timeout_s: float) -> dist.TCPStore:
    """Rank 0's store on `host` at a free port (`.port`); the others must join within `timeout_s`."""
    return dist.TCPStore(host, 0, None, True, timeout=timedelta(seconds=timeout_s), wait_for_workers=False)


@dataclass
class DataParallel:
    """This process's place in the learners' process group; every collective here is bounded."""

    rank: int
    world_size: int
    timeout_s: float

    @classmethod
    def join(
        cls,
        *,
        rank: int,
        world_size: int,
        host: str,
        port: int,
        device: str,
        timeout_s: float,
        rendezvous_timeout_s: float,
        store: dist.TCPStore | None = None,
    ) -> DataParallel:
        """Join the group whose rank 0 opened `host:port` (rank 0 passes its own `store`).

        `rendezvous_timeout_s` bounds the wait for every rank to arrive; `timeout_s` each collective after.
        """
        if world_size < 2 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} of {world_size}: data parallelism needs 2 or more ranks")
        if dist.is_initialized():
            raise RuntimeError("this process already belongs to a process group")
        backend = backend_for(device)
        if backend == "nccl":
            # The wait raises on a timeout instead of leaving the watchdog to kill the process.
            os.environ.setdefault("TORCH_NCCL_BLOCKING_WAIT", "1")
        try:
            if store is None:
                store = dist.TCPStore(host, port, None, False, timeout=timedelta(seconds=rendezvous_timeout_s))
            # Every rank arrives first (a model loads for minutes), bounded by the store's timeout: the
            # group's own setup then waits on its peers only as long as a collective may.
            store.set(f"arrived/{rank}", "1")
            store.wait([f"arrived/{r}" for r in range(world_size)])
            dist.init_process_group(
                backend, store=store, rank=rank, world_size=world_size, timeout=timedelta(seconds=timeout_s)
            )
        except RuntimeError as exc:
            raise _failed(rank, f"rendezvous at {host}:{port}", exc) from exc
        return cls(rank, world_size, timeout_s)

    def all_reduce_gradients(self, parameters: Sequence[torch.nn.Parameter]) -> None:
        """Each parameter's `.grad` <- the sum of every rank's (a missing grad counts as zeros), in one collective."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self._all_reduce(flat, "gradient all-reduce")
        offset = 0
        for p, g in zip(parameters, grads, strict=True):
            p.grad = flat[offset : offset + g.numel()].view_as(g)
            offset += g.numel()

    def sum(self, values: torch.Tensor, what: str) -> torch.Tensor:
        """The elementwise sum of `values` (float64 (M,)) over the ranks."""
        total = values.to(torch.float64).clone()
        self._all_reduce(total, what)
        return total

    def check_same(self, tensors: Iterable[torch.Tensor], what: str) -> None:
        """Raise `RanksDiverged` (on every rank) unless every rank holds bitwise the same `tensors`.

        Checksums, not the weights, cross: per tensor the float64 sum and sum of squares, (2 P,).
        The ranks ran the same kernels on the same values, so equal weights give equal bits.
        """
        mine = checksums(tensors)
        gathered = [torch.empty_like(mine) for _ in range(self.world_size)]
        self._wait(dist.all_gather(gathered, mine, async_op=True), f"check that the ranks hold the same {what}")
        differ = [r for r, other in enumerate(gathered) if not torch.equal(other, gathered[0])]
        if differ:
            raise RanksDiverged(f"learner rank(s) {differ} hold different {what} from rank 0")

    def leave(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()

    def _all_reduce(self, tensor: torch.Tensor, what: str) -> None:
        self._wait(dist.all_reduce(tensor, op=dist.ReduceOp.SUM, async_op=True), what)

    def _wait(self, work: dist.Work | None, what: str) -> None:
        if work is None:  # not a member of the group: cannot happen for the default group
            raise _failed(self.rank, what, RuntimeError("this rank is not in the process group"))
        try:
            work.wait(timeout=timedelta(seconds=self.timeout_s))
        except RuntimeError as exc:  # DistBackendError, gloo's timeouts and connection resets
            raise _failed(self.rank, f"{what} (timeout {self.timeout_s:g} s)", exc) from exc


def checksums(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """float64 (2 P,): the sum and the sum of squares of each of P tensors, on their device."""
    parts = []
    for tensor in tensors:
        values = tensor.detach().to(torch.float64)
        parts += [values.sum(), values.square().sum()]
    return torch.stack(parts)


def _failed(rank: int, what: str, cause: BaseException) -> CollectiveFailed:
    return CollectiveFailed(f"learner rank {rank}: the {what} failed: {_first_line(cause)}")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
