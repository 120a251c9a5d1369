"""Test-wide settings: offline hubs, one thread per process (2-core machines), a `gpu` marker that
skips, and an exit that skips interpreter teardown once Ray has run in the process."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# A local Ray on 127.0.0.1 (tests name that node), also when pytest runs without make: Ray reads it
# when it is imported, and this file is imported before any test module.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def ray_session() -> Iterator[None]:
    """A local Ray on loopback for one test module (2 CPUs: a rollout actor and the learner, or a
    renderer); code under test finds it running and leaves it running."""
    import ray

    from workers.local_ray import local_ray_environment

    local_ray_environment()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def mining_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The miner's test corpus (`motionnft.mining.corpus`: clips with known answers), written once."""
    from motionnft.mining.corpus import write_corpus

    folder = tmp_path_factory.mktemp("mining-corpus")
    write_corpus(folder)
    return folder


_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Once Ray has run in this process, exit with pytest's status without tearing the interpreter down.

    The suite starts and shuts down several local Rays in one process. `ray.shutdown` leaves the
    earlier sessions' core-worker threads (gRPC, event engine, io) running, and the interpreter's
    teardown under them crashed with SIGSEGV after every test had passed, in two of six full runs
    on a 2-core machine (the known hazard of restarting Ray in one process, ray-project/ray#31145).
    By now every report is written (terminal summary, cache); only the teardown is skipped.
    """
    if "ray" in sys.modules and _exit_status:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_exit_status[-1])
