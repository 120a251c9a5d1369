"""trainer.distributed on real gloo: two processes join through rank 0's rendezvous, sum
gradients, compare checksums, and a dead or hung peer fails a collective within the timeout, naming
the rank that saw it; never a hang."""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from typing import Any

import pytest
import torch

from trainer.distributed import (
    CollectiveFailed,
    DataParallel,
    RanksDiverged,
    backend_for,
    checksums,
    open_rendezvous,
    share,
)

TIMEOUT_S = 2.0
WAIT_S = 60.0  # for the spawned processes' answers: their start takes a few seconds here


def _rank(rank: int, ports: Any, results: Any, peer: str) -> None:
    """Rank `rank`'s script; `peer` is what rank 1 does last: "dies" or "hangs" (rank 0 sees it)."""
    torch.set_num_threads(1)
    store = open_rendezvous("127.0.0.1", WAIT_S) if rank == 0 else None
    if store is not None:
        ports.put(store.port)
    port = store.port if store is not None else ports.get(timeout=WAIT_S)
    group = DataParallel.join(rank=rank, world_size=2, host="127.0.0.1", port=port, device="cpu",
                              timeout_s=TIMEOUT_S, rendezvous_timeout_s=WAIT_S, store=store)  # fmt: skip
    out: dict[str, Any] = {}
    params = [torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2, 2))]
    params[0].grad = torch.full((3,), float(rank + 1))
    params[1].grad = None if rank == 1 else torch.ones(2, 2)  # a rank that did not touch it adds zeros
    group.all_reduce_gradients(params)
    # Plain lists cross back: a tensor would be shared through a file descriptor its dead sender closed.
    out["grads"] = [p.grad.tolist() for p in params if p.grad is not None]
    out["sum"] = group.sum(torch.tensor([rank, 10.0]), "metrics").tolist()
    group.check_same([torch.arange(4.0)], "weights")
    try:
        group.check_same([torch.arange(4.0) + (1e-6 if rank == 1 else 0.0)], "weights")
    except RanksDiverged as exc:
        out["diverged"] = str(exc)
    if rank == 1:
        results.put((rank, out))
        results.close()
        results.join_thread()  # sent before this process goes
        if peer == "dies":
            os._exit(0)
        time.sleep(TIMEOUT_S + 1.0)  # hung: alive, in no collective until rank 0 gave up
        return
    started = time.monotonic()
    try:
        group.all_reduce_gradients(params)
    except CollectiveFailed as exc:
        out["failed"], out["failed_after_s"] = str(exc), time.monotonic() - started
    results.put((rank, out))


def _run_pair(peer: str) -> dict[int, dict[str, Any]]:
    # Forked from one server that imported torch once, not four fresh interpreters; never from
    # this process, whose threads (Ray's, servers') a fork would copy mid-lock.
    context = mp.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    ports, results = context.Queue(), context.Queue()
    processes = [context.Process(target=_rank, args=(rank, ports, results, peer)) for rank in (0, 1)]
    for process in processes:
        process.start()
    try:
        return dict(results.get(timeout=WAIT_S) for _ in processes)
    finally:
        for process in processes:
            process.join(timeout=WAIT_S)
            if process.is_alive():
                process.kill()


@pytest.fixture(scope="module")
def dead_peer() -> dict[int, dict[str, Any]]:
    return _run_pair("dies")


def test_gradients_are_summed_over_the_ranks(dead_peer: dict[int, dict[str, Any]]) -> None:
    for rank in (0, 1):
        assert dead_peer[rank]["grads"] == [[3.0, 3.0, 3.0], [[1.0, 1.0], [1.0, 1.0]]]
        assert dead_peer[rank]["sum"] == [1.0, 20.0]


def test_different_weights_fail_on_every_rank_naming_the_rank(dead_peer: dict[int, dict[str, Any]]) -> None:
    for rank in (0, 1):
        assert dead_peer[rank]["diverged"] == "learner rank(s) [1] hold different weights from rank 0"


def test_a_dead_peer_fails_the_collective_at_once(dead_peer: dict[int, dict[str, Any]]) -> None:
    failed = dead_peer[0]["failed"]
    assert failed.startswith("learner rank 0: the gradient all-reduce (timeout 2 s) failed: "), failed
    assert dead_peer[0]["failed_after_s"] < TIMEOUT_S + 1.0


def test_a_hung_peer_fails_the_collective_within_the_timeout() -> None:
    hung = _run_pair("hangs")
    assert hung[0]["failed"].startswith("learner rank 0: the gradient all-reduce (timeout 2 s) failed: ")
    assert TIMEOUT_S - 0.5 < hung[0]["failed_after_s"] < TIMEOUT_S + 2.0


def test_pieces_without_a_group() -> None:
    assert backend_for("cpu") == "gloo" and backend_for("cuda:1") == "nccl"
    assert share([0, 1, 2, 3, 4], 1, 2) == [1, 3] and share([0], 1, 2) == []
    with pytest.raises(ValueError, match="rank 2 is not in a world of 2"):
        share([0, 1], 2, 2)
    with pytest.raises(ValueError, match="needs 2 or more ranks"):
        DataParallel.join(rank=0, world_size=1, host="127.0.0.1", port=1, device="cpu", timeout_s=1,
                          rendezvous_timeout_s=1)  # fmt: skip
    a, b = checksums([torch.ones(2), torch.arange(3.0)]), checksums([torch.ones(2), torch.arange(3.0) + 1])
    assert a.dtype == torch.float64 and a.shape == (4,) and torch.equal(a[:2], b[:2]) and not torch.equal(a, b)
